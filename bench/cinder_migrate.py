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

"""Time until a migrated volume is usable at its destination, via Cinder.

In one sandbox (real cinder-api, -scheduler, two cinder-volume services,
Ceph with cephx, its data on disk), for a 1 GiB and a 10 GiB dense, a
100 GiB and a 1 TiB sparse volume (100 MiB of data), from the
``os-migrate_volume`` call:

* async target: until ``migration_status`` is ``migrating_attachable``
  (and, for information, until ``success``);
* stock RBD driver-assisted migration between the same pools (the target
  backend with asynchronous migration switched off): until ``success``,
  the first moment the volume is usable at the destination;
* Cinder's generic host copy (``force_host_copy``): until ``success``,
  for the 1 GiB volume only by default: it writes every byte of the
  destination, zeros included, so a 100 GiB sparse volume needs 100 GiB
  at the destination.

The 1 TiB volume shows that the time to usable does not grow with the
size; the 10 GiB one (``--dense-gib``), what the stock wait costs once a
volume holds data. The async copies run uncapped here, as the stock
migration does.

Usage: ``python bench/cinder_migrate.py [--dense-gib N] [--generic-sparse]``.
"""

import argparse
import configparser
import os
import shutil
import signal
import sys
import tempfile
import time

from oslo_utils import units

from cinder_asyncmig.sandbox import cloud
from cinder_asyncmig.sandbox import process
from cinder_asyncmig.volume import constants

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sources  # noqa: E402  (the bench next to this one)

CHUNK = 4 * units.Mi


