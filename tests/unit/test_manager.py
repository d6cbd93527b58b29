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

"""Manager and RPC pieces that need no running service."""

import datetime
import os
import threading
import time
from unittest import mock

from cinder import coordination
from cinder import exception as cinder_exception
import fixtures
import futurist
from os_brick import exception as brick_exception
from oslo_concurrency import processutils
from oslo_config import cfg
from oslo_config import fixture as config_fixture
from oslo_db import exception as db_exc
from oslo_i18n import fixture as i18n_fixture
import oslo_messaging as messaging
from oslo_utils import timeutils
from oslo_utils import units
import testtools
import tooz.coordination

from cinder_asyncmig import exception
from cinder_asyncmig import messages
from cinder_asyncmig.sandbox import process
from cinder_asyncmig.sources import kinds
from cinder_asyncmig.volume import constants
from cinder_asyncmig.volume.drivers import rbd as rbd_driver
from cinder_asyncmig.volume import manager
from cinder_asyncmig.volume import progress as progress_record
from cinder_asyncmig.volume import rpcapi
from cinder_asyncmig.volume import slots
from cinder_asyncmig.volume import throttle

CONF = cfg.CONF


class RpcErrorTest(testtools.TestCase):

    def _raise(self, exc):
        with manager._rpc_safe_errors():
            raise exc

    def test_plugin_error_becomes_its_cinder_base(self):
        exc = self.assertRaises(
            cinder_exception.Invalid, self._raise,
            exception.MigrationSourceRefused(volume_id='v', reason='busy'))
        self.assertIs(cinder_exception.Invalid, type(exc))
        self.assertIn('busy', str(exc))
        self.assertEqual(400, exc.code)

    def test_engine_error_becomes_backend_error(self):
        exc = self.assertRaises(
            cinder_exception.VolumeBackendAPIException, self._raise,
            exception.MigrationNoSpace(image='i', step='prepare'))
        self.assertIs(cinder_exception.VolumeBackendAPIException, type(exc))
        self.assertIn('pool is full', str(exc))

    def test_cinder_errors_pass_unchanged(self):
        original = cinder_exception.InvalidVolume(reason='x')
        exc = self.assertRaises(cinder_exception.InvalidVolume, self._raise,
                                original)
        self.assertIs(original, exc)


class TargetWithoutEndpointTest(testtools.TestCase):

    def test_recognised_in_every_form(self):
        import oslo_messaging as messaging
        self.assertTrue(manager._target_lacks_endpoint(
            messaging.UnsupportedVersion('1.0')))
        self.assertTrue(manager._target_lacks_endpoint(
            messaging.RemoteError('UnsupportedVersion', 'no endpoint')))
        self.assertTrue(manager._target_lacks_endpoint(
            messaging.RemoteError('NoSuchMethod', 'x')))
        self.assertFalse(manager._target_lacks_endpoint(
            messaging.RemoteError('InvalidVolume', 'refused')))
        self.assertFalse(manager._target_lacks_endpoint(
            messaging.MessagingTimeout()))
        self.assertFalse(manager._target_lacks_endpoint(
            cinder_exception.InvalidVolume(reason='x')))


