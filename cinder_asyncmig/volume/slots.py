# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""A bound on the background copies a target backend runs at once.

The volumes beyond it wait in line, first come first served, and stay
``migrating_attachable`` and usable while they wait. Nothing runs for a
volume in line: the slot, once free, starts it. Under eventlet the lock is
green (cinder-volume monkey patches threading).
"""

import collections
import threading


class CopySlots(object):
    """At most ``limit`` holders at once (0: no bound); the rest in line.

    :param limit: how many copies may run at once.
    """

    def __init__(self, limit):
        self.limit = limit
        self._lock = threading.Lock()
        self._held = set()
        # key -> (start, on_place, last place told), in order of arrival
        self._line = collections.OrderedDict()

    def running(self):
        with self._lock:
            return len(self._held)

    def waiting(self):
        with self._lock:
            return list(self._line)

    def request(self, key, start, on_place=None):
        """Call ``start()`` once ``key`` holds a slot: now, or later.

        ``start`` runs in the thread that frees the slot, so it should
        only hand the work over (to a pool); the holder gives the slot
        back with :meth:`release`.

        :param key: who asks (a volume id); one request per key at a time.
        :param on_place: called with the place in line (1: next) each time
            it changes while ``key`` waits.
        """
        with self._lock:
            self._line[key] = (start, on_place, None)
        self._grant()

    def leave(self, key):
        """Take ``key`` out of the line.

        :returns: True when it was waiting (its ``start`` never runs),
                  False when it was not in line.
        """
        with self._lock:
            found = self._line.pop(key, None) is not None
        if found:
            self._grant()
        return found

    def release(self, key):
        with self._lock:
            self._held.discard(key)
        self._grant()

    def _grant(self):
        """Start whoever the free slots let in; tell the rest their place.

        The callbacks run outside the lock: they may write to a database.
        """
        starts, places = [], []
        with self._lock:
            while self._line and (not self.limit or
                                  len(self._held) < self.limit):
                key, (start, _on_place, _told) = self._line.popitem(
                    last=False)
                self._held.add(key)
                starts.append(start)
            for place, (key, (start, on_place, told)) in enumerate(
                    self._line.items(), 1):
                if place != told:
                    self._line[key] = (start, on_place, place)
                    if on_place is not None:
                        places.append((on_place, place))
        for start in starts:
            start()
        for on_place, place in places:
            on_place(place)
