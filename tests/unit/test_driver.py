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

"""Target driver decisions that need no cluster."""

import logging
import os
from unittest import mock
import uuid

from cinder import context
from cinder import objects
from cinder.volume import configuration
from cinder.volume import driver as cinder_driver
from cinder.volume.drivers import rbd as cinder_rbd
import fixtures
from oslo_config import cfg
from oslo_utils import units
import testtools

from cinder_asyncmig.engine import worker as copy_worker
from cinder_asyncmig import opts
from cinder_asyncmig.sources import kinds
from cinder_asyncmig.volume.drivers import rbd as target_rbd

CONF = cfg.CONF
FSID = '6a8c3b8e-1111-4c1f-9a39-000000000001'


class DriverTestCase(testtools.TestCase):
    """A target driver with an option group of its own, and a volume."""

    def setUp(self):
        super(DriverTestCase, self).setUp()
        objects.register_all()
        self.group = 'unit-%s' % uuid.uuid4().hex[:8]
        self.config = configuration.Configuration(cinder_driver.volume_opts,
                                                  config_group=self.group)
        self.config.append_config_values(cinder_rbd.RBD_OPTS)
        self.config.append_config_values(opts.target_opts)
        self.set('rbd_pool', 'dst')
        self.driver = self.make_driver()
        self.ctxt = context.get_admin_context()
        self.volume = objects.Volume(self.ctxt, id=str(uuid.uuid4()),
                                     _name_id=None, size=1,
                                     volume_type=None, metadata={})

    def make_driver(self):
        return target_rbd.AsyncMigrationRBDDriver(configuration=self.config,
                                                  host='h@b')

    def set(self, key, value):
        CONF.set_override(key, value, group=self.group)
        self.addCleanup(CONF.clear_override, key, group=self.group)

    def fake_cluster(self):
        """The target's cluster, as far as its fsid goes."""
        self.useFixture(fixtures.MockPatch(
            'cinder.volume.drivers.rbd.RADOSClient',
            return_value=mock.MagicMock(**{
                '__enter__.return_value.cluster.get_fsid.return_value':
                    FSID})))

    def _host(self, pool='src', protocol='ceph', fsid=FSID):
        return {'host': 'h@src#src', 'capabilities': {
            'storage_protocol': protocol,
            'location_info': 'ceph:/etc/ceph/ceph.conf:%s:cinder:%s' % (
                fsid, pool)}}


class DriverDecisionTest(DriverTestCase):

    def test_non_rbd_source_declined(self):
        self.assertEqual((False, False, None),
                         self.driver.migrate_volume_target(
                             self.ctxt, self.volume,
                             self._host(protocol='nfs')))

    def test_malformed_location_declined(self):
        host = self._host()
        host['capabilities']['location_info'] = 'not:enough'
        self.assertEqual((False, False, None),
                         self.driver.migrate_volume_target(
                             self.ctxt, self.volume, host))

    def test_kind_switched_off(self):
        self.set('async_migration_source_kinds', [])
        self.assertEqual((False, False, None),
                         self.driver.migrate_volume_target(
                             self.ctxt, self.volume, self._host()))

    def test_multiattach_type_declined(self):
        self.volume.volume_type = objects.VolumeType(
            extra_specs={'multiattach': '<is> True'})
        self.assertEqual((False, False, None),
                         self.driver.migrate_volume_target(
                             self.ctxt, self.volume, self._host()))

    def test_same_pool_is_a_host_update(self):
        self.fake_cluster()
        self.assertEqual((True, False, None),
                         self.driver.migrate_volume_target(
                             self.ctxt, self.volume,
                             self._host(pool='dst')))

    def test_unknown_source_kind_is_a_config_error(self):
        self.assertRaises(ValueError, self.set,
                          'async_migration_source_kinds', ['nbd'])

    def test_stats_advertise_async_target(self):
        self.useFixture(fixtures.MockPatchObject(cinder_rbd.RBDDriver,
                                                 '_update_volume_stats'))
        self.driver._stats = {}
        self.driver._update_volume_stats()
        self.assertTrue(self.driver._stats['async_migration_target'])
        self.assertEqual([kinds.RBD_LINKED, kinds.RBD_NATIVE,
                          kinds.SHARED_FILE],
                         self.driver._stats['async_migration_source_kinds'])
        # a cluster's peer resumes them all: none is an exporter's
        self.assertEqual([kinds.RBD_LINKED, kinds.RBD_NATIVE,
                          kinds.SHARED_FILE],
                         self.driver._stats['async_migration_failover_kinds'])
        self.set('async_migration_source_kinds', list(kinds.ALL))
        self.driver._update_volume_stats()
        self.assertNotIn(kinds.EXPORTER,
                         self.driver._stats['async_migration_failover_kinds'])

    def test_list_opts(self):
        listed = dict(opts.list_opts())
        self.assertEqual({'backend_defaults', 'asyncmig'}, set(listed))
        backend_opts = opts.target_opts + opts.exporter_opts
        self.assertEqual({o.name for o in backend_opts},
                         {o.name for o in listed['backend_defaults']})
        for opt in backend_opts + opts.manager_opts:
            self.assertTrue(opt.help.endswith('.'), opt.name)