class ProgressRecorderTest(testtools.TestCase):

    def test_render(self):
        progress = {'percent': 42.0, 'bytes_copied': 430 * 2 ** 20,
                    'bytes_total': 2 ** 30,
                    'rate_bytes_per_sec': 180 * 2 ** 20}
        self.assertEqual('42.0% (430 of 1024 MiB, 180 MiB/s)',
                         manager._ProgressRecorder.render(progress))
        progress['kind'] = kinds.EXPORTER
        self.assertEqual('42.0%% (430 of 1024 MiB, 180 MiB/s) from %s '
                         'source' % kinds.EXPORTER,
                         manager._ProgressRecorder.render(progress))
        # the holder's address stays out of the user's metadata
        progress['copy_in'] = 'client.4133 127.0.0.1:0/2905658401'
        text = manager._ProgressRecorder.render(progress)
        self.assertIn("copying in the client that holds the volume's lock "
                      "(its hypervisor), where the cap does not apply", text)
        self.assertNotIn('127.0.0.1', text)

    def test_throttled_but_final_phases_always_written(self):
        db = mock.Mock()
        db.volume_admin_metadata_get.return_value = {}
        rec = manager._ProgressRecorder(db, 'ctxt', 'vol', interval=5)
        copying = {'phase': 'copying', 'percent': 1.0}
        with mock.patch('time.monotonic', side_effect=[10, 11, 16, 17]):
            rec(copying)
            rec(copying)
            rec(copying)
            rec({'phase': 'committing', 'percent': 100.0})
        written = [c.args[2][constants.PROGRESS_KEY]
                   for c in db.volume_metadata_update.call_args_list]
        self.assertEqual(3, len(written))
        self.assertTrue(written[-1].startswith('100.0%'))

    def test_notified_at_each_phase_and_at_most_every_interval(self):
        CONF.set_override('notification_interval', 60, group='asyncmig')
        self.addCleanup(CONF.clear_override, 'notification_interval',
                        group='asyncmig')
        db = mock.Mock()
        db.volume_admin_metadata_get.return_value = {}
        notified = []
        rec = manager._ProgressRecorder(
            db, 'ctxt', 'vol', interval=2,
            notify=lambda: notified.append(
                progress_record.decode(db.volume_admin_metadata_update.
                                       call_args.args[2][
                                           progress_record.KEY])['phase']))
        copying = {'phase': 'copying', 'percent': 1.0}
        clock = [10]
        with mock.patch('time.monotonic', lambda: clock[0]):
            for now in (10, 12, 14, 75):
                clock[0] = now
                rec(copying)
            rec.retrying(1, 10, RuntimeError())
            rec({'phase': 'committing', 'percent': 100.0})
        self.assertEqual(['copying', 'copying', 'retrying', 'committing'],
                         notified)

    def test_owner_unknown_skips_a_progress_write_but_holds_the_commit(self):
        db = mock.Mock()
        db.volume_admin_metadata_get.return_value = {}
        lost = db_exc.DBConnectionError('gone')
        owner = mock.Mock(side_effect=lost)
        rec = manager._ProgressRecorder(db, 'ctxt', 'vol', interval=0,
                                        owner=owner)
        # the copy goes on; its progress waits for the database
        rec({'phase': 'copying', 'percent': 1.0})
        self.assertEqual(
            lost, self.assertRaises(db_exc.DBConnectionError, rec,
                                    {'phase': 'committing',
                                     'percent': 100.0}))
        self.assertEqual(2, owner.call_count)
        # a peer owns it: no commit either
        owner.side_effect = None
        owner.return_value = False
        self.assertRaises(manager._Lost, rec,
                          {'phase': 'committing', 'percent': 100.0})

    def test_a_retry_keeps_what_was_copied_in_view(self):
        db = mock.Mock()
        db.volume_admin_metadata_get.return_value = {}
        rec = manager._ProgressRecorder(db, 'ctxt', 'vol', interval=5)
        rec.retrying(1, 10, RuntimeError())
        rec({'phase': 'copying', 'percent': 42.0,
             'bytes_copied': 430 * 2 ** 20, 'bytes_total': 2 ** 30,
             'rate_bytes_per_sec': 180 * 2 ** 20})
        rec.retrying(2, 20, exception.MigrationEngineError(
            image='i', step='execute', reason='r'))
        written = [c.args[2][constants.PROGRESS_KEY]
                   for c in db.volume_metadata_update.call_args_list]
        self.assertEqual(
            ['interrupted by RuntimeError; retry 1 in 10 s',
             '42.0% (430 of 1024 MiB, 180 MiB/s)',
             '42.0% (430 of 1024 MiB) copied; interrupted by '
             'MigrationEngineError; retry 2 in 20 s'], written)

    def record(self, db):
        return progress_record.decode(db.admin[progress_record.KEY])

    def test_operators_record_follows_queue_copy_retry_and_end(self):
        db = _FakeDB()
        db.admin[progress_record.KEY] = progress_record.encode(
            {'phase': 'copying', 'started': 1000, 'updated': 1000})
        caps = []
        rec = manager._ProgressRecorder(
            db, 'ctxt', 'vol-1', interval=0,
            on_cap=lambda cap: caps.append(cap) or 64 * units.Mi)
        db.metadata[throttle.RATE_KEY] = str(32 * units.Mi)
        db.volume_metadata_get = lambda ctxt, volume_id: dict(db.metadata)
        rec.queued(2)
        self.assertEqual({'phase': 'queued', 'place': 2, 'started': 1000},
                         {k: v for k, v in self.record(db).items()
                          if k != 'updated'})
        copying = {'phase': 'copying', 'percent': 42.0,
                   'bytes_copied': 430 * units.Mi, 'bytes_total': units.Gi,
                   'rate_bytes_per_sec': 180 * units.Mi,
                   'kind': kinds.SHARED_FILE,
                   'copy_in': 'client.4133 10.213.0.3:0/2905658401'}
        rec(copying)
        record = self.record(db)
        self.assertEqual(
            {'phase': 'copying', 'copied': 430 * units.Mi,
             'total': units.Gi, 'rate': 180 * units.Mi,
             'kind': kinds.SHARED_FILE, 'cap': 64 * units.Mi,
             'copy_in': copying['copy_in'], 'started': 1000},
            {k: v for k, v in record.items() if k != 'updated'})
        self.assertEqual([32 * units.Mi], caps)
        self.assertLessEqual(time.time() - 5, record['updated'])
        before = time.time()
        rec.retrying(3, 40, exception.MigrationEngineError(
            image='i', step='execute', reason='r'))
        record = self.record(db)
        self.assertEqual(('retrying', 3, 'MigrationEngineError',
                          430 * units.Mi, 0, kinds.SHARED_FILE,
                          64 * units.Mi),
                         (record['phase'], record['attempt'],
                          record['error'], record['copied'],
                          record['rate'], record['kind'], record['cap']))
        self.assertNotIn('copy_in', record)
        rec.queued(1)
        self.assertEqual(('queued', 1, 430 * units.Mi, kinds.SHARED_FILE),
                         tuple(self.record(db)[k] for k in (
                             'phase', 'place', 'copied', 'kind')))
        self.assertTrue(
            int(before) + 40 <= record['retry_at'] <= time.time() + 40)
        rec({'phase': 'committing', 'bytes_copied': units.Gi,
             'bytes_total': units.Gi})
        self.assertEqual('committing', self.record(db)['phase'])
        rec({'phase': 'success', 'bytes_copied': units.Gi,
             'bytes_total': units.Gi})
        self.assertEqual(('cleaning-source', 1000),
                         (self.record(db)['phase'],
                          self.record(db)['started']))

    def test_a_record_fits_in_admin_metadata(self):
        record = {'phase': 'retrying', 'copied': 2 ** 50, 'total': 2 ** 50,
                  'rate': 2 ** 40, 'cap': 2 ** 40, 'attempt': 1000,
                  'retry_at': 2 ** 33, 'started': 2 ** 33,
                  'updated': 2 ** 33, 'kind': kinds.SHARED_FILE,
                  'error': 'E' * 80, 'copy_in': 'client.%d %s' % (
                      2 ** 60, 'x' * 60), 'place': None}
        text = progress_record.encode(record)
        self.assertLessEqual(len(text), 255)
        decoded = progress_record.decode(text)
        # what may go went, the numbers stayed
        self.assertNotIn('copy_in', decoded)
        self.assertNotIn('place', decoded)
        self.assertEqual(record['copied'], decoded['copied'])
        self.assertEqual({}, progress_record.decode('{not json'))
        self.assertEqual({}, progress_record.decode('[1]'))


