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

from unittest import mock

from cinder import exception as cinder_exception
from oslo_config import cfg
import testtools

from cinder_asyncmig import exception
from cinder_asyncmig.volume import constants
from cinder_asyncmig.volume import manager
from cinder_asyncmig.volume import rpcapi

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
        self.assertEqual(
            '42.0% (430 of 1024 MiB, 180 MiB/s)',
            manager._ProgressRecorder.render({
                'percent': 42.0, 'bytes_copied': 430 * 2 ** 20,
                'bytes_total': 2 ** 30, 'rate_bytes_per_sec': 180 * 2 ** 20}))

    def test_throttled_but_final_phases_always_written(self):
        db = mock.Mock()
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
        self.assertIn('retype', self.reason(new_type_id='t'))
        self.assertIn('not an async migration target', self.reason(
            host={'host': 'h@lvm#p', 'capabilities': {}}))


class RpcApiTest(testtools.TestCase):

    def test_own_version_cap(self):
        self.assertEqual('1.0',
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
