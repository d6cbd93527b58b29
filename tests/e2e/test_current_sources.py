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

"""Sources only current librbd reads: rbd-native and the NBD exporter.

On librbd 20.2, the sandbox's target takes ``rbd-xcluster`` volumes over
as ``rbd-native``: librbd reads the second cluster through
``/etc/ceph/xcluster.conf`` of the sandbox's hosts, with no exporter. And
its exporter serves a LUN with qemu-nbd, TLS and client certificates
(``/etc/pki/libnbd`` of the hosts). The hypervisor of these tests runs as
on a host of the sandbox, with those files, as a compute host would need
them: it reads and writes the destination while the copy runs.
"""

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

from oslo_utils import units
import psutil
import rbd
import testtools
from testtools import content

from cinder_asyncmig import children
from cinder_asyncmig.engine import features
from cinder_asyncmig.engine import worker
from cinder_asyncmig.sandbox import cinderconf
from cinder_asyncmig.sandbox import cloud
from cinder_asyncmig.sandbox import process
from cinder_asyncmig import settings
from cinder_asyncmig.sources import exporter
from cinder_asyncmig.sources import kinds
from cinder_asyncmig.sources import native
from cinder_asyncmig.volume import throttle
from tests.e2e import test_async_migration as base_e2e
from tests.e2e import test_other_sources
from tests.functional import base as ceph_base

SIZE = units.Gi
WORKER_MODULE = 'cinder_asyncmig.engine.worker'

# a librbd client on a host of the sandbox: applies the writes read as
# JSON [[offset, hex], ...] from stdin, then prints the image's sha256
_HYPERVISOR = '''
import hashlib, json, sys
import rados, rbd
conf, user, pool, name = sys.argv[1:]
cluster = rados.Rados(conffile=conf, rados_id=user)
cluster.connect(timeout=30)
ioctx = cluster.open_ioctx(pool)
with rbd.Image(ioctx, name) as image:
    for at, payload in json.load(sys.stdin):
        image.write(bytes.fromhex(payload), at)
    image.flush()
    digest, size, at = hashlib.sha256(), image.size(), 0
    while at < size:
        digest.update(image.read(at, min(4 << 20, size - at)))
        at += 4 << 20
print(digest.hexdigest())
ioctx.close()
cluster.shutdown()
'''