class DescribeTest(testtools.TestCase):

    def volume(self, migration_status, host, admin):
        return mock.Mock(id='vol-1', project_id='p', display_name='v',
                         migration_status=migration_status, host=host,
                         admin_metadata=admin)

    def test_aborting_once_the_abort_is_accepted(self):
        # the copy's last progress record came after the abort's
        volume = self.volume(constants.ATTACHABLE, 'h@async#p', {
            constants.SOURCE_KEY: 'h@src#p',
            constants.ABORTING_KEY: 'safe',
            progress_record.KEY: progress_record.encode({
                'phase': 'copying', 'copied': 256 * units.Mi,
                'total': units.Gi, 'rate': 64 * units.Mi})})
        seen = progress_record.describe(volume)
        self.assertEqual(('aborting', 0, None, 25.0),
                         (seen['phase'], seen['rate_bytes_per_sec'],
                          seen['eta_seconds'], seen['percent']))

    def test_copying(self):
        volume = self.volume(constants.ATTACHABLE, 'h@async#p', {
            constants.SOURCE_KEY: 'h@src#p',
            progress_record.KEY: progress_record.encode({
                'phase': 'copying', 'copied': 256 * units.Mi,
                'total': units.Gi, 'rate': 64 * units.Mi,
                'cap': 64 * units.Mi, 'kind': kinds.RBD_LINKED,
                'started': 0, 'updated': 60})})
        self.assertTrue(progress_record.is_async(volume))
        seen = progress_record.describe(volume)
        self.assertEqual(
            ('h@src#p', 'h@async#p', 'copying', 25.0, 12, kinds.RBD_LINKED,
             64 * units.Mi, '1970-01-01T00:01:00+00:00'),
            (seen['source_host'], seen['target_host'], seen['phase'],
             seen['percent'], seen['eta_seconds'], seen['source_kind'],
             seen['max_bytes_per_sec'], seen['updated_at']))

    def test_taking_over_and_not_async(self):
        volume = self.volume('migrating', 'h@src#p',
                             {constants.TARGET_KEY: 'h@async#p'})
        self.assertTrue(progress_record.is_async(volume))
        seen = progress_record.describe(volume)
        self.assertEqual(('taking-over', 'h@src#p', 'h@async#p', None),
                         (seen['phase'], seen['source_host'],
                          seen['target_host'], seen['percent']))
        # Cinder's own migrations, and ended ones
        for status, admin in (('migrating', {}), ('success', {
                constants.SOURCE_KEY: 'h@src#p'}), (None, {})):
            self.assertFalse(progress_record.is_async(
                self.volume(status, 'h@async#p', admin)))


class StockReasonTest(testtools.TestCase):

    def setUp(self):
        super(StockReasonTest, self).setUp()
        self.mgr = manager.AsyncMigrationVolumeManager.__new__(
            manager.AsyncMigrationVolumeManager)
        self.volume = mock.Mock(volume_attachment=[])
        self.host = {'host': 'h@async#p',
                     'capabilities': {'async_migration_target': True}}

    def reason(self, **kwargs):
        args = dict(volume=self.volume, host=self.host,
                    force_host_copy=False, new_type_id=None)
        args.update(kwargs)
        return self.mgr._stock_migration_reason(**args)

    def test_async_when_target_advertises_it(self):
        self.assertIsNone(self.reason())

    def test_stock_cases(self):
        self.assertIn('attachments', self.reason(
            volume=mock.Mock(volume_attachment=[object()])))
        self.assertIn('force_host_copy', self.reason(force_host_copy=True))
        self.assertIn('retype', self.reason(new_type_id='t', diff={
            'encryption': {'provider': ('luks', None)}}))
        # a retype that only changes the backend is async
        self.assertIsNone(self.reason(new_type_id='t', diff={
            'extra_specs': {'volume_backend_name': ('rbd-src',
                                                    'rbd-async')}}))
        self.assertIn('not an async migration target', self.reason(
            host={'host': 'h@lvm#p', 'capabilities': {}}))


class RpcApiTest(testtools.TestCase):

    def test_own_version_cap(self):
        self.assertEqual('1.3',
                         rpcapi.AsyncMigrationAPI.determine_rpc_version_cap())
        CONF.set_override('rpc_version_cap', '0.9', group='asyncmig')
        self.addCleanup(CONF.clear_override, 'rpc_version_cap',
                        group='asyncmig')
        self.assertEqual('0.9',
                         rpcapi.AsyncMigrationAPI.determine_rpc_version_cap())

    def test_endpoint_namespace_matches_client(self):
        target = manager.AsyncMigrationEndpoint.target
        self.assertEqual(rpcapi.NAMESPACE, target.namespace)
        self.assertEqual(rpcapi.AsyncMigrationAPI.RPC_API_VERSION,
                         target.version)


class _StoppingDriver(object):
    """Stops copies: the volumes whose copy worker it stopped."""

    def __init__(self):
        self.stopped = []

    def stop_copy(self, volume):
        self.stopped.append(volume.id)


