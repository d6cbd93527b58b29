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

"""The bound on concurrent copies, with real threads."""

import threading

import testtools

from cinder_asyncmig.sandbox import process
from cinder_asyncmig.volume import slots

_WAIT = 10


class CopySlotsTest(testtools.TestCase):

    def _waiter(self, copy_slots, key, places, acquired, give_up=None):
        def run():
            held = copy_slots.acquire(key, places.setdefault(key, []).append,
                                      give_up)
            acquired.append((key, held))
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.addCleanup(thread.join, _WAIT)
        return thread

    @staticmethod
    def _until(predicate):
        process.wait_for('the slots', predicate, _WAIT, interval=0.01)

    def test_beyond_the_limit_wait_in_line_first_come_first_served(self):
        copy_slots = slots.CopySlots(2)
        places, acquired = {}, []
        for key in ('a', 'b'):
            self.assertTrue(copy_slots.acquire(key))
        for place, key in enumerate(('c', 'd', 'e'), 1):
            self._waiter(copy_slots, key, places, acquired)
            self._until(lambda: places.get(key) == [place])
        self.assertEqual(['c', 'd', 'e'], copy_slots.waiting())
        self.assertEqual(2, copy_slots.running())
        copy_slots.release('a')
        self._until(lambda: places['e'] == [3, 2] and places['d'] == [2, 1])
        self.assertEqual([('c', True)], acquired)
        copy_slots.release('c')
        self._until(lambda: places['e'] == [3, 2, 1])
        self.assertEqual([('c', True), ('d', True)], acquired)
        copy_slots.release('b')
        self._until(lambda: len(acquired) == 3)
        self.assertEqual([('c', True), ('d', True), ('e', True)], acquired)
        self.assertEqual({'c': [1], 'd': [2, 1], 'e': [3, 2, 1]}, places)
        self.assertEqual([], copy_slots.waiting())

    def test_a_waiter_that_gives_up_leaves_the_line(self):
        copy_slots = slots.CopySlots(1, poll=0.01)
        self.assertTrue(copy_slots.acquire('a'))
        places, acquired = {}, []
        gone = threading.Event()
        self._waiter(copy_slots, 'b', places, acquired, gone.is_set)
        self._waiter(copy_slots, 'c', places, acquired)
        self._until(lambda: places.get('c') == [2])
        gone.set()
        self._until(lambda: acquired == [('b', False)])
        self.assertEqual(['c'], copy_slots.waiting())
        # told after the line changed, outside the lock
        self._until(lambda: places['c'] == [2, 1])
        copy_slots.release('a')
        self._until(lambda: len(acquired) == 2)
        self.assertEqual(('c', True), acquired[1])

    def test_no_limit_never_waits(self):
        copy_slots = slots.CopySlots(0)
        for key in range(50):
            self.assertTrue(copy_slots.acquire(key, self.fail, self.fail))
        self.assertEqual(50, copy_slots.running())
