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

"""Migrations from other backends through the real Cinder API.

The sandbox's ``nfs-src`` backend (Cinder's NFS driver) is declared
shared with the target, so its volumes are read by librbd from their
files (``shared-file``); ``rbd-xcluster`` (Cinder's RBD driver on a
second Ceph cluster) is served to librbd by the HTTP exporter on the
target's host (``exporter``), as any backend os-brick attaches is. Every
test checks what a user would: states, the volume's bytes at the target
(sha256, read as a hypervisor does), the source removed, and nothing
left behind: no exporter process, listener, file or attachment.
"""

import configparser
import contextlib
import glob
import http.client
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import tempfile

from oslo_utils import units
import rados
import rbd
import testtools
from testtools import content

from cinder_asyncmig import children
from cinder_asyncmig.engine import features
from cinder_asyncmig.sandbox import cinderconf
from cinder_asyncmig.sandbox import cloud
from cinder_asyncmig.sandbox import process
from cinder_asyncmig import settings
from cinder_asyncmig.sources import exporter
from cinder_asyncmig.sources import kinds
from cinder_asyncmig.volume import constants
from cinder_asyncmig.volume import throttle
from tests.e2e import test_async_migration as base_e2e
from tests.functional import base as ceph_base

SIZE = units.Gi
EXPORTER_MODULE = 'cinder_asyncmig.sources.exporter'
WORKER_MODULE = 'cinder_asyncmig.engine.worker'
# slow enough to act mid-copy, fast enough for a short test
CAP = 96 * units.Mi


def target_config(sandbox):
    config = configparser.ConfigParser(interpolation=None)
    config.read(sandbox.service(cloud.VOLUME_TARGET).config)
    return config


def set_target_options(sandbox, section, values):
    """Change options of the target's configuration and restart it."""
    target = sandbox.service(cloud.VOLUME_TARGET)
    config = target_config(sandbox)
    for key, value in values.items():
        config.set(section, key, value)
    with open(target.config, 'w') as f:
        config.write(f)
    target.kill()
    target.start()
    sandbox.wait_service_up(cloud.VOLUME_TARGET, timeout=90)


def _fill(model, write, rng, density=0.5):
    for at in range(0, SIZE, 4 * units.Mi):
        if rng.random() < density:
            payload = rng.randbytes(units.Mi)
            write(at, payload)
            model.apply(at, payload)


