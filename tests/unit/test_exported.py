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

"""Exported sources: caps, RBD configuration and clean-up on failure."""

import os
import signal
import stat
from unittest import mock

import fixtures
from oslo_utils import units
import testtools

from cinder_asyncmig.engine import features
from cinder_asyncmig import exception
from cinder_asyncmig.sandbox import process
from cinder_asyncmig.sources import exported
from cinder_asyncmig.sources import exporter


class _Volume(object):

    def __init__(self, metadata=None):
        self.id = 'd3b07384-d9a0-4c9b-8a4e-2f1b8c9a0001'
        self.name = 'volume-%s' % self.id
        self.metadata = metadata or {}
        self.host = 'src@nfs#nfs'

    def get(self, key, default=None):
        return getattr(self, key, default)

    def obj_clone(self):
        clone = _Volume(self.metadata)
        clone.host = self.host
        return clone

    def obj_reset_changes(self, fields):
        pass


class _SourceHost(object):
    """Cinder's volume RPC API as the source volume service answers."""

    def __init__(self, driver, reachable=True):
        self.driver = driver
        self.reachable = reachable

    def initialize_connection(self, context, volume, properties):
        return self.driver.conn

    def terminate_connection(self, context, volume, properties,
                             force=False):
        if not self.reachable:
            raise RuntimeError('source host down')
        self.driver.detached.append(volume.host)


class _Connector(object):
    """os-brick's connector of the source's protocol."""

    def __init__(self, driver):
        self.driver = driver

    def connect_volume(self, data):
        return {'path': self.driver.device_path}

    def check_valid_device(self, path, run_as_root=True):
        return self.driver.device_readable

    def disconnect_volume(self, data, device, force=False):
        self.driver.disconnected.append(device['path'])


class _Driver(object):
    """The target host as ExportedSource sees it; records detaches."""

    def __init__(self, state_dir, conn, device_path=None):
        # a block of its own: test workers run side by side
        ports = process.free_port_range(8)
        self.configuration = mock.Mock(
            async_migration_state_dir=state_dir,
            use_multipath_for_image_xfer=False,
            enforce_multipath_for_image_xfer=False,
            num_volume_device_scan_tries=3,
            async_migration_exporter_bind_address='127.0.0.1',
            async_migration_exporter_port_min=ports[0],
            async_migration_exporter_port_max=ports[1],
            async_migration_exporter_cert_file=None,
            async_migration_exporter_key_file=None,
            async_migration_exporter_max_bytes_per_sec=0,
            async_migration_exporter_max_connections=4,
            async_migration_exporter_timeout=5,
            async_migration_exporter_transport='auto',
            async_migration_exporter_nbd_tls_dir=None,
            async_migration_exporter_nbd_client_identities=[])
        self.engine = mock.Mock(features=features.CephFeatures(release=16))
        self.conn = conn
        self.device_path = device_path
        self.device_readable = True
        self.detached = []
        self.disconnected = []