class SteerMigrationTest(testtools.TestCase):
    """What an operator asks of a migration, on its target host."""

    def setUp(self):
        super(SteerMigrationTest, self).setUp()
        # what the manager notifies: (event, payload)
        self.notified = []
        self.useFixture(fixtures.MockPatch(
            'cinder_asyncmig.volume.notifications.send',
            side_effect=lambda ctxt, host, event, body: self.notified.append(
                (event, body))))
        # as in the services: lazy translation
        self.useFixture(i18n_fixture.ToggleLazy(True))
        self.mgr = manager.AsyncMigrationVolumeManager.__new__(
            manager.AsyncMigrationVolumeManager)
        self.mgr.db = _FakeDB()
        self.mgr.host = 'sandbox@rbd-async'
        self.mgr.driver = _StoppingDriver()
        self.mgr._completing_lock = threading.Lock()
        self.mgr._completing = {}
        self.started = []
        self.mgr.complete_migration = (
            lambda ctxt, volume: self.started.append(volume.id))
        self.volume = mock.Mock(
            id='vol-1', migration_status=constants.ATTACHABLE,
            host='sandbox@rbd-async#rbd-async', volume_attachment=[])
        self.ctxt = mock.Mock()
        self.pool = []
        self.mgr._add_to_threadpool = (
            lambda func, *args: self.pool.append(func.__name__))
        self.mgr.db.admin[progress_record.KEY] = progress_record.encode({
            'phase': 'copying', 'copied': 256 * units.Mi,
            'total': units.Gi, 'rate': 64 * units.Mi, 'started': 1000,
            'kind': kinds.RBD_LINKED})

    def record(self):
        return progress_record.decode(self.mgr.db.admin[progress_record.KEY])

    def test_cap_set_and_dropped(self):
        self.mgr.set_migration_cap(self.ctxt, self.volume, 8 * units.Mi)
        self.assertEqual(str(8 * units.Mi),
                         self.mgr.db.admin[throttle.ADMIN_RATE_KEY])
        self.mgr.set_migration_cap(self.ctxt, self.volume, 0)
        self.assertEqual('0', self.mgr.db.admin[throttle.ADMIN_RATE_KEY])
        self.mgr.set_migration_cap(self.ctxt, self.volume, None)
        self.assertNotIn(throttle.ADMIN_RATE_KEY, self.mgr.db.admin)

    def test_refused_unless_it_migrates_here(self):
        for status, host in (('success', 'sandbox@rbd-async#rbd-async'),
                             (constants.ATTACHABLE, 'sandbox@rbd-src#p')):
            self.volume.migration_status = status
            self.volume.host = host
            for ask, args in ((self.mgr.set_migration_cap, (units.Mi,)),
                              (self.mgr.pause_migration, ()),
                              (self.mgr.resume_migration, ()),
                              (self.mgr.abort_migration, (True,))):
                self.assertRaises(cinder_exception.InvalidVolume, ask,
                                  self.ctxt, self.volume, *args)
        self.assertEqual([progress_record.KEY], list(self.mgr.db.admin))
        self.assertEqual([], self.mgr.driver.stopped)

    def test_paused_then_resumed(self):
        self.mgr.pause_migration(self.ctxt, self.volume)
        self.assertIn(constants.PAUSED_KEY, self.mgr.db.admin)
        self.assertEqual(['vol-1'], self.mgr.driver.stopped)
        self.assertEqual(('paused', 0, 256 * units.Mi, 1000),
                         tuple(self.record()[k] for k in (
                             'phase', 'rate', 'copied', 'started')))
        self.assertEqual('paused by an operator at 25.0% (256 of 1024 MiB)',
                         self.mgr.db.metadata[constants.PROGRESS_KEY])
        error = self.assertRaises(cinder_exception.InvalidVolume,
                                  self.mgr.pause_migration, self.ctxt,
                                  self.volume)
        self.assertIn('paused already', str(error))
        self.mgr.resume_migration(self.ctxt, self.volume)
        self.assertNotIn(constants.PAUSED_KEY, self.mgr.db.admin)
        self.assertEqual('copying', self.record()['phase'])
        self.assertEqual(['vol-1'], self.started)
        error = self.assertRaises(cinder_exception.InvalidVolume,
                                  self.mgr.resume_migration, self.ctxt,
                                  self.volume)
        self.assertIn('not paused', str(error))

    def test_pause_refused_while_committing_or_in_the_lock_holder(self):
        for record, why in (({'phase': 'committing'}, 'it is committing'),
                            ({'phase': 'copying', 'copy_in':
                              'client.4133 10.213.0.3:0/29'},
                             'runs in client.4133')):
            self.mgr.db.admin[progress_record.KEY] = progress_record.encode(
                record)
            error = self.assertRaises(cinder_exception.InvalidVolume,
                                      self.mgr.pause_migration, self.ctxt,
                                      self.volume)
            self.assertIn(why, str(error))
        self.assertNotIn(constants.PAUSED_KEY, self.mgr.db.admin)
        self.assertEqual([], self.mgr.driver.stopped)

    def _import_only(self):
        class Driver(_StoppingDriver):
            initialized = True
            supported = True

            def check_abort_migration_target(self, ctxt, volume,
                                             force=False):
                if not force:
                    raise exception.MigrationAbortRefused(
                        image='volume-1', reason='it is an import-only '
                        'migration, so librbd deletes the destination')
        self.mgr.driver = Driver()

    def test_abort_refused_before_anything_changes(self):
        self._import_only()
        for change, why in (
                (lambda: setattr(self.volume, 'volume_attachment',
                                 [object()]), 'detach it first'),
                (lambda: self.mgr.db.admin.update({
                    progress_record.KEY: progress_record.encode(
                        {'phase': 'cleaning-source'})}),
                 'it is cleaning-source'),
                (lambda: None, 'import-only migration')):
            self.volume.volume_attachment = []
            self.mgr.db.admin[progress_record.KEY] = '{"phase":"copying"}'
            change()
            error = self.assertRaises(cinder_exception.InvalidVolume,
                                      self.mgr.abort_migration, self.ctxt,
                                      self.volume)
            self.assertIn(why, str(error))
        self.assertEqual([progress_record.KEY], list(self.mgr.db.admin))
        self.assertEqual([], self.pool)
        self.assertEqual([], self.mgr.driver.stopped)

    def test_abort_begun_then_nothing_else_steers_it(self):
        self._import_only()
        self.mgr.abort_migration(self.ctxt, self.volume, force=True)
        self.assertEqual('force', self.mgr.db.admin[constants.ABORTING_KEY])
        self.assertEqual(('aborting', 0, 1000), tuple(
            self.record()[k] for k in ('phase', 'rate', 'started')))
        self.assertEqual(['_abort'], self.pool)
        for ask in (self.mgr.abort_migration, self.mgr.pause_migration,
                    self.mgr.resume_migration):
            error = self.assertRaises(cinder_exception.InvalidVolume, ask,
                                      self.ctxt, self.volume)
            self.assertIn('being aborted', str(error))
        self.assertEqual(['_abort'], self.pool)
        self.assertEqual([], self.started)


class RetryDelayTest(testtools.TestCase):

    def test_doubles_then_caps(self):
        self.assertEqual([10, 20, 40, 80, 160, 320, 600, 600],
                         [manager.retry_delay(n, 10, 600)
                          for n in range(1, 9)])
        self.assertEqual(600, manager.retry_delay(10 ** 6, 10, 600))


class _FakeDB(object):
    """Volume and admin metadata, the way the manager reads and writes."""

    def __init__(self):
        self.metadata = {}
        self.admin = {}
        # the volume in the database, as another service set it
        self.host = None
        self.status = 'available'
        self.migration_status = constants.ATTACHABLE

    def volume_get(self, ctxt, volume_id):
        return mock.Mock(host=self.host, status=self.status,
                         migration_status=self.migration_status)

    def volume_metadata_update(self, ctxt, volume_id, metadata, delete):
        self.metadata.update(metadata)

    def volume_metadata_delete(self, ctxt, volume_id, key):
        self.metadata.pop(key, None)

    def volume_admin_metadata_get(self, ctxt, volume_id):
        return dict(self.admin)

    def volume_admin_metadata_update(self, ctxt, volume_id, metadata,
                                     delete):
        self.admin.update(metadata)

    def volume_admin_metadata_delete(self, ctxt, volume_id, key):
        self.admin.pop(key, None)


