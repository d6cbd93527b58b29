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

"""The copy's cap: how it is set, combined, followed and held."""

import logging
import os

import fixtures
from oslo_utils import units
import rbd
import testtools

from cinder_asyncmig.engine import worker
from cinder_asyncmig import exception
from cinder_asyncmig.volume import manager
from cinder_asyncmig.volume import throttle

MIB = units.Mi


class _Volume(object):

    def __init__(self, metadata=None):
        self.id = 'd3b07384-d9a0-4c9b-8a4e-2f1b8c9a0001'
        self.metadata = metadata or {}


class _Clock(object):
    """A monotonic clock that moves only when the pacer sleeps."""

    def __init__(self):
        self.now = 1000.0
        self.slept = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.assertive(seconds)
        self.now += seconds
        self.slept += seconds

    @staticmethod
    def assertive(seconds):
        if seconds <= 0:
            raise AssertionError('slept %r s' % seconds)


class CapTest(testtools.TestCase):

    def test_lower_of_backend_and_volume(self):
        self.assertEqual(0, throttle.cap(_Volume(), 0))
        self.assertEqual(5, throttle.cap(_Volume(), 5))
        volume = _Volume({throttle.RATE_KEY: '3'})
        self.assertEqual(3, throttle.cap(volume, 5))
        self.assertEqual(3, throttle.cap(volume, 0))
        self.assertEqual(2, throttle.cap(volume, 2))
        self.assertEqual(2, throttle.cap(_Volume({throttle.RATE_KEY: '0'}),
                                         2))

    def test_an_operators_cap_overrides_the_volume_metadata(self):
        metadata = {throttle.RATE_KEY: '10'}
        for admin, cap in (({}, 10), ({throttle.ADMIN_RATE_KEY: '5'}, 5),
                           ({throttle.ADMIN_RATE_KEY: '20'}, 20),
                           # no cap of the migration's own, the user's
                           # notwithstanding
                           ({throttle.ADMIN_RATE_KEY: '0'}, 0),
                           ({throttle.ADMIN_RATE_KEY: ''}, 10)):
            self.assertEqual(cap, throttle.requested(metadata, admin), admin)
        volume = _Volume(metadata)
        volume.admin_metadata = {throttle.ADMIN_RATE_KEY: '4'}
        self.assertEqual(4, throttle.cap(volume, 8))
        self.assertEqual(2, throttle.cap(volume, 2))

    def test_not_a_number_refused(self):
        for bad in ('fast', '-1', '1.5'):
            self.assertRaises(exception.MigrationSourceRefused,
                              throttle.cap,
                              _Volume({throttle.RATE_KEY: bad}), 0)


class PacerTest(testtools.TestCase):

    def setUp(self):
        super(PacerTest, self).setUp()
        self.status = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                   'pool.volume-1.json')
        self.clock = _Clock()
        self.pacer = worker.Pacer(worker.rate_path(self.status),
                                  clock=self.clock, sleep=self.clock.sleep)

    def copy(self, first, last, step=4 * MIB, took=0.0):
        """Objects copied in no time (or ``took`` s each), paced."""
        for done in range(first, last + 1, step):
            self.clock.now += took
            self.pacer.wait(done)

    def test_no_cap_never_waits(self):
        self.copy(0, 400 * MIB)
        worker.write_rate(self.status, 0)
        self.copy(0, 400 * MIB)
        self.assertEqual(0.0, self.clock.slept)

    def test_copy_held_to_the_cap(self):
        worker.write_rate(self.status, 10 * MIB)
        self.copy(0, 100 * MIB)
        self.assertAlmostEqual(10.0, self.clock.slept)
        self.assertEqual(10 * MIB, self.pacer.rate)

    def test_cap_changed_while_copying(self):
        worker.write_rate(self.status, 10 * MIB)
        self.copy(0, 40 * MIB)
        worker.write_rate(self.status, 40 * MIB)
        self.copy(44 * MIB, 120 * MIB)
        # 4 s at 10 MiB/s; then the old cap until the new one is read
        # (half a second, and the step under way: 0.4 s), and 80 MiB at
        # 40 MiB/s
        self.assertGreaterEqual(self.clock.slept, 4.0 + 76 / 40.0)
        self.assertLessEqual(self.clock.slept, 4.0 + 0.5 + 0.4 + 80 / 40.0)
        worker.write_rate(self.status, 0)
        before = self.clock.slept
        self.copy(124 * MIB, 400 * MIB)
        self.assertLessEqual(self.clock.slept - before, 0.5)

    def test_a_slow_copy_does_not_rush_after(self):
        worker.write_rate(self.status, 10 * MIB)
        # the cluster is slow: 4 MiB take 2 s, below the cap
        self.copy(0, 20 * MIB, took=2.0)
        self.assertEqual(0.0, self.clock.slept)
        # then fast again: held to the cap from there, no burst
        self.copy(24 * MIB, 64 * MIB)
        self.assertAlmostEqual(40 / 10.0, self.clock.slept, delta=1.0)


