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

"""The main job: one ``cinder migrate`` through real Cinder services.

Brings a sandbox up, creates a volume with the stock ``cinder`` client,
fills it with known data as a hypervisor would (librbd), runs ``cinder
migrate`` to the async RBD backend, prints how long until the volume is
``migrating_attachable``, attaches it through the attachments API and
reads and writes it through librbd with the *target's* connection info
while the copy runs, shows the migration as an operator sees it
(``openstack volume migration show``) and its progress from the same API
until ``success``, verifies every byte and tears the sandbox down unless
asked to keep it.
"""

import hashlib
import re
import sys
import time

from oslo_utils import units

from cinder_asyncmig.osc import migration as osc_migration
from cinder_asyncmig.sandbox import ceph
from cinder_asyncmig.sandbox import cloud
from cinder_asyncmig.volume import constants

CHUNK = 4 * units.Mi
_POLL = 0.1
# what the demo shows of ``openstack volume migration show``
_SHOWN = ('Source Host', 'Target Host', 'Source Kind', 'Phase', 'Percent',
          'Rate (B/s)', 'Max Rate (B/s)', 'Started At')


def bar(percent, width=40):
    """A text progress bar, e.g. ``[####......]  42.0%``."""
    full = int(width * percent / 100)
    return '[%s%s] %5.1f%%' % ('#' * full, '.' * (width - full), percent)


def _field(table, name):
    match = re.search(r'^\|\s*%s\s*\|\s*(.*?)\s*\|$' % re.escape(name),
                      table, re.MULTILINE)
    return match.group(1) if match else None