class _FakeVolume(object):

    def __init__(self):
        self.id = 'vol-1'
        self.name = 'volume-vol-1'
        self.project_id = 'project-1'
        self.display_name = 'vol'
        self.updated_at = timeutils.utcnow() - datetime.timedelta(minutes=1)
        self.host = 'sandbox@rbd-async#rbd-async'
        self.is_clustered = False
        self.status = 'available'
        self.migration_status = constants.ATTACHABLE
        self.volume_attachment = []
        self.admin_metadata = {}
        self.saved = []

    def get(self, key, default=None):
        # oslo.log reads a log call's resource like a dict
        return getattr(self, key, default)

    def refresh(self):
        pass

    def update(self, values):
        for key, value in values.items():
            setattr(self, key, value)

    def save(self):
        self.saved.append(self.migration_status)


class _FakeDriver(object):
    """Fails the first ``failures`` completions with the given error."""

    initialized = True
    supported = True

    def __init__(self, failures=0, error=None, source_left=False,
                 report=False):
        self.failures = failures
        # tell the manager the commit is next, as the driver does
        self.report = report
        self.error = error
        self.source_left = source_left
        self.calls = 0
        self.commits = 0
        # the volumes whose copy worker was stopped here
        self.stopped = []

    def stop_copy(self, volume):
        self.stopped.append(volume.id)

    def complete_migration_target(self, ctxt, volume,
                                  progress_callback=None):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        if self.report:
            progress_callback({'phase': 'committing'})
        self.commits += 1
        return {'phase': 'success', 'source_left': self.source_left}


class _FakeRpc(object):

    def __init__(self, failures=0):
        self.failures = failures
        self.cleanups = []

    def can_clean_up_source(self):
        return True

    def cleanup_migration_source(self, ctxt, volume, src_host):
        self.cleanups.append(src_host)
        if len(self.cleanups) <= self.failures:
            raise messaging.MessagingTimeout()


class _FakeMessages(object):
    """Cinder's message API: the (volume, detail) of each message."""

    def __init__(self):
        self.left = []
        self.projects = []

    def create(self, ctxt, action, resource_uuid=None, detail=None):
        self.left.append((resource_uuid, detail))
        self.projects.append(ctxt.project_id)


class _RecordedWaits(threading.Event):

    def __init__(self, waits):
        super(_RecordedWaits, self).__init__()
        self.waits = waits

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return self.is_set()


