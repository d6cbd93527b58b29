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

"""The bound on concurrent copies."""

import testtools

from cinder_asyncmig.volume import slots


class CopySlotsTest(testtools.TestCase):

    def setUp(self):
        super(CopySlotsTest, self).setUp()
        self.started = []
        self.places = {}

    def _request(self, copy_slots, key):
        copy_slots.request(key, lambda: self.started.append(key),
                           self.places.setdefault(key, []).append)

    def test_beyond_the_limit_wait_in_line_first_come_first_served(self):
        copy_slots = slots.CopySlots(2)
        for key in 'abcde':
            self._request(copy_slots, key)
        self.assertEqual(['a', 'b'], self.started)
        self.assertEqual(['c', 'd', 'e'], copy_slots.waiting())
        self.assertEqual(2, copy_slots.running())
        copy_slots.release('a')
        self.assertEqual(['a', 'b', 'c'], self.started)
        copy_slots.release('c')
        copy_slots.release('b')
        self.assertEqual(list('abcde'), self.started)
        self.assertEqual({'a': [], 'b': [], 'c': [1], 'd': [2, 1],
                          'e': [3, 2, 1]}, self.places)
        self.assertEqual([], copy_slots.waiting())
        self.assertEqual(2, copy_slots.running())

    def test_one_that_leaves_the_line_never_starts(self):
        copy_slots = slots.CopySlots(1)
        for key in 'abc':
            self._request(copy_slots, key)
        self.assertTrue(copy_slots.leave('b'))
        self.assertFalse(copy_slots.leave('b'))
        self.assertFalse(copy_slots.leave('a'))  # holds its slot
        self.assertEqual(['c'], copy_slots.waiting())
        self.assertEqual([2, 1], self.places['c'])
        copy_slots.release('a')
        self.assertEqual(['a', 'c'], self.started)

    def test_a_start_may_give_its_slot_back_at_once(self):
        copy_slots = slots.CopySlots(1)
        copy_slots.request('a', lambda: copy_slots.release('a'))
        self._request(copy_slots, 'b')
        self.assertEqual(['b'], self.started)
        self.assertEqual([], self.places['b'])

    def test_no_limit_never_waits(self):
        copy_slots = slots.CopySlots(0)
        for key in range(50):
            copy_slots.request(key, lambda: None, self.fail)
        self.assertEqual(50, copy_slots.running())