class ExportedSourceTest(testtools.TestCase):

    def setUp(self):
        super(ExportedSourceTest, self).setUp()
        self.state_dir = self.useFixture(fixtures.TempDir()).path
        self.volume = _Volume()
        self.useFixture(fixtures.MockPatch(
            'cinder.volume.volume_utils.brick_get_connector_properties',
            return_value={'host': 'target', 'initiator': 'iqn.x'}))
        self.connector_of = self.useFixture(fixtures.MockPatch(
            'cinder.volume.volume_utils.brick_get_connector')).mock
        self.source_host = self.useFixture(fixtures.MockPatch(
            'cinder.volume.rpcapi.VolumeAPI')).mock

    def host_of(self, driver, reachable=True):
        self.source_host.return_value = _SourceHost(driver, reachable)
        self.connector_of.return_value = _Connector(driver)

    def files(self):
        return sorted(os.listdir(self.state_dir))

    def serve_nfs_volume(self):
        """An NFS volume (a file here) attached and exported."""
        lun = os.path.join(self.state_dir, 'lun')
        with open(lun, 'wb') as f:
            f.truncate(units.Mi)
        driver = _Driver(self.state_dir,
                         {'driver_volume_type': 'nfs', 'data': {}},
                         device_path=lun)
        self.host_of(driver)
        source = exported.ExportedSource(driver.configuration,
                                         self.volume.id)
        served = source.start(mock.Mock(), self.volume,
                              {'host': 'src@nfs#nfs'})
        self.addCleanup(exporter.Exporter.forget, self.state_dir,
                        self.volume.id)
        return lun, driver, source, served

    def test_rbd_source_conf_names_keyring_never_the_key(self):
        driver = _Driver(self.state_dir, {
            'driver_volume_type': 'rbd', 'data': {
                'name': 'xpool/volume-1', 'cluster_name': 'xcluster',
                'auth_username': 'cinder', 'hosts': ['127.0.0.1'],
                'ports': ['6790']}})
        source = exported.ExportedSource(driver.configuration,
                                         self.volume.id)
        conf, rbd = source._rbd_lun(driver.conn['data'])
        self.assertEqual({'pool': 'xpool', 'image': 'volume-1',
                          'user': 'cinder', 'cluster': 'xcluster'}, rbd)
        with open(conf) as f:
            text = f.read()
        self.assertIn('mon_host = 127.0.0.1:6790', text)
        self.assertIn('keyring = /etc/ceph/xcluster.client.cinder.keyring',
                      text)
        self.assertEqual(0o600, stat.S_IMODE(os.stat(conf).st_mode))

    def test_key_in_connection_info_goes_to_a_private_file(self):
        key = '[client.cinder]\n\tkey = AQBsecretsecretsecret==\n'
        driver = _Driver(self.state_dir, None)
        source = exported.ExportedSource(driver.configuration,
                                         self.volume.id)
        conf, _rbd = source._rbd_lun({
            'name': 'p/i', 'auth_username': 'cinder', 'hosts': ['h'],
            'ports': ['1'], 'keyring': key})
        with open(conf) as f:
            self.assertNotIn('AQB', f.read())
        keyring = os.path.join(self.state_dir,
                               'exporter.%s.keyring' % self.volume.id)
        self.assertEqual(0o600, stat.S_IMODE(os.stat(keyring).st_mode))

    def test_incomplete_rbd_info_refused(self):
        source = exported.ExportedSource(
            _Driver(self.state_dir, None).configuration, self.volume.id)
        self.assertRaises(exception.MigrationSourceRefused,
                          source._rbd_lun, {'name': 'no-slash'})

    def test_failed_start_detaches_everywhere_and_leaves_no_file(self):
        # os-brick gives a handle, not a path: refused, and undone
        driver = _Driver(self.state_dir,
                         {'driver_volume_type': 'fake', 'data': {}},
                         device_path=object())
        self.host_of(driver)
        source = exported.ExportedSource(driver.configuration,
                                         self.volume.id)
        self.assertRaises(exception.MigrationSourceRefused, source.start,
                          mock.Mock(), self.volume,
                          {'host': 'src@nfs#nfs'})
        self.assertEqual([driver.device_path], driver.disconnected)
        self.assertEqual(['src@nfs#nfs'], driver.detached)
        self.assertEqual([], self.files())

    def test_unreadable_device_detached_everywhere(self):
        driver = _Driver(self.state_dir,
                         {'driver_volume_type': 'iscsi', 'data': {}},
                         device_path='/dev/sdz')
        driver.device_readable = False
        self.host_of(driver)
        source = exported.ExportedSource(driver.configuration,
                                         self.volume.id)
        exc = self.assertRaises(exception.MigrationSourceRefused,
                                source.start, mock.Mock(), self.volume,
                                {'host': 'src@iscsi#iscsi'})
        self.assertIn('/dev/sdz cannot be read', str(exc))
        self.assertEqual(['/dev/sdz'], driver.disconnected)
        self.assertEqual(['src@iscsi#iscsi'], driver.detached)
        self.assertEqual([], self.files())

    def test_served_then_stopped_without_leftovers(self):
        lun, driver, source, served = self.serve_nfs_volume()
        self.assertTrue(served.running())
        # the exporter dies: it is served again, at the same URL
        url = served.url
        os.kill(served.pid, signal.SIGKILL)
        served._process.wait()
        served = source.ensure_served()
        self.assertEqual(url, served.url)
        source.stop(mock.Mock(), self.volume)
        self.assertFalse(served.running())
        self.assertEqual(['lun'], self.files())
        self.assertEqual([lun], driver.disconnected)
        self.assertEqual(['src@nfs#nfs'], driver.detached)

    def test_exporter_kind_serves_and_stops_what_this_host_holds(self):
        lun, driver, _source, served = self.serve_nfs_volume()
        kind = exported.ExporterKind(driver)
        self.assertTrue(kind.holds_local_state(self.volume))
        os.kill(served.pid, signal.SIGKILL)
        served._process.wait()
        kind.ensure_served(self.volume)
        again = exporter.Exporter.adopt(self.state_dir, self.volume.id)
        self.assertTrue(again.running())
        self.assertEqual(served.url, again.url)
        kind.stop(mock.Mock(), self.volume)
        self.assertFalse(again.running())
        self.assertFalse(kind.holds_local_state(self.volume))
        self.assertEqual(['lun'], self.files())
        # stopping again finds nothing to do
        kind.stop(mock.Mock(), self.volume)
        self.assertEqual([lun], driver.disconnected)
        self.assertEqual(['src@nfs#nfs'], driver.detached)

    def test_source_host_down_does_not_hold_the_stop_up(self):
        lun, driver, source, served = self.serve_nfs_volume()
        self.host_of(driver, reachable=False)
        source.stop(mock.Mock(), self.volume)
        self.assertFalse(served.running())
        self.assertEqual([lun], driver.disconnected)
        self.assertEqual([], driver.detached)
        self.assertEqual(['lun'], self.files())

    def test_nothing_recorded_cannot_be_served_again(self):
        source = exported.ExportedSource(
            _Driver(self.state_dir, None).configuration, self.volume.id)
        self.assertRaises(exception.MigrationLost, source.ensure_served)