class CurrentSourcesTest(testtools.TestCase):

    @classmethod
    def setUpClass(cls):
        super(CurrentSourcesTest, cls).setUpClass()
        if not features.CephFeatures.detect(rbd).native_cross_cluster:
            raise cls.skipException(
                'librbd of %s has no native cross-cluster import' %
                ceph_base.release_label())
        # the second cluster on a host of its own, if root may make one
        cls.sandbox = cloud.Sandbox.up(
            tempfile.mkdtemp(prefix='sandbox-', dir=base_e2e._test_dir()),
            network=os.geteuid() == 0)
        if not cls.sandbox.deployment.privileged:
            cls.sandbox.down()
            raise cls.skipException(
                'the hosts\' /etc/ceph needs root (mount namespaces)')
        cls.env = cls.sandbox.env()
        cls.dst_pool = cls.env['ASYNCMIG_TARGET_POOL']
        cls.rados = cls.sandbox.ceph.connect()
        cls.dst_ioctx = cls.rados.open_ioctx(cls.dst_pool)
        cls.xrados = cls.sandbox.xcluster.connect()
        cls.x_ioctx = cls.xrados.open_ioctx(cls.env['ASYNCMIG_XCLUSTER_POOL'])
        cls.state_dir = cinderconf.path(cls.sandbox.deployment, 'state',
                                        'asyncmig-%s' % settings.TARGET.name)
        cls.address = cinderconf.host_address(cls.sandbox.deployment)

    @classmethod
    def tearDownClass(cls):
        cls.x_ioctx.close()
        cls.xrados.shutdown()
        cls.dst_ioctx.close()
        cls.rados.shutdown()
        cls.sandbox.down()
        super(CurrentSourcesTest, cls).tearDownClass()

    def setUp(self):
        super(CurrentSourcesTest, self).setUp()
        base_e2e.describe_clusters_on_failure(self, self.sandbox)
        self.rng = random.Random(self.id())
        for name in (cloud.VOLUME_TARGET, cloud.VOLUME_XCLUSTER,
                     cloud.VOLUME_FILE):
            if not self.sandbox.service(name).running():
                self.sandbox.service(name).start()
                self.sandbox.wait_service_up(name, timeout=90)

    api = base_e2e.AsyncMigrationTest.api
    volume = base_e2e.AsyncMigrationTest.volume
    wait = base_e2e.AsyncMigrationTest.wait
    migrate = base_e2e.AsyncMigrationTest.migrate
    migrate_until_attachable = (
        base_e2e.AsyncMigrationTest.migrate_until_attachable)
    attach = base_e2e.AsyncMigrationTest.attach
    delete_quietly = base_e2e.AsyncMigrationTest.delete_quietly
    follow = base_e2e.AsyncMigrationTest.follow
    create = test_other_sources.OtherSourcesTest.create
    file_path = test_other_sources.OtherSourcesTest.file_path
    dst_sha256 = test_other_sources.OtherSourcesTest.dst_sha256
    assert_migrated = test_other_sources.OtherSourcesTest.assert_migrated
    assert_nothing_left = (
        test_other_sources.OtherSourcesTest.assert_nothing_left)
    target_processes = test_other_sources.OtherSourcesTest.target_processes
    hypervisor_reading = base_e2e.AsyncMigrationTest.hypervisor_reading
    partition_mid_copy = base_e2e.AsyncMigrationTest.partition_mid_copy
    partition_source_cluster_mid_copy = (
        test_other_sources.OtherSourcesTest.partition_source_cluster_mid_copy)
    capped_copy_under_way = (
        test_other_sources.OtherSourcesTest.capped_copy_under_way)
    exporter_handle = test_other_sources.OtherSourcesTest.exporter_handle
    reset_and_force_delete = base_e2e.AsyncMigrationTest.reset_and_force_delete
    reset_and_force_delete_mid_copy = (
        test_other_sources.OtherSourcesTest.reset_and_force_delete_mid_copy)

    # -- helpers ---------------------------------------------------------

    def hypervisor(self, volume_id, model, writes=0, attach=True):
        """Write and read the destination through librbd, as a hypervisor.

        The writes are applied to ``model``: compare after the call.

        :param attach: attach through the API first (and detach after);
                       without, the image is opened by name, as a
                       hypervisor that attached earlier keeps it open.
        :returns: the sha256 of the destination as the hypervisor reads it.
        """
        name = '%s/volume-%s' % (self.dst_pool, volume_id)
        attachment = self.attach(volume_id) if attach else None
        if attachment:
            data = attachment['connection_info']
            self.assertEqual(name, data.get('data', data)['name'])
        ops = []
        for _ in range(writes):
            at = self.rng.randrange(0, SIZE - units.Mi)
            payload = self.rng.randbytes(256 * units.Ki)
            ops.append([at, payload.hex()])
            model.apply(at, payload)
        ceph = self.sandbox.ceph
        try:
            return self.on_a_host(
                sys.executable, '-c', _HYPERVISOR, ceph.conf_path,
                ceph.client, *name.split('/'), stdin=json.dumps(ops)).strip()
        finally:
            if attachment:
                self.api('DELETE', '/attachments/%s' % attachment['id'])

    def on_a_host(self, *argv, stdin=''):
        """Run a program as on a host of the sandbox's cloud.

        librbd opens the second cluster (and an NBD export) with what a
        host keeps in /etc whenever it opens a destination whose copy is
        not done.
        """
        result = subprocess.run(
            cinderconf.on_a_host(self.sandbox.deployment, argv),
            input=stdin, capture_output=True, text=True, timeout=300)
        self.assertEqual(0, result.returncode, result.stderr)
        return result.stdout

    def rbd_state(self, volume_id):
        ceph = self.sandbox.ceph
        status = json.loads(self.on_a_host(
            'rbd', '--conf', ceph.conf_path, '--id', ceph.client, 'status',
            '--format', 'json', '%s/volume-%s' % (self.dst_pool, volume_id)))
        return status.get('migration', {}).get('state')

    def target_listeners(self):
        """Sockets the target's processes listen on, copy worker included."""
        found = []
        for pid in self.sandbox.service(cloud.VOLUME_TARGET).processes():
            try:
                found += [c.laddr for c in psutil.Process(pid).net_connections(
                    kind='inet') if c.status == psutil.CONN_LISTEN]
            except psutil.NoSuchProcess:
                pass
        return found

    def served(self, volume_id):
        return exporter.Exporter.adopt(self.state_dir, volume_id)

    def nbd_file_volume(self):
        """A file volume only the exporter takes: not declared shared."""
        section = settings.TARGET.name
        key = 'async_migration_shared_file_backends'
        declared = test_other_sources.target_config(self.sandbox).get(
            section, key)
        self.addCleanup(test_other_sources.set_target_options, self.sandbox,
                        section, {key: declared})
        test_other_sources.set_target_options(self.sandbox, section,
                                              {key: ''})
        return self.create('file', metadata={
            throttle.RATE_KEY: str(test_other_sources.CAP)}, density=0.9)

    def assert_nbd_end(self, volume_id, model, seen, port):
        self.assertEqual('success', seen['volume']['migration_status'], seen)
        self.assertEqual(model.sha256(), self.dst_sha256(volume_id))
        self.assertFalse(os.path.exists(self.file_path(volume_id)))
        self.assertEqual([], self.target_listeners())
        self.assertFalse(process.port_open(port, self.address))
        self.assertEqual([], [n for n in os.listdir(self.state_dir)
                              if n.startswith('exporter.%s' % volume_id)])
        self.assertEqual([], [p for p in self.sandbox.service(
            cloud.VOLUME_TARGET).processes() if 'qemu-nbd' in
            children.cmdline(p)])

    def source_snapshots(self, volume_id):
        with rbd.Image(self.x_ioctx, 'volume-%s' % volume_id,
                       read_only=True) as image:
            return [(s['name'], image.is_protected_snap(s['name']))
                    for s in image.list_snaps()]

    def assert_clean_end(self, volume_id, model, seen):
        self.assert_migrated(volume_id, model, seen, kinds.RBD_NATIVE)
        with rbd.Image(self.dst_ioctx, 'volume-%s' % volume_id,
                       read_only=True) as image:
            self.assertEqual([], list(image.list_snaps()))
        self.assertEqual([], self.target_listeners())
        self.assertEqual([], [p for p in self.sandbox.service(
            cloud.VOLUME_TARGET).processes() if WORKER_MODULE in
            children.cmdline(p)])

    # -- tests -----------------------------------------------------------

    def test_usable_at_once_copied_with_writes_and_source_removed(self):
        volume_id, model = self.create('xcluster')
        self.migrate_until_attachable(volume_id)
        # frozen with a protected snapshot, nothing listening for it
        self.assertEqual([(native.SNAPSHOT, True)],
                         self.source_snapshots(volume_id))
        self.assertEqual([], self.target_listeners())
        self.assertEqual(model.sha256(), self.hypervisor(volume_id, model))
        read = self.hypervisor(volume_id, model, writes=4)
        self.assertEqual(model.sha256(), read)
        seen = self.follow(volume_id)
        self.assert_clean_end(volume_id, model, seen)
        # the record of the source in the log names no key
        with open(self.sandbox.xcluster.client_keyring()) as f:
            key = [line.split('=', 1)[1].strip() for line in f
                   if line.strip().startswith('key')][0]
        with open(self.sandbox.service(cloud.VOLUME_TARGET).log) as f:
            self.assertNotIn(key, f.read())

    def test_target_killed_mid_copy_resumes(self):
        volume_id, model = self.create('xcluster', density=0.9)
        self.migrate_until_attachable(volume_id)
        target = self.sandbox.service(cloud.VOLUME_TARGET)
        status_path = os.path.join(
            cinderconf.path(self.sandbox.deployment, 'state',
                            'asyncmig-%s' % settings.TARGET.name),
            '%s.volume-%s.json' % (self.dst_pool, volume_id))
        # once librbd has begun to copy (it opens the source first),
        # freeze the source cluster so that the copy stops where it is
        process.wait_for('copy under way',
                         lambda: worker.read_status(status_path).get('addr'),
                         60, interval=0.005)
        process.wait_for('migration executing',
                         lambda: self.rbd_state(volume_id) == 'executing',
                         60, interval=0.05)
        frozen = self.sandbox.xcluster.daemon_pids()
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(1)
            self.assertEqual(worker.RUNNING,
                             worker.read_status(status_path)['phase'])
            target.kill()
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        self.assertEqual('executing', self.rbd_state(volume_id))
        # a hypervisor keeps writing while cinder-volume is down
        read = self.hypervisor(volume_id, model, writes=4, attach=False)
        self.assertEqual(model.sha256(), read)
        target.start()
        self.assert_clean_end(volume_id, model, self.follow(volume_id))

    def test_source_cluster_cut_off_mid_copy(self):
        facts = self.partition_source_cluster_mid_copy(kinds.RBD_NATIVE)
        self.addDetail('facts', content.json_content(facts))
        # the hypervisor's librbd reads what is not copied yet from the
        # source's cluster itself, which it still reaches: its reads went
        # on throughout
        self.assertNotIn(0, facts['during'])

    def test_reset_and_force_deleted_mid_copy_leaves_nothing(self):
        volume_id, _model = self.capped_copy_under_way('xcluster')
        # the source, frozen with a protected snapshot, goes too
        self.assertEqual([(native.SNAPSHOT, True)],
                         self.source_snapshots(volume_id))
        self.reset_and_force_delete_mid_copy(kinds.RBD_NATIVE, volume_id)

    def test_source_open_by_a_client_is_refused_and_left_as_it_was(self):
        volume_id, model = self.create('xcluster', density=0.05)
        with rbd.Image(self.x_ioctx, 'volume-%s' % volume_id):
            self.migrate(volume_id)
            volume = self.wait(volume_id, 'refused', lambda v: v[
                'migration_status'] not in ('starting', 'migrating'))
        self.assertEqual('error', volume['migration_status'])
        told = self.sandbox.api('GET', '/messages?resource_uuid=%s' %
                                volume_id)['messages']
        self.assertEqual(1, len(told), told)
        self.assertIn('open by another client', told[0]['user_message'])
        self.assertEqual(self.env['ASYNCMIG_XCLUSTER_HOST'],
                         volume['os-vol-host-attr:host'])
        self.assertEqual([], self.source_snapshots(volume_id))
        self.assertNotIn('volume-%s' % volume_id,
                         rbd.RBD().list(self.dst_ioctx))
        self.assertEqual(model.sha256(), ceph_base.image_sha256(
            self.x_ioctx, 'volume-%s' % volume_id))

    # -- the NBD exporter ------------------------------------------------

    def test_nbd_export_needs_a_client_certificate_and_goes_away(self):
        volume_id, model = self.nbd_file_volume()
        self.migrate_until_attachable(volume_id)
        served = self.served(volume_id)
        self.assertEqual(exporter.NBD, served.transport)
        self.assertEqual('nbds://%s:%d/%s' % (self.address, served.port,
                                              volume_id), served.url)
        # qemu-nbd alone listens, on the configured address only
        self.assertEqual([(self.address, served.port)],
                         [tuple(a) for a in self.target_listeners()])
        # a client without TLS, or with TLS but no certificate: refused
        anonymous = ['--object', 'tls-creds-x509,id=t0,endpoint=client,'
                     'dir=%s' % self.anonymous_tls_dir()]
        for tls in ([], anonymous):
            result = subprocess.run(
                ['qemu-img', 'info'] + tls + [
                    '--image-opts', 'driver=nbd,server.type=inet,'
                    'server.host=%s,server.port=%d,export=%s%s' % (
                        self.address, served.port, volume_id,
                        ',tls-creds=t0' if tls else '')],
                capture_output=True, text=True, timeout=60)
            self.assertNotEqual(0, result.returncode, result.stdout)
        # a host with the deployment's certificate reads and writes
        read = self.hypervisor(volume_id, model, writes=4)
        self.assertEqual(model.sha256(), read)
        seen = self.follow(volume_id)
        self.assert_nbd_end(volume_id, model, seen, served.port)
        with open(self.sandbox.service(cloud.VOLUME_TARGET).log) as f:
            self.assertRegex(f.read(), r'Volume %s \(\d+ bytes, %s source\) '
                             r'taken over' % (volume_id, kinds.EXPORTER))

    def anonymous_tls_dir(self):
        """A client TLS directory with the CA and no certificate."""
        directory = tempfile.mkdtemp(dir=self.sandbox.directory)
        with open(os.path.join(cinderconf.libnbd_dir(
                self.sandbox.deployment), 'ca-cert.pem'), 'rb') as f:
            ca = f.read()
        with open(os.path.join(directory, 'ca-cert.pem'), 'wb') as f:
            f.write(ca)
        return directory

    def test_nbd_export_served_again_at_the_same_uri_after_a_restart(self):
        volume_id, model = self.nbd_file_volume()
        self.migrate_until_attachable(volume_id)
        url = self.served(volume_id).url
        target = self.sandbox.service(cloud.VOLUME_TARGET)
        target.kill()
        self.assertIsNone(self.served(volume_id))
        target.start()
        process.wait_for('source served again',
                         lambda: self.served(volume_id), 90)
        self.assertEqual(url, self.served(volume_id).url)
        read = self.hypervisor(volume_id, model, writes=4)
        self.assertEqual(model.sha256(), read)
        seen = self.follow(volume_id)
        self.assert_nbd_end(volume_id, model, seen,
                            int(url.rsplit(':', 1)[1].split('/')[0]))
