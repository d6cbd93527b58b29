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

"""cinder-asyncmig-demo: one asynchronous migration, start to finish.

On a throwaway Ceph cluster (cephx on), a volume made by Cinder's stock
RBD driver in one pool is taken over by the async target driver in
another pool. The demo prints how long until the volume is readable at
the destination, reads and writes it through librbd as a hypervisor would
while the background copy runs, shows the copy's progress, checks every
byte against the expected data and tears the cluster down (unless
``--keep``).
"""

import argparse
import hashlib
import os
import random
import sys
import tempfile
import time

from cinder import context
from cinder.volume.drivers import rbd as cinder_rbd
from oslo_utils import units

from cinder_asyncmig.sandbox import backends
from cinder_asyncmig.sandbox import ceph
from cinder_asyncmig.sandbox import demo as sandbox_demo
from cinder_asyncmig.volume.drivers import rbd as target_rbd

SRC_POOL, DST_POOL = 'volumes-src', 'volumes-dst'
CHUNK = 4 * units.Mi


class _Demo(object):

    def __init__(self, args):
        self.args = args
        self.out = sys.stdout
        self.rng = random.Random(args.seed)
        self.tty = self.out.isatty()
        self.expected = None
        self.io_during_copy = 0
        self.last_shown = -10.0

    def say(self, text):
        self.out.write(text + '\n')
        self.out.flush()

    def run(self):
        args = self.args
        directory = args.dir or tempfile.mkdtemp(prefix='asyncmig-demo-')
        if args.dir is None:
            os.rmdir(directory)
        started = time.monotonic()
        cluster = ceph.CephCluster.up(
            directory, memstore_bytes=int((args.size_gib * 3 + 1) * units.Gi),
            pools=[SRC_POOL, DST_POOL])
        self.say('Ceph cluster up in %.1f s (cephx on, client.%s limited to '
                 '%s and %s)' % (time.monotonic() - started, cluster.client,
                                 SRC_POOL, DST_POOL))
        try:
            return self._migrate(cluster, directory)
        finally:
            if args.keep:
                self.say('Kept the cluster: eval "$(cinder-asyncmig-ceph env '
                         '--dir %s)"; stop it with cinder-asyncmig-ceph down '
                         '--dir %s' % (directory, directory))
            else:
                cluster.down()
                self.say('Cluster stopped and %s removed.' % directory)

    def _migrate(self, cluster, directory):
        import rbd

        ctxt = context.get_admin_context()
        source = backends.make_driver(cinder_rbd.RBDDriver, cluster,
                                      SRC_POOL)
        target = backends.make_driver(
            target_rbd.AsyncMigrationRBDDriver, cluster, DST_POOL,
            async_migration_state_dir=os.path.join(directory, 'asyncmig'),
            async_migration_poll_interval=0.5)
        size = self.args.size_gib * units.Gi
        volume = backends.new_volume(ctxt, source, self.args.size_gib)
        client = cluster.connect()
        src = client.open_ioctx(SRC_POOL)
        dst = client.open_ioctx(DST_POOL)
        try:
            self.expected = bytearray(size)
            with rbd.Image(src, volume.name) as img:
                for offset in range(0, size, CHUNK):
                    data = self.rng.randbytes(CHUNK)
                    img.write(data, offset)
                    self.expected[offset:offset + CHUNK] = data
            self.say('Created %s (%d GiB of random data) with Cinder\'s RBD '
                     'driver in pool %s' % (volume.name, self.args.size_gib,
                                            SRC_POOL))

            src_host = backends.host_dict(source)
            t0 = time.monotonic()
            moved = target.migrate_volume_target(ctxt, volume, src_host)
            ready = time.monotonic() - t0
            with rbd.Image(dst, volume.name, read_only=True) as img:
                first = img.read(0, CHUNK)
            readable = time.monotonic() - t0
            if first != bytes(self.expected[:CHUNK]):
                self.say('FAIL: the destination does not read the source')
                return 1
            self.say('Taken over by the async target: %s; destination '
                     'usable after %.1f ms, first read done after %.1f ms'
                     % (moved[:2], ready * 1000, readable * 1000))

            with rbd.Image(dst, volume.name) as hypervisor:
                copy_started = time.monotonic()
                final = target.complete_migration_target(
                    ctxt, volume, lambda p: self._on_progress(p, hypervisor))
                copy_time = time.monotonic() - copy_started
                hypervisor.flush()
            if self.tty:
                self.out.write('\n')

            got = hashlib.sha256()
            with rbd.Image(dst, volume.name, read_only=True) as img:
                for offset in range(0, size, 4 * CHUNK):
                    got.update(img.read(offset, min(4 * CHUNK,
                                                    size - offset)))
            want = hashlib.sha256(self.expected).hexdigest()
            source_left = volume.name in rbd.RBD().list(src)
        finally:
            src.close()
            dst.close()
            client.shutdown()

        ok = got.hexdigest() == want and not source_left
        self.say('')
        self.say('Summary')
        self.say('  volume size            %d GiB' % self.args.size_gib)
        self.say('  usable at destination  %.1f ms' % (ready * 1000))
        self.say('  background copy        %.1f s (%.0f MiB/s)' % (
            copy_time, size / units.Mi / copy_time))
        self.say('  hypervisor writes      %d during the copy' %
                 self.io_during_copy)
        self.say('  final status           %s' % final['phase'])
        self.say('  source image           %s' % (
            'still there (unexpected)' if source_left else
            'removed at commit'))
        self.say('  sha256 expected        %s' % want)
        self.say('  sha256 destination     %s  %s' % (
            got.hexdigest(), 'OK' if ok else 'MISMATCH'))
        return 0 if ok else 1

    def _on_progress(self, progress, hypervisor):
        percent = progress.get('percent', 0)
        if progress.get('phase') == 'copying' and 0 < percent < 100:
            # a guest writes and reads back while blocks are still moving
            at = self.rng.randrange(0, len(self.expected) - units.Mi)
            data = self.rng.randbytes(64 * units.Ki)
            hypervisor.write(data, at)
            self.expected[at:at + len(data)] = data
            if hypervisor.read(at, len(data)) != data:
                raise RuntimeError('read-back after write differs')
            self.io_during_copy += 1
        line = '%s %s %.0f MiB/s' % (
            sandbox_demo.bar(percent), progress.get('phase', ''),
            progress.get('rate_bytes_per_sec', 0) / units.Mi)
        if self.tty:
            self.out.write('\r' + line)
            self.out.flush()
        elif percent - self.last_shown >= 10 or percent >= 100:
            self.last_shown = percent
            self.say(line)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='cinder-asyncmig-demo',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--size-gib', type=int, default=2,
                        help='size of the migrated volume')
    parser.add_argument('--dir', help='cluster directory (default: a new '
                                      'temporary one)')
    parser.add_argument('--keep', action='store_true',
                        help='leave the cluster running')
    parser.add_argument('--seed', type=int, default=42)
    args = parser.parse_args(argv)
    return _Demo(args).run()


if __name__ == '__main__':
    sys.exit(main())