class CinderBench(object):

    def __init__(self, sandbox):
        import rbd
        self.rbd = rbd
        self.sandbox = sandbox
        env = sandbox.env()
        self.client = sandbox.ceph.connect()
        self.src = self.client.open_ioctx(env['ASYNCMIG_SOURCE_POOL'])

    def close(self):
        self.src.close()
        self.client.shutdown()

    def volume(self, volume_id):
        return self.sandbox.api('GET', '/volumes/%s' % volume_id)['volume']

    def wait(self, volume_id, predicate, timeout=3600, interval=0.05):
        found = {}

        def check():
            found['v'] = self.volume(volume_id)
            if found['v']['migration_status'] == 'error':
                raise cloud.SandboxError('migration of %s failed' % volume_id)
            return predicate(found['v'])
        process.wait_for('volume %s' % volume_id, check, timeout, interval)
        return found['v']

    def create(self, size_gib, data_bytes):
        volume_id = self.sandbox.api('POST', '/volumes', {'volume': {
            'size': size_gib}})['volume']['id']
        self.wait(volume_id, lambda v: v['status'] == 'available', 120, 0.2)
        chunks = data_bytes // CHUNK
        step = max(1, (size_gib * units.Gi // CHUNK) // max(chunks, 1))
        with self.rbd.Image(self.src, 'volume-%s' % volume_id) as image:
            for i in range(chunks):
                image.write(os.urandom(CHUNK), i * step * CHUNK)
        return volume_id

    def migrate(self, size_gib, data_bytes, force_host_copy=False):
        """Return (seconds to usable, seconds to success, usable state)."""
        volume_id = self.create(size_gib, data_bytes)
        started = time.monotonic()
        self.sandbox.api('POST', '/volumes/%s/action' % volume_id,
                         {'os-migrate_volume': {
                             'host': self.sandbox.target_host,
                             'force_host_copy': force_host_copy}})
        first = self.wait(volume_id, lambda v: v['migration_status'] in (
            constants.ATTACHABLE, 'success'))
        usable = time.monotonic() - started
        self.wait(volume_id, lambda v: v['migration_status'] == 'success',
                  interval=0.2)
        done = time.monotonic() - started
        self.sandbox.api('DELETE', '/volumes/%s' % volume_id)
        return usable, done, first['migration_status']

    def set_async_target(self, enabled, copy_cap=None):
        """Switch the target backend's async migration on or off.

        :param copy_cap: the target's copy cap in bytes/s, if given.
        """
        service = self.sandbox.service(cloud.VOLUME_TARGET)
        config = configparser.ConfigParser(interpolation=None)
        config.read(service.config)
        backend = self.sandbox.target_host.split('@')[1].split('#')[0]
        if enabled:
            config.remove_option(backend, 'async_migration_source_kinds')
        else:
            config.set(backend, 'async_migration_source_kinds', '')
        if copy_cap is not None:
            config.set(backend, 'async_migration_copy_max_bytes_per_sec',
                       str(copy_cap))
        with open(service.config, 'w') as f:
            config.write(f)
        service.kill()
        service.start()
        self.sandbox.wait_service_up(cloud.VOLUME_TARGET, timeout=120)

        def scheduler_knows():
            pools = self.sandbox.api(
                'GET', '/scheduler-stats/get_pools?detail=true')['pools']
            caps = [p['capabilities'] for p in pools
                    if p['name'] == self.sandbox.target_host]
            return caps and bool(caps[0].get(
                'async_migration_target')) == enabled
        process.wait_for('scheduler sees the target', scheduler_knows, 120,
                         interval=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--generic-sparse', action='store_true',
                        help='also time the generic copy of the 100 GiB '
                             'volume (it writes all 100 GiB to disk)')
    parser.add_argument('--dense-gib', type=int, default=10,
                        help='size of the large dense volume (0: none)')
    parser.add_argument('--disk-gib', type=int, default=128,
                        help='size of the sparse file the OSD keeps its '
                             'data in; its thin provisioning (20x) must '
                             'hold the 1 TiB volume')
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, sources._stop_on_sigterm)
    directory = tempfile.mkdtemp(prefix='asyncmig-bench-')
    os.rmdir(directory)
    # each dense volume and its copy, for the async and the stock run:
    # the OSD's file keeps what BlueStore freed, so count them all
    needed = (4 * (1 + args.dense_gib) + 4) * units.Gi
    free = shutil.disk_usage(os.path.dirname(directory)).free
    if free < needed:
        sys.exit('cinder-migrate: %d GiB free under %s, the run writes up '
                 'to %d GiB; use a smaller --dense-gib' % (
                     free // units.Gi, os.path.dirname(directory),
                     needed // units.Gi))
    sandbox = cloud.Sandbox.up(directory, disk_bytes=args.disk_gib * units.Gi)
    shapes = [('1 GiB dense', 1, units.Gi),
              ('100 GiB sparse (100 MiB data)', 100, 100 * units.Mi),
              ('1 TiB sparse (100 MiB data)', 1024, 100 * units.Mi)]
    if args.dense_gib:
        shapes.append(('%d GiB dense' % args.dense_gib, args.dense_gib,
                       args.dense_gib * units.Gi))
    results = {}
    bench = None
    try:
        bench = CinderBench(sandbox)
        # the 1 TiB volume is above Cinder's default quota of 1000 GiB
        sandbox.set_quota(gigabytes=4096)
        # uncapped, as the stock migration is
        bench.set_async_target(True, copy_cap=0)
        for label, size, data in shapes:
            results[('async', label)] = bench.migrate(size, data)
        for label, size, data in shapes:
            # it writes every byte, zeros included: 1 TiB would not fit
            if size > 1 and not (size == 100 and args.generic_sparse):
                continue
            results[('generic', label)] = bench.migrate(
                size, data, force_host_copy=True)
        bench.set_async_target(False)
        for label, size, data in shapes:
            results[('stock', label)] = bench.migrate(size, data)
    finally:
        if bench is not None:
            bench.close()
        sandbox.down()

    print()
    print('%-32s %12s %12s %22s %22s' % (
        'volume', 'async usable', 'async done', 'stock RBD usable (x)',
        'generic usable (x)'))
    for label, _size, _data in shapes:
        usable, done, state = results[('async', label)]
        assert state == constants.ATTACHABLE, state
        row = '%-32s %11.2fs %12s' % (
            label, usable, '%.2fs' % done)
        for kind in ('stock', 'generic'):
            if (kind, label) in results:
                other = results[(kind, label)][0]
                row += ' %13.2fs %6.1fx' % (other, other / usable)
            else:
                row += ' %22s' % 'skipped'
        print(row)
    print('(usable = from the os-migrate_volume call until the volume can '
          'be attached at the destination; x = how many times longer than '
          'async)')
    print('async usable, 1 TiB against 1 GiB: %.2fx' % (
        results[('async', shapes[2][0])][0] /
        results[('async', shapes[0][0])][0]))
    for label, _size, data in shapes:
        if data >= units.Gi and ('stock', label) in results:
            usable, done, _state = results[('async', label)]
            stock = results[('stock', label)][1]
            print('%s: usable after %.2fs async, %.2fs stock (%.0fx); '
                  'all copied after %.2fs async, %.2fs stock (%.2fx)' % (
                      label, usable, stock, stock / usable, done, stock,
                      stock / done))
    return 0


if __name__ == '__main__':
    sys.exit(main())
