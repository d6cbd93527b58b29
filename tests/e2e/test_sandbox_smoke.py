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

"""The sandbox itself: up, used through the stock client, killed, down."""

import contextlib
import hashlib
import json
import os
import random
import re
import shlex
import subprocess
import tempfile
import urllib.error
import urllib.request

from oslo_utils import units
import rados
import rbd
import testtools

from cinder_asyncmig import children
from cinder_asyncmig.sandbox import cloud
from cinder_asyncmig.sandbox import process

MEMSTORE_BYTES = int(os.environ.get('ASYNCMIG_TEST_MEMSTORE_GIB',
                                    '4')) * units.Gi
#: a hypervisor attaching without a server (see the README)
CONNECTOR = {'initiator': 'iqn.2026-11.test:hv', 'ip': '127.0.0.1',
             'host': 'hypervisor', 'multipath': False,
             'platform': 'x86_64', 'os_type': 'linux'}
#: Reads a region of a volume the way a hypervisor attaches it: os-brick's
#: connector for the connection info's driver_volume_type. Run in a volume
#: service's mount namespace, it sees that host's /etc/ceph and mounts.
BRICK_READ = """
import hashlib, json, sys
from os_brick.initiator import connector
info = json.loads(sys.argv[1])
offset, length = int(sys.argv[2]), int(sys.argv[3])
brick = connector.InitiatorConnector.factory(info['driver_volume_type'],
                                             None, conn=info)
device = brick.connect_volume(info)
try:
    path = device['path']
    handle = open(path, 'rb') if isinstance(path, str) else path
    handle.seek(offset)
    print(hashlib.sha256(handle.read(length)).hexdigest())
finally:
    brick.disconnect_volume(info, device)
"""


def _test_dir():
    base = os.environ.get('ASYNCMIG_TEST_DIR') or tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    return base