class OtherSourcesTest(testtools.TestCase):

    @classmethod
    def setUpClass(cls):
        super(OtherSourcesTest, cls).setUpClass()
        # the second cluster on a host of its own, if root may make one
        cls.sandbox = cloud.Sandbox.up(
            tempfile.mkdtemp(prefix='sandbox-', dir=base_e2e._test_dir()),
            network=os.geteuid() == 0)
        if not cls.sandbox.deployment.privileged:
            cls.sandbox.down()
            raise cls.skipException(
                'the NFS backend needs root (mounts in place)')
        cls.env = cls.sandbox.env()
        cls.dst_pool = cls.env['ASYNCMIG_TARGET_POOL']
        cls.rados = cls.sandbox.ceph.connect()
        cls.dst_ioctx = cls.rados.open_ioctx(cls.dst_pool)
        args = shlex.split(cls.env['ASYNCMIG_XCLUSTER_CEPH_ARGS'])
        cls.xrados = rados.Rados(
            conffile=cls.env['ASYNCMIG_XCLUSTER_CEPH_CONF'],
            rados_id=args[args.index('--id') + 1],
            conf={'keyring': args[args.index('--keyring') + 1]})
        cls.xrados.connect(timeout=30)
        cls.x_ioctx = cls.xrados.open_ioctx(cls.env['ASYNCMIG_XCLUSTER_POOL'])
        cls.state_dir = cinderconf.path(cls.sandbox.deployment, 'state',
                                        'asyncmig-%s' % settings.TARGET.name)
        # where the target's exporter listens
        cls.address = cinderconf.host_address(cls.sandbox.deployment)
        # this process is the hypervisor: it mounts the NFS share where
        # the volume services do, so that librbd finds a shared-file
        # source at its path
        subprocess.run(['mount', '--bind', cls.sandbox.file_dir,
                        cls.sandbox.file_mount_point], check=True)
        if features.CephFeatures.detect(rbd).native_cross_cluster:
            # the HTTP exporter serves the second cluster's volumes only
            # where librbd cannot import them: an operator's choice here
            # (test_current_sources covers rbd-native and NBD)
            set_target_options(cls.sandbox, settings.TARGET.name, {
                'async_migration_source_kinds': ','.join(
                    k for k in kinds.ALL if k != kinds.RBD_NATIVE),
                'async_migration_exporter_transport': exporter.HTTP})

    @classmethod
    def tearDownClass(cls):
        subprocess.run(['umount', cls.sandbox.file_mount_point], check=False)
        cls.x_ioctx.close()
        cls.xrados.shutdown()
        cls.dst_ioctx.close()
        cls.rados.shutdown()
        cls.sandbox.down()
        super(OtherSourcesTest, cls).tearDownClass()

    def setUp(self):
        super(OtherSourcesTest, self).setUp()
        base_e2e.describe_clusters_on_failure(self, self.sandbox)
        self.rng = random.Random(self.id())
        for name in (cloud.VOLUME_TARGET, cloud.VOLUME_XCLUSTER,
                     cloud.VOLUME_FILE):
            if not self.sandbox.service(name).running():
                self.sandbox.service(name).start()
                self.sandbox.wait_service_up(name, timeout=90)

    # -- helpers ---------------------------------------------------------

    api = base_e2e.AsyncMigrationTest.api
    volume = base_e2e.AsyncMigrationTest.volume
    wait = base_e2e.AsyncMigrationTest.wait
    migrate = base_e2e.AsyncMigrationTest.migrate
    migrate_until_attachable = (
        base_e2e.AsyncMigrationTest.migrate_until_attachable)
    attach = base_e2e.AsyncMigrationTest.attach
    delete_quietly = base_e2e.AsyncMigrationTest.delete_quietly
    follow = base_e2e.AsyncMigrationTest.follow
    reset_and_force_delete = base_e2e.AsyncMigrationTest.reset_and_force_delete
    hypervisor_reading = base_e2e.AsyncMigrationTest.hypervisor_reading
    partition_mid_copy = base_e2e.AsyncMigrationTest.partition_mid_copy
    migration = base_e2e.AsyncMigrationTest.migration
    assert_aborted = base_e2e.AsyncMigrationTest.assert_aborted
    _operators_api_on_the_host_release = (
        base_e2e.AsyncMigrationTest._operators_api_on_the_host_release)

    def create(self, kind, metadata=None, density=0.5):
        """A 1 GiB volume of ``kind`` ('file' or 'xcluster') with data."""
        volume_type = self.env['ASYNCMIG_%s_TYPE' % kind.upper()]
        body = {'volume': {'size': 1, 'name': self.id()[-40:],
                           'volume_type': volume_type,
                           'metadata': metadata or {}}}
        volume_id = self.api('POST', '/volumes', body)['volume']['id']
        self.addCleanup(self.delete_quietly, volume_id)
        volume = self.wait(volume_id, 'available',
                           lambda v: v['status'] in ('available', 'error'))
        self.assertEqual('available', volume['status'])
        self.assertEqual(self.env['ASYNCMIG_%s_HOST' % kind.upper()],
                         volume['os-vol-host-attr:host'])
        model = ceph_base.ImageModel(SIZE)
        if kind == 'file':
            with open(self.file_path(volume_id), 'r+b') as f:
                def write(at, payload):
                    f.seek(at)
                    f.write(payload)
                _fill(model, write, self.rng, density)
        else:
            with rbd.Image(self.x_ioctx, 'volume-%s' % volume_id) as image:
                _fill(model, lambda at, p: image.write(p, at), self.rng,
                      density)
                image.flush()
        return volume_id, model

    def capped_copy_under_way(self, kind):
        """A dense volume of ``kind`` whose copy, capped, has begun."""
        volume_id, model = self.create(
            kind, metadata={throttle.RATE_KEY: str(CAP)}, density=0.9)
        self.migrate_until_attachable(volume_id)
        self.wait(volume_id, 'copying', lambda v: not v['metadata'].get(
            constants.PROGRESS_KEY, '0.0%').startswith('0.0%'))
        return volume_id, model

    def file_path(self, volume_id):
        return os.path.join(self.env['ASYNCMIG_FILE_DIR'],
                            'volume-%s' % volume_id)

    def dst_sha256(self, volume_id):
        return ceph_base.image_sha256(self.dst_ioctx, 'volume-%s' % volume_id)

    def hypervisor_write(self, model, volume_id, count=4):
        """Attach at the target, write through librbd, detach."""
        attachment = self.attach(volume_id)
        data = attachment['connection_info']
        data = data.get('data', data)
        self.assertEqual('%s/volume-%s' % (self.dst_pool, volume_id),
                         data['name'])
        with rbd.Image(self.dst_ioctx, 'volume-%s' % volume_id) as image:
            for _ in range(count):
                at = self.rng.randrange(0, SIZE - units.Mi)
                payload = self.rng.randbytes(256 * units.Ki)
                image.write(payload, at)
                model.apply(at, payload)
            image.flush()
        self.api('DELETE', '/attachments/%s' % attachment['id'])

    def exporter_handle(self, volume_id):
        return exporter.Exporter.adopt(self.state_dir, volume_id)

    def exporter_config(self, volume_id):
        return exporter.read_private_json(
            os.path.join(self.state_dir, 'exporter.%s.conf' % volume_id))

    def target_processes(self, module):
        return [pid for pid in
                self.sandbox.service(cloud.VOLUME_TARGET).processes()
                if module in children.cmdline(pid)]

    def assert_nothing_left(self, volume_id, port=None):
        """No exporter, listener, record or attachment of the volume."""
        self.assertEqual([], glob.glob(os.path.join(
            self.state_dir, 'exporter.%s.*' % volume_id)))
        self.assertEqual([], self.target_processes(EXPORTER_MODULE))
        if port:
            with contextlib.closing(socket.socket()) as sock:
                self.assertNotEqual(0, sock.connect_ex((self.address, port)),
                                    'something still listens on %d' % port)

    def assert_migrated(self, volume_id, model, seen, kind):
        volume = seen['volume']
        self.assertEqual('success', volume['migration_status'], seen)
        self.assertEqual(self.sandbox.target_host,
                         volume['os-vol-host-attr:host'])
        self.assertEqual([], volume['attachments'])
        self.assertNotIn(constants.PROGRESS_KEY, volume['metadata'])
        # the kind is in the progress key (while it lasts; a copy that a
        # hypervisor's write took over says so after it) and in the log
        self.assertEqual([], [p for p in seen['progress']
                              if 'from %s source' % kind not in p and
                              'interrupted by' not in p])
        with open(self.sandbox.service(cloud.VOLUME_TARGET).log,
                  errors='replace') as f:
            self.assertRegex(f.read(), r'Volume %s \(\d+ bytes, %s source\) '
                             r'taken over' % (volume_id, kind))
        self.assertEqual(model.sha256(), self.dst_sha256(volume_id))
        # the source is removed through its own volume service
        if kind == kinds.SHARED_FILE:
            self.assertFalse(os.path.exists(self.file_path(volume_id)))
        else:
            self.assertNotIn('volume-%s' % volume_id,
                             rbd.RBD().list(self.x_ioctx))

    def reset_and_force_delete_mid_copy(self, kind, volume_id):
        """The admin's way out of a stuck migration leaves nothing."""
        served = self.exporter_handle(volume_id)
        self.reset_and_force_delete(volume_id)
        # its data nowhere: the destination discarded (import-only), the
        # source removed through its own volume service
        name = 'volume-%s' % volume_id
        self.assertNotIn(name, rbd.RBD().list(self.dst_ioctx))
        if kind == kinds.SHARED_FILE:
            self.assertFalse(os.path.exists(self.file_path(volume_id)))
        else:
            self.assertNotIn(name, rbd.RBD().list(self.x_ioctx))
        self.assert_nothing_left(volume_id, served and served.port)
        self.assertEqual([], self.target_processes(WORKER_MODULE))
        self.assertEqual([], [n for n in os.listdir(self.state_dir)
                              if volume_id in n])

    def partition_source_cluster_mid_copy(self, kind):
        """Cut the target's host off the source's cluster mid-copy.

        :meth:`partition_mid_copy` of a volume of the second cluster,
        whose host is not the target's; checks that the migration ended
        well and left nothing.

        :returns: the partition's facts.
        """
        volume_id, model = self.create(
            'xcluster', metadata={throttle.RATE_KEY: str(
                base_e2e.PARTITION_CAP)}, density=0.9)
        self.migrate_until_attachable(volume_id)
        self.wait(volume_id, 'copying', lambda v: not v['metadata'].get(
            constants.PROGRESS_KEY, '0.0%').startswith('0.0%'))
        seen, facts = self.partition_mid_copy(volume_id, model,
                                              cloud.XCLUSTER_HOST)
        self.assert_migrated(volume_id, model, seen, kind)
        self.assert_nothing_left(volume_id)
        self.assertEqual([], self.target_processes(WORKER_MODULE))
        self.assertEqual([], [n for n in os.listdir(self.state_dir)
                              if volume_id in n])
        return facts

    # -- shared-file ---------------------------------------------------------

    def test_file_source_usable_at_once_and_copied_with_writes(self):
        volume_id, model = self.create('file')
        self.migrate_until_attachable(volume_id)
        # every block still read from the file: the same bytes
        self.assertEqual(model.sha256(), self.dst_sha256(volume_id))
        self.hypervisor_write(model, volume_id)
        seen = self.follow(volume_id)
        self.assert_migrated(volume_id, model, seen, kinds.SHARED_FILE)
        self.assert_nothing_left(volume_id)

    def test_file_source_reset_and_force_deleted_mid_copy(self):
        volume_id, _model = self.capped_copy_under_way('file')
        self.reset_and_force_delete_mid_copy(kinds.SHARED_FILE, volume_id)

    def test_file_source_target_killed_mid_copy(self):
        volume_id, model = self.create('file', density=0.9)
        self.migrate_until_attachable(volume_id)
        self.hypervisor_write(model, volume_id)
        target = self.sandbox.service(cloud.VOLUME_TARGET)
        target.kill()
        target.start()
        self.assert_migrated(volume_id, model, self.follow(volume_id),
                             kinds.SHARED_FILE)

    # -- exporter (RBD in another cluster) -----------------------------------

    def test_exported_source_readable_at_once_and_locked_down(self):
        volume_id, model = self.create(
            'xcluster', metadata={throttle.RATE_KEY: str(CAP)})
        self.migrate_until_attachable(volume_id)
        # probe the exporter first: the copy's cap keeps it serving for at
        # least SIZE / CAP seconds
        served = self.exporter_handle(volume_id)
        self.assertIsNotNone(served)
        port, token = served.port, self.exporter_config(volume_id)['token']
        # the backend's read cap; the migration's holds the copy, and may
        # change while it runs
        self.assertEqual(0, self.exporter_config(
            volume_id)['max_bytes_per_sec'])
        self.assertEqual(self.address, served.address)

        def ask(method, path, headers=None):
            conn = http.client.HTTPConnection(self.address, port, timeout=10)
            try:
                conn.request(method, path, headers=headers or {})
                response = conn.getresponse()
                response.read()
                return response.status
            finally:
                conn.close()
        lun = '/lun/%s' % token
        self.assertEqual(200, ask('HEAD', lun))
        self.assertEqual(206, ask('GET', lun, {'Range': 'bytes=0-4095'}))
        self.assertEqual(403, ask('GET', '/lun/' + 'A' * len(token)))
        self.assertEqual(403, ask('GET', '/lun/'))
        self.assertEqual(404, ask('GET', '/'))
        self.assertEqual(404, ask('GET', '/etc/passwd'))
        for method in ('POST', 'PUT', 'DELETE', 'PATCH'):
            self.assertEqual(405, ask(method, lun), method)
        self.assertEqual(416, ask('GET', lun, {'Range': 'bytes=%d-' % SIZE}))
        self.assertEqual(416, ask('GET', lun, {'Range': 'bytes=0-1,5-9'}))
        # the same exporter answered every probe
        still = self.exporter_handle(volume_id)
        self.assertEqual(served.pid, still.pid if still else None)
        self.assertEqual(model.sha256(), self.dst_sha256(volume_id))

        self.hypervisor_write(model, volume_id)
        seen = self.follow(volume_id)
        self.assert_migrated(volume_id, model, seen, kinds.EXPORTER)
        self.assert_nothing_left(volume_id, port)
        # the token is nowhere a user or an operator reads
        volume = self.volume(volume_id)
        self.assertNotIn(token, json.dumps(volume))
        with open(self.sandbox.xcluster.client_keyring()) as f:
            key = [line.split('=', 1)[1].strip() for line in f
                   if line.strip().startswith('key')][0]
        logs = glob.glob(os.path.join(self.sandbox.directory, 'log', '*'))
        self.assertTrue(logs)
        for path in glob.glob(os.path.join(self.state_dir, '*')) + logs:
            with open(path, errors='replace') as f:
                text = f.read()
            self.assertNotIn(key, text, path)
            self.assertNotIn(token, text, path)

    def test_exported_source_aborted_with_force_leaves_nothing(self):
        self._operators_api_on_the_host_release()
        volume_id, model = self.capped_copy_under_way('xcluster')
        served = self.exporter_handle(volume_id)
        # lost by the abort: an import-only migration writes no source
        self.hypervisor_write(ceph_base.ImageModel(SIZE), volume_id)
        path = '/volumes/%s/action' % volume_id
        error = self.assertRaises(cloud.ApiError, self.api, 'POST', path,
                                  {'os-async-migration-abort': {}})
        self.assertEqual(409, error.status, error)
        self.assertIn('import-only migration', str(error))
        self.assertEqual(constants.ATTACHABLE,
                         self.volume(volume_id)['migration_status'])
        shown = json.loads(self.sandbox.openstack(
            'volume', 'migration', 'abort', volume_id, '--force', '--wait',
            '-f', 'json'))
        source_host = self.env['ASYNCMIG_XCLUSTER_HOST']
        self.assertEqual(('error', source_host),
                         (shown['migration_status'], shown['host']))
        self.assert_aborted(volume_id, source_host,
                            ('with force', 'discarded'))
        name = 'volume-%s' % volume_id
        self.assertEqual(model.sha256(),
                         ceph_base.image_sha256(self.x_ioctx, name))
        self.assertNotIn(name, rbd.RBD().list(self.dst_ioctx))
        self.assert_nothing_left(volume_id, served.port)
        self.assertEqual([], self.target_processes(WORKER_MODULE))
        self.assertEqual([], [n for n in os.listdir(self.state_dir)
                              if volume_id in n])
        # a volume like any other there: it migrates again, from its
        # source as it was
        self.api('DELETE', '/volumes/%s/metadata/%s' % (volume_id,
                                                        throttle.RATE_KEY))
        self.migrate(volume_id)
        self.assert_migrated(volume_id, model, self.follow(volume_id),
                             kinds.EXPORTER)
        self.assert_nothing_left(volume_id)

    def test_exporter_killed_mid_copy_is_served_again(self):
        volume_id, model = self.capped_copy_under_way('xcluster')
        served = self.exporter_handle(volume_id)
        os.kill(served.pid, signal.SIGKILL)
        seen = self.follow(volume_id)
        self.assert_migrated(volume_id, model, seen, kinds.EXPORTER)
        self.assert_nothing_left(volume_id, served.port)

    def test_target_killed_mid_copy_serves_the_source_again(self):
        volume_id, model = self.create(
            'xcluster', metadata={throttle.RATE_KEY: str(CAP)}, density=0.9)
        self.migrate_until_attachable(volume_id)
        url = self.exporter_handle(volume_id).url
        target = self.sandbox.service(cloud.VOLUME_TARGET)
        target.kill()
        self.assertIsNone(self.exporter_handle(volume_id))
        target.start()
        process.wait_for('source served again',
                         lambda: self.exporter_handle(volume_id), 90)
        self.assertEqual(url, self.exporter_handle(volume_id).url)
        self.hypervisor_write(model, volume_id)
        self.assert_migrated(volume_id, model, self.follow(volume_id),
                             kinds.EXPORTER)

    def test_exported_source_reset_and_force_deleted_mid_copy(self):
        volume_id, _model = self.capped_copy_under_way('xcluster')
        self.assertIsNotNone(self.exporter_handle(volume_id))
        self.reset_and_force_delete_mid_copy(kinds.EXPORTER, volume_id)

    def test_source_cluster_cut_off_mid_copy(self):
        # the hypervisor's reads of what is not copied yet go through the
        # exporter on the cut-off host: they wait for the heal
        facts = self.partition_source_cluster_mid_copy(kinds.EXPORTER)
        self.addDetail('facts', content.json_content(facts))

    def test_failed_take_over_leaves_nothing(self):
        # every port of the exporter's range is taken: it cannot start
        config = target_config(self.sandbox)
        low = config.get(settings.TARGET.name,
                         'async_migration_exporter_port_min', fallback=10800)
        high = config.get(settings.TARGET.name,
                          'async_migration_exporter_port_max', fallback=10899)
        squatters = []
        for port in range(int(low), int(high) + 1):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.address, port))
                sock.listen(1)
                squatters.append(sock)
            except OSError:
                sock.close()
        self.addCleanup(lambda: [s.close() for s in squatters])
        volume_id, model = self.create('xcluster', density=0.05)
        self.migrate(volume_id)
        volume = self.wait(volume_id, 'failed', lambda v: v[
            'migration_status'] not in ('starting', 'migrating'))
        self.assertEqual('error', volume['migration_status'])
        self.assertEqual(self.env['ASYNCMIG_XCLUSTER_HOST'],
                         volume['os-vol-host-attr:host'])
        self.assertEqual('available', volume['status'])
        told = self.sandbox.api('GET', '/messages?resource_uuid=%s' %
                                volume_id)['messages']
        self.assertEqual(1, len(told), told)
        self.assertIn('could not take the volume over',
                      told[0]['user_message'])
        self.assertNotIn('volume-%s' % volume_id,
                         rbd.RBD().list(self.dst_ioctx))
        self.assert_nothing_left(volume_id)
        # detached at its host too: nothing holds the source image open
        with rbd.Image(self.x_ioctx, 'volume-%s' % volume_id,
                       read_only=True) as image:
            self.assertEqual([], list(image.watchers_list()))

    def test_source_host_down_at_the_end_leaves_deleting_then_retried(self):
        volume_id, model = self.create('xcluster', density=0.2)
        self.migrate_until_attachable(volume_id)
        source = self.sandbox.service(cloud.VOLUME_XCLUSTER)
        source.kill()
        seen = self.follow(volume_id)
        volume = seen['volume']
        # migrated and usable; only the source's removal is pending
        self.assertEqual(constants.SOURCE_LEFT, volume['migration_status'])
        self.assertEqual('available', volume['status'])
        self.assertEqual(self.sandbox.target_host,
                         volume['os-vol-host-attr:host'])
        self.assertEqual(model.sha256(), self.dst_sha256(volume_id))
        self.assertIn('volume-%s' % volume_id, rbd.RBD().list(self.x_ioctx))
        self.assert_nothing_left(volume_id)
        self.hypervisor_write(model, volume_id)

        source.start()
        self.sandbox.wait_service_up(cloud.VOLUME_XCLUSTER, timeout=90)
        target = self.sandbox.service(cloud.VOLUME_TARGET)
        target.kill()
        target.start()
        volume = self.wait(volume_id, 'source removed',
                           lambda v: v['migration_status'] == 'success')
        self.assertNotIn('volume-%s' % volume_id,
                         rbd.RBD().list(self.x_ioctx))
        self.assertEqual(model.sha256(), self.dst_sha256(volume_id))

    # -- exporter (any attachable LUN: the NFS volume through os-brick) ------

    def test_file_source_not_declared_shared_goes_through_the_exporter(self):
        section = settings.TARGET.name
        declared = target_config(self.sandbox).get(
            section, 'async_migration_shared_file_backends')
        key = 'async_migration_shared_file_backends'
        self.addCleanup(set_target_options, self.sandbox, section,
                        {key: declared})
        set_target_options(self.sandbox, section, {key: ''})
        volume_id, model = self.create('file')
        self.migrate_until_attachable(volume_id)
        self.assertEqual(model.sha256(), self.dst_sha256(volume_id))
        self.hypervisor_write(model, volume_id)
        seen = self.follow(volume_id)
        self.assert_migrated(volume_id, model, seen, kinds.EXPORTER)
        self.assert_nothing_left(volume_id)
