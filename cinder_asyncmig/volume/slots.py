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
``migrating_attachable`` and usable while they wait. Under eventlet the
lock and condition are green (cinder-volume monkey patches threading).
"""

import collections
import threading


class CopySlots(object):
    """At most ``limit`` holders at once (0: no bound); the rest in line.

    :param limit: how many copies may run at once.
    :param poll: seconds between two calls of ``give_up`` while waiting.
    """

    def __init__(self, limit, poll=30.0):
        self.limit = limit
        self._poll = poll
        self._cond = threading.Condition()
        self._held = set()
        self._line = collections.deque()
        self._changes = 0

    def running(self):
        with self._cond:
            return len(self._held)

    def waiting(self):
        with self._cond:
            return list(self._line)

    def acquire(self, key, on_wait=None, give_up=None):
        """Wait in line for a slot.

        :param key: who waits (a volume id); one wait per key at a time.
        :param on_wait: called with the place in line (1: next) each time
            it changes, outside the lock.
        :param give_up: called every ``poll`` seconds and after each
            change of the line; True leaves the line.
        :returns: True once the slot is held, False when given up.
        """
        told = None
        with self._cond:
            self._line.append(key)
        try:
            while True:
                with self._cond:
                    if self._line[0] == key and self._free():
                        self._line.popleft()
                        self._held.add(key)
                        self._changed()
                        return True
                    place = self._line.index(key) + 1
                    seen = self._changes
                if place != told:
                    told = place
                    if on_wait is not None:
                        on_wait(place)
                if give_up is not None and give_up():
                    return False
                with self._cond:
                    if self._changes == seen:
                        self._cond.wait(self._poll)
        finally:
            with self._cond:
                if key in self._line:
                    self._line.remove(key)
                    self._changed()

    def wake(self):
        """Have every waiter call its ``give_up`` now."""
        with self._cond:
            self._changed()

    def release(self, key):
        with self._cond:
            self._held.discard(key)
            self._changed()

    def _free(self):
        return not self.limit or len(self._held) < self.limit

    def _changed(self):
        self._changes += 1
        self._cond.notify_all()