class CopyCapTest(DriverTestCase):

    def setUp(self):
        super(CopyCapTest, self).setUp()
        self.log = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        self.set('async_migration_state_dir', os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'state'))
        self.status = self.driver._status_path(self.volume.name)

    def test_lower_of_backend_and_migration_reaches_the_worker(self):
        self.set('async_migration_copy_max_bytes_per_sec', 8 * units.Mi)
        self.driver.set_copy_rate(self.volume, 2 * units.Mi)
        self.assertEqual(2 * units.Mi, copy_worker.read_rate(self.status))
        self.driver.set_copy_rate(self.volume, 0)
        self.assertEqual(8 * units.Mi, copy_worker.read_rate(self.status))
        self.set('async_migration_copy_max_bytes_per_sec', 0)
        self.driver.set_copy_rate(self.volume, 0)
        self.assertEqual(0, copy_worker.read_rate(self.status))
        self.assertEqual(3, self.log.output.count('is capped at'))

    def test_the_same_cap_again_changes_nothing(self):
        self.driver.set_copy_rate(self.volume, units.Mi)
        stamp = os.stat(copy_worker.rate_path(self.status)).st_ino
        self.driver.set_copy_rate(self.volume, units.Mi)
        self.assertEqual(stamp,
                         os.stat(copy_worker.rate_path(self.status)).st_ino)
        self.assertEqual(1, self.log.output.count('is capped at'))

    def test_another_hosts_worker_is_blocklisted_only_in_a_cluster(self):
        record = {'worker': {'pid': 4242, 'host': 'another-host',
                             'addr': '10.0.0.2:0/123'}}

        class Cluster(object):
            def __init__(self):
                self.blocklisted = []

            def blocklist_add(self, addr, expiry):
                self.blocklisted.append(addr)
        client = mock.Mock(cluster=Cluster())
        # the dead worker still watches the image
        self.driver.engine = mock.Mock(**{
            'watchers.return_value': ['10.0.0.2:0/123']})
        self.driver._release_dead_worker(client, self.volume.name, record,
                                         self.status)
        # alone, another host's worker may live: librbd waits for it
        self.assertEqual([], client.cluster.blocklisted)
        # in a cluster, this service holds the volume's lock: the other
        # host's service lost it, and its worker is fenced
        self.driver.cluster_name = 'asyncmig-target@rbd-async'
        self.driver._release_dead_worker(client, self.volume.name, record,
                                         self.status)
        self.assertEqual(['10.0.0.2:0/123'], client.cluster.blocklisted)

    def test_files_of_copies_that_went_on_elsewhere_are_removed(self):
        state_dir = os.path.dirname(self.status)
        os.makedirs(state_dir)
        statuses = {name: self.driver._status_path(name)
                    for name in ('volume-here', 'volume-elsewhere')}
        for path in statuses.values():
            # as a worker leaves them: its status, cap and log
            copy_worker.write_status(path, {'pid': 1, 'phase': 'running'})
            copy_worker.write_rate(path, units.Mi)
            open(copy_worker.log_path(path), 'w').close()
        exporter_record = os.path.join(state_dir, 'exporter.x.source')
        open(exporter_record, 'w').close()
        self.driver.forget_copies({'volume-here'})
        self.assertEqual(
            sorted([os.path.basename(p) for p in (
                statuses['volume-here'],
                copy_worker.rate_path(statuses['volume-here']),
                copy_worker.log_path(statuses['volume-here']),
                exporter_record)]),
            sorted(os.listdir(state_dir)))