def _status_without_token(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _table_value(output, field):
    """A field of the ``cinder show``/``create`` property table."""
    match = re.search(r'^\|\s*%s\s*\|\s*(.*?)\s*\|$' % re.escape(field),
                      output, re.MULTILINE)
    return match.group(1) if match else None


class SandboxSmokeTest(testtools.TestCase):

    def setUp(self):
        super(SandboxSmokeTest, self).setUp()
        directory = tempfile.mkdtemp(prefix='sandbox-', dir=_test_dir())
        self.sandbox = cloud.Sandbox.up(directory,
                                        memstore_bytes=MEMSTORE_BYTES)
        self.addCleanup(self._down_if_up)

    def _down_if_up(self):
        if os.path.isdir(self.sandbox.directory):
            self.sandbox.down()

    def _wait_status(self, volume_id, status, member=False):
        def reached():
            volume = self.sandbox.api('GET', '/volumes/%s' % volume_id,
                                      member=member)['volume']
            if volume['status'] == 'error':
                self.fail('volume %s went to error' % volume_id)
            return volume['status'] == status
        process.wait_for('volume %s %s' % (volume_id, status), reached, 60)

    def _create(self, volume_type, host):
        """Create a 1 GiB volume with the stock client; check its host."""
        out = self.sandbox.cinder('create', '--volume-type', volume_type,
                                  '--name', 'smoke-%s' % volume_type, '1')
        volume_id = _table_value(out, 'id')
        self._wait_status(volume_id, 'available')
        self.assertEqual(host, _table_value(
            self.sandbox.cinder('show', volume_id), 'os-vol-host-attr:host'))
        return volume_id

    def _connection_info(self, volume_id):
        """What the attachments API gives a hypervisor; detached again."""
        attachment = self.sandbox.api('POST', '/attachments', {
            'attachment': {'volume_uuid': volume_id, 'connector': CONNECTOR,
                           'mode': 'rw'}})['attachment']
        self.sandbox.api('DELETE', '/attachments/%s' % attachment['id'])
        self._wait_status(volume_id, 'available')
        return attachment['connection_info']

    def _read_on_host_of(self, service, info, offset, length):
        """sha256 of a region read by os-brick in a service's namespace."""
        pid = self.sandbox.service(service).pid
        python = os.path.join(self.sandbox.deployment.bin_dir, 'python')
        result = subprocess.run(
            # --root: the service's root, which is a release's when it
            # runs in one (entering a mount namespace resets it otherwise)
            ['nsenter', '--target', str(pid), '--mount', '--root', '--wd',
             '--', python, '-c',
             BRICK_READ, json.dumps(info), str(offset), str(length)],
            capture_output=True, text=True, timeout=120, check=False)
        self.assertEqual(0, result.returncode, result.stderr[-2000:])
        return result.stdout.strip().splitlines()[-1]

    @contextlib.contextmanager
    def _xcluster_pool(self):
        """The xcluster pool, with the client and key openrc exports."""
        env = self.sandbox.env()
        args = shlex.split(env['ASYNCMIG_XCLUSTER_CEPH_ARGS'])
        client = rados.Rados(
            conffile=env['ASYNCMIG_XCLUSTER_CEPH_CONF'],
            rados_id=args[args.index('--id') + 1],
            conf={'keyring': args[args.index('--keyring') + 1]})
        client.connect(timeout=30)
        try:
            with client.open_ioctx(env['ASYNCMIG_XCLUSTER_POOL']) as ioctx:
                yield ioctx
        finally:
            client.shutdown()

    def _xcluster_rbd(self, *args):
        """The rbd CLI on the second cluster, as openrc tells it."""
        env = self.sandbox.env()
        result = subprocess.run(
            ['rbd'] + list(args), capture_output=True, text=True,
            timeout=60, check=True,
            env=dict(os.environ, CEPH_CONF=env['ASYNCMIG_XCLUSTER_CEPH_CONF'],
                     CEPH_ARGS=env['ASYNCMIG_XCLUSTER_CEPH_ARGS']))
        return result.stdout

    def _target_image_bytes(self, volume_id, offset, length):
        client = self.sandbox.ceph.connect()
        try:
            with client.open_ioctx(self.sandbox.env()[
                    'ASYNCMIG_TARGET_POOL']) as ioctx:
                with rbd.Image(ioctx, 'volume-%s' % volume_id,
                               read_only=True) as image:
                    return image.read(offset, length)
        finally:
            client.shutdown()

    def _check_other_sources(self):
        """Volumes of rbd-xcluster and nfs-src: bytes, reads, migration.

        Needs root: it reads in the volume services' mount namespaces.

        A hypervisor writes known bytes (librbd with the xcluster key of
        openrc; the volume file under ASYNCMIG_FILE_DIR); os-brick reads
        them back in the target's mount namespace from the connection
        info, as the target's host would; ``cinder migrate`` (Cinder's
        host copy, independent of the target driver) moves both to the
        target with their bytes; volumes deleted on their backend leave
        no image and no file.
        """
        sandbox = self.sandbox
        env = sandbox.env()
        rng = random.Random(self.id())
        offset, payload = 3 * units.Mi + 512, rng.randbytes(units.Mi)
        digest = hashlib.sha256(payload).hexdigest()
        self.assertNotEqual(sandbox.ceph.fsid, sandbox.xcluster.fsid)
        pool = env['ASYNCMIG_XCLUSTER_POOL']

        xcluster = self._create(env['ASYNCMIG_XCLUSTER_TYPE'],
                                env['ASYNCMIG_XCLUSTER_HOST'])
        self.assertEqual(sandbox.xcluster_host, env['ASYNCMIG_XCLUSTER_HOST'])
        image = 'volume-%s' % xcluster
        self.assertIn(image, self._xcluster_rbd('ls', pool).split())
        self.assertNotIn(image, sandbox.ceph.rbd(
            'ls', env['ASYNCMIG_SOURCE_POOL']).split())
        with self._xcluster_pool() as ioctx:
            with rbd.Image(ioctx, image) as handle:
                handle.write(payload, offset)
                handle.flush()
            with rbd.Image(ioctx, image, read_only=True) as handle:
                self.assertEqual(payload, handle.read(offset, len(payload)))
        info = self._connection_info(xcluster)
        self.assertEqual('xcluster', info['cluster_name'])
        self.assertEqual('%s/%s' % (pool, image), info['name'])
        self.assertFalse(info.get('keyring'))
        self.assertEqual(digest, self._read_on_host_of(
            cloud.VOLUME_TARGET, info, offset, len(payload)))

        shared = self._create(env['ASYNCMIG_FILE_TYPE'],
                              env['ASYNCMIG_FILE_HOST'])
        self.assertEqual(sandbox.file_host, env['ASYNCMIG_FILE_HOST'])
        path = os.path.join(env['ASYNCMIG_FILE_DIR'], 'volume-%s' % shared)
        self.assertEqual(units.Gi, os.path.getsize(path))
        self.assertEqual(0, os.stat(path).st_blocks)  # sparse raw
        with open(path, 'r+b') as f:
            f.seek(offset)
            f.write(payload)
        with open(path, 'rb') as f:
            f.seek(offset)
            self.assertEqual(payload, f.read(len(payload)))
        info = self._connection_info(shared)
        self.assertEqual('nfs', info['driver_volume_type'])
        self.assertEqual('raw', info['format'])
        for service in (cloud.VOLUME_TARGET, cloud.VOLUME_FILE):
            self.assertEqual(digest, self._read_on_host_of(
                service, info, offset, len(payload)), service)
        # outside the services' namespaces the mount point is a directory
        self.assertEqual([], os.listdir(sandbox.file_mount_point))

        # their types fit the target: cinder migrate keeps them
        for volume_id in (xcluster, shared):
            sandbox.cinder('migrate', '--force-host-copy', 'True', volume_id,
                           sandbox.target_host)
        for volume_id in (xcluster, shared):
            def migrated(volume_id=volume_id):
                volume = sandbox.api('GET', '/volumes/%s' %
                                     volume_id)['volume']
                if volume['migration_status'] == 'error':
                    self.fail('migration of %s failed' % volume_id)
                return volume['migration_status'] == 'success'
            process.wait_for('volume %s migrated' % volume_id, migrated, 180)
            volume = sandbox.api('GET', '/volumes/%s' % volume_id)['volume']
            self.assertEqual(sandbox.target_host,
                             volume['os-vol-host-attr:host'])
            self.assertEqual(payload, self._target_image_bytes(
                volume_id, offset, len(payload)))
        # Cinder deletes the sources after the status says success: the
        # completion casts the delete to the source's volume service
        process.wait_for('the sources deleted', lambda: (
            image not in self._xcluster_rbd('ls', pool).split() and
            not os.path.exists(path)), 60)
        for volume_id in (xcluster, shared):
            sandbox.api('DELETE', '/volumes/%s' % volume_id)

        # deleted on their own backend
        leftovers = []
        for volume_type, host in (
                (env['ASYNCMIG_XCLUSTER_TYPE'], env['ASYNCMIG_XCLUSTER_HOST']),
                (env['ASYNCMIG_FILE_TYPE'], env['ASYNCMIG_FILE_HOST'])):
            volume_id = self._create(volume_type, host)
            sandbox.cinder('delete', volume_id)
            leftovers.append(volume_id)
        for volume_id in leftovers + [xcluster, shared]:
            self.sandbox.wait_volume_gone(volume_id)
        self.assertEqual([], self._xcluster_rbd('ls', pool).split())
        self.assertEqual([], os.listdir(env['ASYNCMIG_FILE_DIR']))

    def test_up_use_kill_restart_down(self):
        sandbox = self.sandbox
        states = {(s['binary'], s['host']): s['state']
                  for s in sandbox.service_list()}
        # without root the sandbox cannot mount the NFS share in place
        privileged = sandbox.deployment.privileged
        expected = {('cinder-scheduler', 'sandbox'): 'up',
                    ('cinder-volume', 'sandbox@rbd-src'): 'up',
                    ('cinder-volume', 'sandbox@rbd-async'): 'up',
                    ('cinder-volume', 'sandbox@rbd-xcluster'): 'up'}
        if privileged:
            expected[('cinder-volume', 'sandbox@nfs-src')] = 'up'
        self.assertEqual(expected, states)
        pools = sandbox.api('GET', '/scheduler-stats/get_pools')['pools']
        self.assertEqual({sandbox.source_host, sandbox.target_host,
                          sandbox.xcluster_host} |
                         ({sandbox.file_host} if privileged else set()),
                         {p['name'] for p in pools})

        # the stock client with the openrc variables, rbd as a hypervisor
        env = sandbox.env()
        out = sandbox.cinder('create', '--volume-type',
                             env['ASYNCMIG_SOURCE_TYPE'], '--name', 'smoke',
                             '1')
        volume_id = _table_value(out, 'id')
        self._wait_status(volume_id, 'available')
        self.assertEqual(env['ASYNCMIG_SOURCE_HOST'], _table_value(
            sandbox.cinder('show', volume_id), 'os-vol-host-attr:host'))
        self.assertIn('volume-%s' % volume_id, sandbox.ceph.rbd(
            'ls', env['ASYNCMIG_SOURCE_POOL']).split())

        # the non-admin user owns its volumes, and may not migrate them
        member_volume = sandbox.api('POST', '/volumes', {'volume': {
            'size': 1, 'name': 'mine'}}, member=True)['volume']['id']
        self._wait_status(member_volume, 'available', member=True)
        exc = self.assertRaises(
            cloud.ApiError, sandbox.api, 'POST',
            '/volumes/%s/action' % member_volume,
            {'os-migrate_volume': {'host': sandbox.target_host}},
            member=True)
        self.assertEqual(403, exc.status)
        listed = sandbox.api('GET', '/volumes', member=True)['volumes']
        self.assertEqual([member_volume], [v['id'] for v in listed])

        # Keystone: the stock openstack client works with either openrc,
        # Cinder's policies judge its tokens, no token gets nothing
        services = json.loads(sandbox.openstack(
            'volume', 'service', 'list', '-f', 'json'))
        self.assertIn(('cinder-volume', sandbox.target_host.split('#')[0]),
                      {(s['Binary'], s['Host']) for s in services})
        exc = self.assertRaises(cloud.CinderCommandError, sandbox.openstack,
                                'volume', 'service', 'list', member=True)
        self.assertIn('403', exc.stderr)
        self.assertIn('volume_extension:services:index', exc.stderr)
        mine = json.loads(sandbox.openstack('volume', 'list', '-f', 'json',
                                            member=True))
        self.assertEqual([member_volume], [v['ID'] for v in mine])
        self.assertEqual(401, _status_without_token(
            '%s/%s/volumes' % (sandbox.api_url, sandbox.project_id())))
        for name in ('openrc', 'openrc-member'):
            self.assertEqual(0o600, os.stat(os.path.join(
                sandbox.directory, name)).st_mode & 0o777)

        # SIGKILL the target volume service alone, then start it again
        target = sandbox.service(cloud.VOLUME_TARGET)
        old_pids = target.processes()
        killed = target.kill()
        self.assertEqual(sorted(old_pids), sorted(killed))
        self.assertFalse([p for p in killed if children.alive(p)])
        self.assertTrue(sandbox.service(cloud.VOLUME_SOURCE).running())
        sandbox.wait_service_down(cloud.VOLUME_TARGET, timeout=60)
        new_pid = target.start()
        self.assertNotIn(new_pid, old_pids)
        sandbox.wait_service_up(cloud.VOLUME_TARGET, timeout=60)
        self.assertEqual(new_pid, cloud.Sandbox.load(
            sandbox.directory).service(cloud.VOLUME_TARGET).pid)

        sandbox.cinder('delete', volume_id)
        sandbox.api('DELETE', '/volumes/%s' % member_volume, member=True)

        if privileged:
            self._check_other_sources()

        # down leaves no process and no directory behind
        running = sandbox.pids()
        self.assertEqual(
            {'cinder-api', 'cinder-scheduler', 'cinder-volume-source',
             'cinder-volume-target', 'cinder-volume-xcluster',
             'rabbitmq', 'epmd', 'keystone', 'mariadb', 'ceph',
             'ceph-xcluster'} |
            ({'cinder-volume-file'} if privileged else set()),
            {name for name, pids in running.items() if pids})
        pids = sum(running.values(), [])
        sandbox.down()
        self.assertEqual([], [p for p in pids if children.alive(p)])
        self.assertFalse(os.path.exists(sandbox.directory))