class TransportTest(testtools.TestCase):
    """Which transport the exporter of a source gets."""

    def transport(self, wanted, tls_dir, nbd_stream, rbd_lun=None):
        configuration = mock.Mock(
            async_migration_state_dir='/nonexistent',
            async_migration_exporter_transport=wanted,
            async_migration_exporter_nbd_tls_dir=tls_dir)
        source = exported.ExportedSource(configuration, 'vol-1',
                                         nbd_stream=nbd_stream)
        return source._transport(rbd_lun)

    def test_auto_takes_nbd_where_it_can(self):
        self.assertEqual(exporter.NBD, self.transport('auto', '/tls', True))
        self.assertEqual(exporter.HTTP, self.transport('auto', None, True))
        self.assertEqual(exporter.HTTP, self.transport('auto', '/tls', False))
        self.assertEqual(exporter.HTTP, self.transport(
            'auto', '/tls', True, rbd_lun={'pool': 'p'}))
        self.assertEqual(exporter.HTTP, self.transport('http', '/tls', True))

    def test_nbd_asked_for_where_it_cannot_be_refused(self):
        self.assertRaisesRegex(exception.MigrationSourceRefused,
                               'no NBD stream', self.transport, 'nbd',
                               '/tls', False)
        self.assertRaisesRegex(exception.MigrationSourceRefused,
                               'nbd_tls_dir is not set', self.transport,
                               'nbd', None, True)