class Demo(object):

    def __init__(self, sandbox, size_gib, seed=42, out=sys.stdout):
        import random
        self.sandbox = sandbox
        self.size = size_gib * units.Gi
        self.size_gib = size_gib
        self.rng = random.Random(seed)
        self.out = out
        self.tty = out.isatty()

    def say(self, text=''):
        self.out.write(text + '\n')
        self.out.flush()

    def volume(self, volume_id):
        return self.sandbox.api('GET', '/volumes/%s' % volume_id)['volume']

    def wait(self, volume_id, predicate, timeout=600):
        deadline = time.monotonic() + timeout
        while True:
            volume = self.volume(volume_id)
            if predicate(volume):
                return volume
            if time.monotonic() > deadline:
                raise cloud.SandboxError('volume %s: still %s/%s after %ss'
                                         % (volume_id, volume['status'],
                                            volume['migration_status'],
                                            timeout))
            time.sleep(_POLL)

    def run(self):
        import rbd

        from cinder_asyncmig.engine import features

        env = self.sandbox.env()
        client = self.sandbox.ceph.connect()
        try:
            src = client.open_ioctx(env['ASYNCMIG_SOURCE_POOL'])
            dst = client.open_ioctx(env['ASYNCMIG_TARGET_POOL'])
            failed = self._run(rbd, src, dst, None, hypervisor=True)
            if not features.CephFeatures.detect(rbd).native_cross_cluster:
                return failed
            # a volume of the second cluster, imported by librbd itself
            xclient = self.sandbox.xcluster.connect()
            try:
                xsrc = xclient.open_ioctx(env['ASYNCMIG_XCLUSTER_POOL'])
                self.say()
                self.say('Another Ceph cluster (rbd-native): the target\'s '
                         'librbd reads it through /etc/ceph/xcluster.conf')
                return failed | self._run(rbd, xsrc, dst,
                                          env['ASYNCMIG_XCLUSTER_TYPE'],
                                          hypervisor=False)
            finally:
                xclient.shutdown()
        finally:
            client.shutdown()

    def _run(self, rbd, src, dst, volume_type, hypervisor):
        """Migrate one volume of ``src``'s pool to the target.

        :param volume_type: the volume type of the source backend, None
                            for the default one.
        :param hypervisor: whether to attach and write during the copy; a
                           hypervisor of a cross-cluster import needs the
                           other cluster in its /etc/ceph, this process
                           has not.
        :returns: 0 when every check holds, else 1.
        """
        sandbox = self.sandbox
        create = ['create', '--name', 'demo', self.size_gib]
        if volume_type:
            create[1:1] = ['--volume-type', volume_type]
        self.say('$ cinder %s' % ' '.join(str(a) for a in create))
        volume_id = _field(sandbox.cinder(*create), 'id')
        volume = self.wait(volume_id, lambda v: v['status'] == 'available')
        source_host = volume['os-vol-host-attr:host']
        name = 'volume-%s' % volume_id
        expected = bytearray(self.size)
        with rbd.Image(src, name) as image:
            for offset in range(0, self.size, CHUNK):
                data = self.rng.randbytes(CHUNK)
                image.write(data, offset)
                expected[offset:offset + CHUNK] = data
        self.say('Volume %s: %d GiB of random data on %s' % (
            volume_id, self.size_gib, source_host))

        self.say('$ cinder migrate %s %s' % (volume_id, sandbox.target_host))
        started = time.monotonic()
        sandbox.cinder('migrate', volume_id, sandbox.target_host)
        volume = self.wait(volume_id, lambda v: v['migration_status'] in (
            constants.ATTACHABLE, 'success', 'error'))
        attachable = time.monotonic() - started
        if volume['migration_status'] != constants.ATTACHABLE:
            self.say('FAIL: migration_status %s' % volume['migration_status'])
            return 1
        self.say('migration_status=%s, host=%s after %.2f s' % (
            volume['migration_status'], volume['os-vol-host-attr:host'],
            attachable))

        writes = 0
        if hypervisor:
            writes = self._use_while_copying(rbd, volume_id, expected)
        volume = self._show_progress(volume_id)
        copy_done = time.monotonic() - started

        got = ceph.image_sha256(dst, name, self.size)
        with rbd.Image(dst, name, read_only=True) as image:
            snapshots = list(image.list_snaps())
        want = hashlib.sha256(expected).hexdigest()
        source_left = name in rbd.RBD().list(src)
        ok = (volume['migration_status'] == 'success' and not source_left
              and not snapshots and got == want)
        self.say()
        self.say('Summary')
        self.say('  volume                     %s, %d GiB' % (volume_id,
                                                              self.size_gib))
        self.say('  source kind                %s' % (
            _kind_in_log(sandbox, volume_id) or 'unknown'))
        self.say('  migrating_attachable after %.2f s' % attachable)
        self.say('  success after              %.1f s' % copy_done)
        self.say('  hypervisor writes          %s' % (
            '%d, during the copy' % writes if hypervisor else 'none'))
        self.say('  final state                status=%s migration_status=%s'
                 % (volume['status'], volume['migration_status']))
        self.say('  host                       %s' %
                 volume['os-vol-host-attr:host'])
        self.say('  source image               %s' % (
            'still there (unexpected)' if source_left else 'removed'))
        self.say('  sha256 expected            %s' % want)
        self.say('  sha256 at destination      %s  %s' % (
            got, 'OK' if ok else 'MISMATCH'))
        sandbox.cinder('delete', volume_id)
        return 0 if ok else 1

    def _use_while_copying(self, rbd, volume_id, expected):
        """Attach with the target's connection info; write and read."""
        attachment = self.sandbox.api('POST', '/attachments', {
            'attachment': {'volume_uuid': volume_id, 'mode': 'rw',
                           'connector': {'initiator': 'iqn.2026-11.demo:hv',
                                         'ip': '127.0.0.1', 'host': 'hv1',
                                         'multipath': False,
                                         'platform': 'x86_64',
                                         'os_type': 'linux'}}})['attachment']
        self.sandbox.api('POST', '/attachments/%s/action' % attachment['id'],
                         {'os-complete': None})
        data = attachment['connection_info']
        data = data.get('data', data)
        self.say('Attached (%s): the hypervisor opens rbd:%s as client.%s' % (
            self.volume(volume_id)['status'], data['name'],
            data.get('auth_username')))
        pool, image_name = data['name'].split('/')
        writes = 0
        client = self.sandbox.ceph.connect()
        try:
            ioctx = client.open_ioctx(pool)
            with rbd.Image(ioctx, image_name) as image:
                for _ in range(8):
                    at = self.rng.randrange(0, self.size - units.Mi)
                    payload = self.rng.randbytes(256 * units.Ki)
                    image.write(payload, at)
                    expected[at:at + len(payload)] = payload
                    if image.read(at, len(payload)) != payload:
                        raise cloud.SandboxError('read-back differs')
                    writes += 1
                image.flush()
            ioctx.close()
        finally:
            client.shutdown()
        self.sandbox.api('DELETE', '/attachments/%s' % attachment['id'])
        self.say('Wrote and read back %d blocks, detached (%s)' % (
            writes, self.volume(volume_id)['status']))
        return writes

    def _show_progress(self, volume_id):
        """The operators' view of the migration, then its progress."""
        self.say('$ openstack volume migration show %s' % volume_id)
        try:
            self.say(self.sandbox.openstack(
                'volume', 'migration', 'show', volume_id,
                *[arg for column in _SHOWN for arg in ('-c', column)]
            ).rstrip())
        except cloud.CinderCommandError as exc:
            self.say('(%s)' % exc.stderr.strip())  # ended meanwhile
        last = None
        while True:
            volume = self.volume(volume_id)
            state = volume['migration_status']
            try:
                migration = self.sandbox.api(
                    'GET', '/async-migrations/%s' % volume_id)[
                        'async_migration']
            except cloud.ApiError:
                migration = None  # ended
            line = osc_migration.progress_line(migration, state)
            if migration and line != last:
                last = line
                if self.tty:
                    self.out.write('\r\033[K' + line)
                    self.out.flush()
                else:
                    self.say(line)
            if state in ('success', 'error', constants.SOURCE_LEFT):
                if self.tty:
                    self.say()
                self.say('migration_status=%s' % state)
                return volume
            time.sleep(0.5)


def _kind_in_log(sandbox, volume_id):
    """The source kind the target's log says took the volume over."""
    with open(sandbox.service(cloud.VOLUME_TARGET).log,
              errors='replace') as f:
        match = re.search(r'Volume %s \(\d+ bytes, (\S+) source\) taken over'
                          % re.escape(volume_id), f.read())
    return match.group(1) if match else None


def run(directory=None, size_gib=2, keep=False, memstore_bytes=None):
    """Bring a sandbox up, run the demo, tear it down unless ``keep``."""
    kwargs = {}
    if memstore_bytes:
        kwargs['memstore_bytes'] = memstore_bytes
    started = time.monotonic()
    sandbox = cloud.Sandbox.up(directory, **kwargs)
    print('Sandbox up in %.1f s: Ceph (cephx), MariaDB, RabbitMQ, cinder-api, '
          'cinder-scheduler, cinder-volume %s and %s' % (
              time.monotonic() - started, sandbox.source_host,
              sandbox.target_host))
    try:
        return Demo(sandbox, size_gib).run()
    finally:
        if keep:
            print('Kept: . %s   (stop it with cinder-asyncmig-sandbox down '
                  '--dir %s)' % (sandbox.openrc, sandbox.directory))
        else:
            sandbox.down()
            print('Sandbox stopped and removed.')