class LockHolderStallTest(DriverTestCase):
    """A copy run by the lock holder that goes silent is asked again."""

    HOLDER = 'client.9 10.0.0.3:0/1'

    def setUp(self):
        super(LockHolderStallTest, self).setUp()
        self.set('async_migration_lock_holder_stall_timeout', 30)
        self.set('async_migration_stall_timeout', 600)
        self.set('async_migration_state_dir', os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'state'))
        self.log = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        self.clock = [0.0]
        self.useFixture(fixtures.MockPatchObject(
            target_rbd, 'time', mock.Mock(monotonic=lambda: self.clock[0])))
        self.driver.engine = mock.Mock(**{
            'read_record.return_value': {},
            'inspect.return_value': mock.Mock(size=units.Gi)})
        self.useFixture(fixtures.MockPatchObject(
            self.driver, '_holding', return_value=[]))
        self.useFixture(fixtures.MockPatchObject(
            self.driver, '_record',
            side_effect=lambda *a, record=None, **changes: dict(
                record or {}, **changes)))
        self.started = []

    def worker(self, reports):
        """A copy worker whose reports follow ``reports``, one per poll.

        Its last report stays; each poll advances the clock.
        """
        test = self

        class Worker(object):
            def __init__(self):
                self.polls = 0
                self.stopped = False

            def read(self):
                return dict(reports[min(self.polls, len(reports) - 1)],
                            addr='10.0.0.1:0/%d' % len(test.started))

            def running(self):
                return not self.stopped

            def wait(self, timeout):
                self.polls += 1
                test.clock[0] += timeout

            def stop(self):
                self.stopped = True
        return Worker()

    def run_copy(self, *workers):
        queue = list(workers)

        def start(client, volume, record):
            self.started.append(queue.pop(0))
            return self.started[-1]
        self.useFixture(fixtures.MockPatchObject(
            self.driver, '_start_worker', side_effect=start))
        return self.driver._run_copy(mock.Mock(), self.volume, None)

    def test_a_silent_lock_holder_is_asked_again_by_a_new_worker(self):
        silent = self.worker([{'phase': 'running', 'done': 5, 'total': 256,
                               'copy_in': self.HOLDER}])
        # asked again, the holder passes over what it copied, then ends
        again = self.worker(
            [{'phase': 'running', 'done': n, 'total': 256,
              'copy_in': self.HOLDER} for n in (0, 128, 256)] +
            [{'phase': copy_worker.DONE, 'done': 256, 'total': 256}])
        record = self.run_copy(silent, again)
        self.assertEqual([silent, again], self.started)
        self.assertTrue(silent.stopped)
        self.assertEqual(100.0, record['progress']['percent'])
        self.assertIn('made no progress for 3', self.log.output)
        # well before the stall timeout ends the attempt
        self.assertLess(self.clock[0], 60)

    def test_a_silent_copy_of_its_own_waits_for_the_stall_timeout(self):
        silent = self.worker([{'phase': 'running', 'done': 5, 'total': 256,
                               'copy_in': None}])
        self.assertRaises(target_rbd.exception.MigrationEngineError,
                          self.run_copy, silent)
        # no worker but the first: a copy the worker runs has nobody to ask
        self.assertEqual([silent], self.started)
        self.assertGreater(self.clock[0], 600)


class RateMeterTest(testtools.TestCase):

    def test_rate_follows_samples(self):
        meter = target_rbd._RateMeter(smoothing=1.0)
        with mock.patch('time.monotonic', side_effect=[0.0, 2.0, 3.0]):
            self.assertEqual(0.0, meter.update(0))
            self.assertEqual(50.0, meter.update(100))
            # a restarted copy going back does not yield a negative rate
            self.assertEqual(50.0, meter.update(10))