class _Image(object):
    """An image whose diff is given, for the allocation's edge cases."""

    def __init__(self, size, extents=(), stripe_count=1, error=None):
        self._size = size
        self._extents = extents
        self._stripe_count = stripe_count
        self._error = error

    def stat(self):
        return {'obj_size': 4 * MIB}

    def size(self):
        return self._size

    def stripe_count(self):
        return self._stripe_count

    def get_name(self):
        return 'volume-1'

    def diff_iterate(self, offset, length, from_snapshot, iterate_cb,
                     include_parent=True, whole_object=False):
        if self._error:
            raise self._error
        for extent in self._extents:
            iterate_cb(*extent)


class AllocationTest(testtools.TestCase):

    def test_data_counts_only_objects_holding_data(self):
        # a 1 GiB + 1 byte image: 257 objects, the last one partial
        allocation = worker.Allocation.of_image(_Image(
            units.Gi + 1,
            [(0, 4 * MIB, True), (8 * MIB, 8 * MIB, True),
             (12 * MIB, 4 * MIB, True),  # repeated by a merged extent
             (40 * MIB, 4 * MIB, False),  # a discard: no data
             (units.Gi, 1, True)]))

        self.assertEqual(257, allocation.objects)
        self.assertEqual(4 * 4 * MIB, allocation.data)
        self.assertEqual(0, allocation.data_before(0))
        self.assertEqual(4 * MIB, allocation.data_before(1))
        self.assertEqual(4 * MIB, allocation.data_before(2))
        self.assertEqual(3 * 4 * MIB, allocation.data_before(256))

    def test_unknown_allocation_counts_every_object(self):
        for image, import_only in (
                (_Image(units.Gi, stripe_count=4), False),
                (_Image(units.Gi, error=rbd.IOError('diff failed')), False),
                # never asked: librbd's diff of an import may crash
                (_Image(units.Gi, error=AssertionError('diffed')), True)):
            allocation = worker.Allocation.of_image(image, import_only)
            self.assertEqual(units.Gi, allocation.data)
            self.assertEqual(8 * MIB, allocation.data_before(2))


class LockWatchTest(testtools.TestCase):

    def test_other_holder(self):
        me = 'client.4120'
        other = ('client.4133', 'auto 139785348213008',
                 '127.0.0.1:0/2905658401')
        self.assertIsNone(worker.LockWatch.other_holder({}, me))
        self.assertIsNone(worker.LockWatch.other_holder(
            {'tag': 'internal', 'exclusive': True, 'lockers': []}, me))
        self.assertIsNone(worker.LockWatch.other_holder(
            {'lockers': [(me, 'auto 1', '127.0.0.1:0/1')]}, me))
        self.assertEqual(
            'client.4133 127.0.0.1:0/2905658401',
            worker.LockWatch.other_holder({'lockers': [other]}, me))


class _MetadataDB(object):

    def __init__(self):
        self.metadata = {}
        self.written = []

    def volume_metadata_get(self, ctxt, volume_id):
        return dict(self.metadata)

    def volume_metadata_update(self, ctxt, volume_id, metadata, delete):
        self.written.append(metadata)

    def volume_admin_metadata_get(self, ctxt, volume_id):
        return {}

    def volume_admin_metadata_update(self, ctxt, volume_id, metadata,
                                     delete):
        pass


class RecorderTest(testtools.TestCase):

    def test_cap_followed_while_copying(self):
        log = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        db = _MetadataDB()
        caps = []
        recorder = manager._ProgressRecorder(db, None, 'vol-1', 0,
                                             on_cap=caps.append)
        copying = {'phase': 'copying', 'percent': 1.0}
        recorder(copying)
        db.metadata[throttle.RATE_KEY] = str(8 * MIB)
        recorder(copying)
        recorder(copying)
        for bad in ('fast', 'fast', '-3'):
            db.metadata[throttle.RATE_KEY] = bad
            recorder(copying)
        db.metadata[throttle.RATE_KEY] = ''
        recorder(copying)
        # every update hands the cap on; malformed values are skipped
        self.assertEqual([0, 8 * MIB, 8 * MIB, 0], caps)
        self.assertEqual(2, log.output.count('must be a number'))
        self.assertEqual(7, len(db.written))