class CompletionTest(testtools.TestCase):
    """States a user sees when a copy, commit or clean-up fails."""

    def setUp(self):
        super(CompletionTest, self).setUp()
        # what the manager notifies: (event, payload)
        self.notified = []
        self.useFixture(fixtures.MockPatch(
            'cinder_asyncmig.volume.notifications.send',
            side_effect=lambda ctxt, host, event, body: self.notified.append(
                (event, body))))
        self.mgr = manager.AsyncMigrationVolumeManager.__new__(
            manager.AsyncMigrationVolumeManager)
        self.mgr._completing = {}
        self.mgr._completing_lock = threading.Lock()
        self.mgr._aborting = set()
        self.mgr._left_to_host = set()
        self.mgr.db = _FakeDB()
        self.mgr._asyncmig_rpcapi = _FakeRpc()
        self.mgr.copy_slots = slots.CopySlots(0)
        self.mgr.host = 'sandbox@rbd-async'
        self.mgr.cluster = None
        # Cinder's coordination on tooz's file backend, as cinder-volume
        # runs it by default
        self.lock_dir = self.useFixture(fixtures.TempDir()).path
        self.useFixture(config_fixture.Config(CONF)).config(
            backend_url='file://' + self.lock_dir, group='coordination')
        coordination.COORDINATOR.start()
        self.addCleanup(coordination.COORDINATOR.stop)
        # the manager's pool, as cinder-volume runs it without eventlet
        self.mgr._tpe = futurist.ThreadPoolExecutor(4)
        self.addCleanup(self.mgr._tpe.shutdown)
        self.mgr.message_api = _FakeMessages()
        self.volume = _FakeVolume()
        self.sleeps = []
        self.useFixture(fixtures.MockPatch('time.sleep',
                                           side_effect=self.sleeps.append))
        sleeps = self.sleeps

        class Completion(manager._Completion):
            # the waits for a retry, recorded instead of waited
            def __init__(self):
                super(Completion, self).__init__()
                self.stop = _RecordedWaits(sleeps)
        self.useFixture(fixtures.MockPatch(
            'cinder_asyncmig.volume.manager._Completion', Completion))
        self.ctxt = mock.Mock()

    def complete(self, driver):
        self.mgr.driver = driver
        self.mgr.complete_migration(self.ctxt, self.volume)
        self.until_ended()

    def until_ended(self):
        # on the events: time.sleep is recorded, not slept
        while self.mgr._completing:
            for completion in list(self.mgr._completing.values()):
                self.assertTrue(completion.ended.wait(10))

    def test_failures_are_retried_while_the_volume_stays_usable(self):
        driver = _FakeDriver(
            failures=3, error=exception.MigrationEngineError(
                image='volume-1', step='execute', reason='worker died'))
        progress = []
        self.mgr.db.volume_metadata_update = (
            lambda c, v, md, d: progress.append(md[constants.PROGRESS_KEY]))
        self.complete(driver)
        self.assertEqual(4, driver.calls)
        self.assertEqual([10, 20, 40], self.sleeps)
        self.assertEqual(['success'], self.volume.saved)
        self.assertEqual('interrupted by MigrationEngineError; retry 3 in '
                         '40 s', progress[-1])

    def test_retries_stop_when_the_migration_is_no_longer_running(self):
        driver = _FakeDriver(failures=5, error=OSError(110, 'timed out'))

        def aborted():
            if driver.calls:
                self.volume.migration_status = 'error'
        self.volume.refresh = aborted
        self.complete(driver)
        self.assertEqual(1, driver.calls)
        self.assertEqual([], self.volume.saved)

    def test_only_errors_that_can_heal_are_retried(self):
        class ClusterError(Exception):
            pass
        # as librbd's errors are: told by their module
        ClusterError.__module__ = 'rbd'
        for error in (ClusterError('timed out'), OSError(5, 'EIO'),
                      exception.MigrationNoSpace(image='volume-1',
                                                 step='execute'),
                      db_exc.DBConnectionError(),
                      messaging.MessagingTimeout(),
                      tooz.coordination.LockAcquireFailed('etcd is down'),
                      brick_exception.VolumeDeviceNotFound(device='/dev/sdx'),
                      processutils.ProcessExecutionError(exit_code=21),
                      cinder_exception.DriverNotInitialized()):
            self.assertTrue(manager._can_heal(error), error)
        for error in (TypeError(), KeyError('phase'), AttributeError(),
                      ValueError(), AssertionError()):
            self.assertFalse(manager._can_heal(error), error)

    def test_a_defect_ends_in_error_at_once_and_a_restart_resumes(self):
        driver = _FakeDriver(failures=1, error=KeyError('phase'))
        self.complete(driver)
        self.assertEqual(1, driver.calls)
        self.assertEqual([], self.sleeps)
        self.assertEqual(['error'], self.volume.saved)
        self.assertEqual([(self.volume.id, messages.COPY_FAILED)],
                         self.mgr.message_api.left)
        self.assertEqual({constants.FAILED_KEY: 'KeyError'},
                         self.mgr.db.admin)
        self.assertEqual([('error', 'KeyError')],
                         [(e, b['last_error']) for e, b in self.notified])
        self.volume.admin_metadata = dict(self.mgr.db.admin)
        self.mgr._clear_failure(self.ctxt, self.volume)
        self.assertEqual(constants.ATTACHABLE, self.volume.migration_status)
        self.assertEqual({}, self.mgr.db.admin)
        self.complete(driver)
        self.assertEqual(['error', constants.ATTACHABLE, 'success'],
                         self.volume.saved)

    def test_a_held_lock_leaves_the_volume_to_its_holder(self):
        # held, as by a take-over, a delete's roll-back or another
        # service's completion of this volume
        lock = coordination.COORDINATOR.get_lock(
            manager.LOCK.format(volume=self.volume))
        lock.acquire()
        driver = _FakeDriver()
        self.complete(driver)
        self.assertEqual(0, driver.calls)
        self.assertEqual([], self.volume.saved)
        self.assertEqual({}, self.mgr.db.metadata)
        lock.release()
        self.complete(driver)
        self.assertEqual(['success'], self.volume.saved)
        # tooz's file backend leaves the lock's file; a delete removes it
        lock_file = os.path.join(self.lock_dir, 'cinder-vol-1-asyncmig')
        self.assertTrue(os.path.exists(lock_file))
        rbd_driver.AsyncMigrationRBDDriver.clean_volume_file_locks('vol-1')
        self.assertFalse(os.path.exists(lock_file))

    def test_in_a_cluster_the_completing_service_becomes_the_host(self):
        self.mgr.cluster = 'asyncmig-target@rbd-async'
        self.mgr.host = 'sandbox-peer@rbd-async'
        self.volume.is_clustered = True
        self.mgr.db.host = 'sandbox-peer@rbd-async#rbd-async'
        driver = _FakeDriver(report=True)
        self.complete(driver)
        self.assertEqual('sandbox-peer@rbd-async#rbd-async', self.volume.host)
        self.assertEqual(1, driver.commits)
        self.assertEqual([constants.ATTACHABLE, 'success'], self.volume.saved)

    def test_the_scan_completes_what_no_completion_holds(self):
        volumes = {name: _FakeVolume() for name in (
            'orphan', 'held', 'deleting', 'just-handed-over', 'paused',
            'dead-peer-linked', 'dead-peer-exported')}
        for name, volume in volumes.items():
            volume.id = name
            if name.startswith('dead-peer'):
                volume.host = 'sandbox-peer@rbd-async#rbd-async'
        volumes['deleting'].status = 'deleting'
        volumes['just-handed-over'].updated_at = timeutils.utcnow()
        volumes['paused'].admin_metadata[constants.PAUSED_KEY] = '1000'
        # another service's completion holds it
        lock = coordination.COORDINATOR.get_lock(
            manager.LOCK.format(volume=volumes['held']))
        self.assertTrue(lock.acquire())
        self.addCleanup(lock.release)

        class Driver(_FakeDriver):
            def host_bound_reason(self, ctxt, volume):
                if volume.id == 'dead-peer-exported':
                    return 'its exporter source is served from its host only'
                return None
        self.mgr.driver = Driver()
        listed = self.useFixture(fixtures.MockPatch(
            'cinder.objects.VolumeList.get_all',
            return_value=list(volumes.values()))).mock
        self.mgr._adopt_orphans(self.ctxt)
        process.wait_for('the orphan completed',
                         lambda: volumes['orphan'].saved, 10)
        self.until_ended()
        self.assertEqual({'host': self.mgr.host,
                          'migration_status': constants.ATTACHABLE},
                         listed.call_args.kwargs['filters'])
        process.wait_for('the dead peer\'s completed',
                         lambda: volumes['dead-peer-linked'].saved, 10)
        self.until_ended()
        self.assertEqual({'orphan': ['success'], 'held': [], 'deleting': [],
                          'just-handed-over': [], 'paused': [],
                          'dead-peer-linked': ['success'],
                          'dead-peer-exported': []},
                         {n: v.saved for n, v in volumes.items()})
        self.assertEqual({'dead-peer-exported'}, self.mgr._left_to_host)

    def aborting(self, error=None, failures=0, committed=False):
        """A driver whose abort fails ``failures`` times with ``error``.

        :param committed: its migration committed before the abort.
        """
        self.mgr.db.admin.update({
            constants.SOURCE_KEY: 'src@rbd-src#rbd', progress_record.KEY:
            '{"phase":"aborting"}', constants.ABORTING_KEY: 'safe',
            throttle.ADMIN_RATE_KEY: '1024'})
        self.mgr.db.metadata[constants.PROGRESS_KEY] = 'aborting'
        self.mgr._get_service = lambda host: mock.Mock(
            cluster_name=None, availability_zone='az-src', uuid='svc-src')
        aborts = []

        class Driver(_FakeDriver):
            def migration_committed(self, ctxt, volume):
                return committed

            def abort_migration_target(self, ctxt, volume, force=False):
                aborts.append(force)
                if len(aborts) <= failures:
                    raise error
                return True
        self.mgr.driver = Driver()
        return aborts

    def test_an_abort_gives_the_volume_back_to_its_source(self):
        aborts = self.aborting(OSError(110, 'timed out'), failures=1)
        self.mgr._abort(self.ctxt, self.volume)
        self.assertEqual([False, False], aborts)
        self.assertEqual([10], self.sleeps)
        self.assertEqual(('src@rbd-src#rbd', 'az-src', 'svc-src', ['error']),
                         (self.volume.host, self.volume.availability_zone,
                          self.volume.service_uuid, self.volume.saved))
        self.assertEqual(({}, {}), (self.mgr.db.admin, self.mgr.db.metadata))
        self.assertEqual([(self.volume.id, messages.ABORTED)],
                         self.mgr.message_api.left)
        # the volume's owner reads it, not only the admin who aborted
        self.assertEqual([self.volume.project_id],
                         self.mgr.message_api.projects)
        # the phase, each time it is tried; then its end, from the target
        self.assertEqual(['progress', 'progress', 'end'],
                         [event for event, _ in self.notified])
        end = self.notified[-1][1]
        self.assertEqual(
            ('vol-1', 'aborted', 'error', 'aborting', 'src@rbd-src#rbd',
             'sandbox@rbd-async#rbd-async'),
            tuple(end[k] for k in ('volume_id', 'result', 'migration_status',
                                   'phase', 'source_host', 'target_host')))
        # again, as a restart would: it ended
        self.mgr._abort(self.ctxt, self.volume)
        self.assertEqual(2, len(aborts))

    def test_an_abort_refused_once_begun_lets_the_migration_go_on(self):
        aborts = self.aborting(exception.MigrationConflict(
            image='volume-1', reason='it is open by 1 client(s)'),
            failures=1)
        self.mgr._abort(self.ctxt, self.volume)
        self.until_ended()
        self.assertEqual(1, len(aborts))
        self.assertEqual([(self.volume.id, messages.ABORT_REFUSED)],
                         self.mgr.message_api.left)
        self.assertEqual('sandbox@rbd-async#rbd-async', self.volume.host)
        self.assertEqual(['success'], self.volume.saved)
        self.assertNotIn(constants.ABORTING_KEY, self.mgr.db.admin)

    def test_an_abort_too_late_lets_the_migration_end(self):
        # the copy committed as the abort stopped it
        aborts = self.aborting(committed=True)
        self.mgr._abort(self.ctxt, self.volume)
        self.until_ended()
        self.assertEqual([], aborts)
        self.assertEqual([(self.volume.id, messages.ABORT_REFUSED)],
                         self.mgr.message_api.left)
        self.assertEqual(('sandbox@rbd-async#rbd-async', ['success']),
                         (self.volume.host, self.volume.saved))
        self.assertNotIn(constants.ABORTING_KEY, self.mgr.db.admin)

    def test_one_abort_at_a_time(self):
        self.aborting()
        self.mgr._aborting.add(self.volume.id)
        self.mgr._abort(self.ctxt, self.volume)
        self.assertEqual([], self.volume.saved)
        self.assertIn(constants.ABORTING_KEY, self.mgr.db.admin)

    def stopped_in_a_cluster(self):
        """Complete in a cluster; check it stopped before the commit."""
        self.mgr.cluster = 'asyncmig-target@rbd-async'
        self.volume.is_clustered = True
        driver = _FakeDriver(report=True)
        self.complete(driver)
        self.assertEqual(1, driver.calls)
        self.assertEqual(0, driver.commits)
        self.assertEqual([], self.volume.saved)
        self.assertEqual([], self.mgr.message_api.left)
        self.assertNotIn(self.volume.id, self.mgr._completing)
        return driver

    def test_a_service_that_lost_the_volume_stops_before_the_commit(self):
        # a peer took the volume over once this service's lock lapsed
        self.mgr.db.host = 'sandbox-peer@rbd-async#rbd-async'
        driver = self.stopped_in_a_cluster()
        self.assertEqual({}, self.mgr.db.metadata)
        self.assertEqual([], driver.stopped)

    def test_in_a_cluster_a_delete_through_a_peer_stops_the_copy(self):
        self.mgr.db.host = self.mgr.host + '#rbd-async'
        # an admin reset the migration status and force-deleted the volume;
        # the delete went to the peer, which waits for this lock
        self.mgr.db.status = 'deleting'
        self.mgr.db.migration_status = None
        driver = self.stopped_in_a_cluster()
        # its worker stopped here, where it ran
        self.assertEqual([self.volume.id], driver.stopped)
        # the lock is free for the peer's roll-back
        lock = coordination.COORDINATOR.get_lock(
            manager.LOCK.format(volume=self.volume))
        self.assertTrue(lock.acquire(blocking=False))
        lock.release()

    def test_lost_migration_ends_in_error(self):
        driver = _FakeDriver(failures=1, error=exception.MigrationLost(
            image='volume-1', reason='the destination image does not exist'))
        self.complete(driver)
        self.assertEqual(['error'], self.volume.saved)
        self.assertEqual([], self.sleeps)
        self.assertEqual([(self.volume.id, messages.COPY_LOST)],
                         self.mgr.message_api.left)

    def test_a_lost_database_delays_the_completion_but_never_ends_it(self):
        # the database is gone for the first ``down`` calls that need it:
        # a progress write, the retry's note, the state reads and the
        # final save, as when MariaDB restarts in the middle of a copy
        calls = {'n': 0}
        down = 6

        def database():
            calls['n'] += 1
            if calls['n'] <= down:
                raise db_exc.DBConnectionError('Lost connection')
        progress = []

        def write(c, v, md, d):
            database()
            progress.append(md[constants.PROGRESS_KEY])
        self.mgr.db.volume_metadata_update = write
        self.mgr.db.volume_metadata_get = lambda c, v: database() or {}
        self.volume.refresh = database
        save = self.volume.save
        self.volume.save = lambda: database() or save()

        class Copying(_FakeDriver):
            def complete_migration_target(self, ctxt, volume,
                                          progress_callback=None):
                progress_callback({'phase': 'copying', 'percent': 40.0})
                return super(Copying, self).complete_migration_target(
                    ctxt, volume, progress_callback)
        driver = Copying(failures=1, error=exception.MigrationEngineError(
            image='volume-1', step='execute', reason='worker died'))
        self.complete(driver)
        self.assertGreater(calls['n'], down)
        self.assertEqual(2, driver.calls)
        self.assertEqual(['success'], self.volume.saved)
        self.assertNotIn(constants.PROGRESS_KEY, self.mgr.db.metadata)
        # the retry's wait, then the next attempt waited for the database
        self.assertEqual([10, 10], self.sleeps)

    def test_linked_source_gone_needs_no_source_host(self):
        self.mgr.db.admin[constants.SOURCE_KEY] = 'src@rbd#pool'
        self.mgr._asyncmig_rpcapi = _FakeRpc(failures=1)
        self.complete(_FakeDriver(source_left=False))
        self.assertEqual(['success'], self.volume.saved)
        self.assertEqual([], self.mgr._asyncmig_rpcapi.cleanups)
        self.assertEqual({}, self.mgr.db.admin)

    def test_source_removed_through_its_host(self):
        self.mgr.db.admin[constants.SOURCE_KEY] = 'src@nfs#pool'
        self.complete(_FakeDriver(source_left=True))
        self.assertEqual(['src@nfs#pool'],
                         self.mgr._asyncmig_rpcapi.cleanups)
        self.assertEqual(['success'], self.volume.saved)
        self.assertEqual({}, self.mgr.db.admin)

    def test_failed_clean_up_leaves_deleting_then_a_restart_retries(self):
        self.mgr.db.admin[constants.SOURCE_KEY] = 'src@nfs#pool'
        self.mgr._asyncmig_rpcapi = _FakeRpc(failures=1)
        self.complete(_FakeDriver(source_left=None))
        self.assertEqual([constants.SOURCE_LEFT], self.volume.saved)
        self.assertEqual('deleting', constants.SOURCE_LEFT)
        self.assertEqual({constants.SOURCE_KEY: 'src@nfs#pool'},
                         self.mgr.db.admin)
        self.mgr._retry_source_cleanup(self.ctxt, self.volume)
        self.assertEqual([constants.SOURCE_LEFT, 'success'],
                         self.volume.saved)
        self.assertEqual({}, self.mgr.db.admin)

    def test_copies_beyond_the_bound_queue_and_say_their_place(self):
        self.mgr.copy_slots = slots.CopySlots(1)
        progress = []
        self.mgr.db.volume_metadata_update = (
            lambda c, v, md, d: progress.append(
                (v, md[constants.PROGRESS_KEY])))
        first_copying, first_may_end = threading.Event(), threading.Event()

        class Driver(_FakeDriver):
            def complete_migration_target(self, ctxt, volume,
                                          progress_callback=None):
                if volume.id == 'vol-1':
                    first_copying.set()
                    first_may_end.wait(10)
                return super(Driver, self).complete_migration_target(
                    ctxt, volume)
        self.mgr.driver = Driver()
        second = _FakeVolume()
        second.id = 'vol-2'
        self.mgr.complete_migration(self.ctxt, self.volume)
        self.assertTrue(first_copying.wait(10))
        # returns at once, with nothing running for it
        self.mgr.complete_migration(self.ctxt, second)
        self.assertEqual(['vol-2'], self.mgr.copy_slots.waiting())
        self.assertEqual([], second.saved)
        self.assertEqual(constants.ATTACHABLE, second.migration_status)
        self.assertEqual(
            [('vol-2', 'queued for a copy slot: next in line')], progress)
        first_may_end.set()
        self.until_ended()
        self.assertEqual(['success'], self.volume.saved)
        self.assertEqual(['success'], second.saved)
        self.assertEqual(0, self.mgr.copy_slots.running())

    def test_a_stopped_completion_ends_without_a_state_change(self):
        copying = threading.Event()

        class Driver(_FakeDriver):
            def complete_migration_target(self, ctxt, volume,
                                          progress_callback=None):
                copying.set()
                while True:
                    progress_callback({'phase': 'copying'})
                    time.sleep(0.01)
        self.useFixture(fixtures.MockPatch('time.sleep'))  # real sleeps
        self.mgr.driver = Driver()
        self.mgr.complete_migration(self.ctxt, self.volume)
        self.assertTrue(copying.wait(10))
        self.mgr._stop_completion(self.volume, 10)
        self.assertEqual({}, self.mgr._completing)
        self.assertEqual([], self.volume.saved)
        self.assertEqual(0, self.mgr.copy_slots.running())

    def test_a_completion_in_line_for_a_slot_stops_at_once(self):
        self.mgr.copy_slots = slots.CopySlots(1)
        self.mgr.copy_slots.request('another volume', lambda: None)
        self.mgr.driver = _FakeDriver()
        self.mgr.complete_migration(self.ctxt, self.volume)
        self.assertEqual([self.volume.id], self.mgr.copy_slots.waiting())
        self.mgr._stop_completion(self.volume, 10)
        self.assertEqual({}, self.mgr._completing)
        self.assertEqual([], self.mgr.copy_slots.waiting())
        self.assertEqual(0, self.mgr.driver.calls)
        self.assertEqual([], self.volume.saved)

    def test_the_cast_returns_while_the_copy_runs(self):
        copying, may_end = threading.Event(), threading.Event()

        class Driver(_FakeDriver):
            def complete_migration_target(self, ctxt, volume,
                                          progress_callback=None):
                copying.set()
                may_end.wait(10)
                return super(Driver, self).complete_migration_target(
                    ctxt, volume)
        self.mgr.driver = Driver()
        endpoint = manager.AsyncMigrationEndpoint(self.mgr)
        endpoint.complete_migration_target(self.ctxt, self.volume)
        self.assertTrue(copying.wait(10))
        self.assertEqual([], self.volume.saved)
        may_end.set()
        process.wait_for('success', lambda: self.volume.saved, 10, 0.01)
        self.assertEqual(['success'], self.volume.saved)
