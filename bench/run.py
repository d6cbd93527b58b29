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

"""Benchmarks of the async RBD target against its anchors, in one run.

On one throwaway cluster (cephx on, memstore), side by side:

1. time until the volume is readable at the destination:
   ``migrate_volume_target`` (linked prepare) vs Cinder's stock
   ``RBDDriver.migrate_volume`` (a full synchronous copy, as ``rbd cp``),
   for a 1 GiB dense volume and a 100 GiB volume holding 100 MiB;
2. background copy: ``complete_migration_target`` vs raw
   ``rbd migration execute`` + ``commit`` of the same kind of image, dense,
   1 GiB and 4 GiB (``--copy-gib``);
3. resume after the copy worker is SIGKILLed: the driver (blocklists the
   dead client) vs re-running raw ``rbd migration execute``.

Prints a table and the ratios. Usage: ``python bench/run.py [--repeat N]``.
"""

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from cinder import context
from cinder.volume.drivers import rbd as cinder_rbd
from oslo_utils import units

from cinder_asyncmig.engine import worker as copy_worker
from cinder_asyncmig.sandbox import backends
from cinder_asyncmig.sandbox import ceph
from cinder_asyncmig.volume.drivers import rbd as target_rbd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sources  # noqa: E402  (the bench next to this one)

SRC, DST, RAW = 'bench-src', 'bench-dst', 'bench-raw'
CHUNK = 4 * units.Mi


class Bench(object):

    def __init__(self, cluster, directory):
        import rbd
        self.rbd = rbd
        self.cluster = cluster
        self.ctxt = context.get_admin_context()
        self.source = backends.make_driver(cinder_rbd.RBDDriver, cluster, SRC)
        self.stock_target = backends.make_driver(cinder_rbd.RBDDriver,
                                                 cluster, RAW)
        self.target = backends.make_driver(
            target_rbd.AsyncMigrationRBDDriver, cluster, DST,
            async_migration_state_dir=os.path.join(directory, 'state'),
            async_migration_poll_interval=0.2,
            # the anchor, raw execute, runs uncapped
            async_migration_copy_max_bytes_per_sec=0)
        self.client = cluster.connect()
        self.io = {p: self.client.open_ioctx(p) for p in (SRC, DST, RAW)}

    def close(self):
        for ioctx in self.io.values():
            ioctx.close()
        self.client.shutdown()

    def volume(self, size_gib, data_bytes):
        """A source volume with ``data_bytes`` of random data spread out."""
        vol = backends.new_volume(self.ctxt, self.source, size_gib)
        size = size_gib * units.Gi
        chunks = data_bytes // CHUNK
        step = max(1, (size // CHUNK) // max(chunks, 1))
        with self.rbd.Image(self.io[SRC], vol.name) as img:
            for i in range(chunks):
                img.write(os.urandom(CHUNK), i * step * CHUNK)
        return vol

    def drop(self, pool, name):
        try:
            self.rbd.RBD().remove(self.io[pool], name)
        except self.rbd.ImageNotFound:
            pass

    def first_read(self, pool, name):
        with self.rbd.Image(self.io[pool], name, read_only=True) as img:
            img.read(0, 4096)

    def readable_async(self, size_gib, data_bytes):
        vol = self.volume(size_gib, data_bytes)
        src_host = backends.host_dict(self.source)
        t0 = time.monotonic()
        self.target.migrate_volume_target(self.ctxt, vol, src_host)
        self.first_read(DST, vol.name)
        took = time.monotonic() - t0
        self.target.abort_migration_target(self.ctxt, vol)
        self.drop(SRC, vol.name)
        return took

    def readable_stock(self, size_gib, data_bytes):
        vol = self.volume(size_gib, data_bytes)
        dst_host = backends.host_dict(self.stock_target)
        t0 = time.monotonic()
        moved, _update = self.source.migrate_volume(self.ctxt, vol, dst_host)
        assert moved, 'stock RBD migration declined'
        self.first_read(RAW, vol.name)
        took = time.monotonic() - t0
        self.drop(RAW, vol.name)
        return took

    def copy_driver(self, size_gib, data_bytes):
        vol = self.volume(size_gib, data_bytes)
        self.target.migrate_volume_target(self.ctxt, vol,
                                          backends.host_dict(self.source))
        t0 = time.monotonic()
        self.target.complete_migration_target(self.ctxt, vol)
        took = time.monotonic() - t0
        self.drop(DST, vol.name)
        return took

    def _rbd_cli(self, *args):
        self.cluster.rbd(*args)

    def copy_raw(self, size_gib, data_bytes):
        vol = self.volume(size_gib, data_bytes)
        self._rbd_cli('migration', 'prepare', '%s/%s' % (SRC, vol.name),
                      '%s/%s' % (RAW, vol.name))
        t0 = time.monotonic()
        self._rbd_cli('migration', 'execute', '%s/%s' % (RAW, vol.name))
        self._rbd_cli('migration', 'commit', '%s/%s' % (RAW, vol.name))
        took = time.monotonic() - t0
        self.drop(RAW, vol.name)
        return took

    def resume_driver(self, size_gib, data_bytes):
        """Seconds from SIGKILL of the worker to copy progress again."""
        vol = self.volume(size_gib, data_bytes)
        self.target.migrate_volume_target(self.ctxt, vol,
                                          backends.host_dict(self.source))
        status_path = self.target._status_path(vol.name)
        marks = {}

        def watch(progress):
            report = copy_worker.read_status(status_path)
            if 'killed' not in marks:
                if 0 < report.get('done', 0) < report.get('total', 0):
                    os.kill(report['pid'], signal.SIGKILL)
                    marks['killed'] = (time.monotonic(), report['pid'])
            elif 'resumed' not in marks and (
                    report.get('pid') != marks['killed'][1] and
                    (report.get('done', 0) > 0 or
                     report.get('phase') == copy_worker.DONE)):
                marks['resumed'] = time.monotonic()

        self.target.complete_migration_target(self.ctxt, vol, watch)
        self.drop(DST, vol.name)
        return marks['resumed'] - marks['killed'][0]

    def resume_raw(self, size_gib, data_bytes):
        """Seconds from SIGKILL of ``rbd migration execute`` to progress."""
        vol = self.volume(size_gib, data_bytes)
        dst = '%s/%s' % (RAW, vol.name)
        self._rbd_cli('migration', 'prepare', '%s/%s' % (SRC, vol.name), dst)
        base = ['rbd', '-c', self.cluster.conf_path, '--id',
                self.cluster.client, 'migration', 'execute', dst]
        proc = subprocess.Popen(base, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = time.monotonic()
        # progress lines go to stderr: the first one with a non-zero
        # percentage means the re-run copies again
        proc = subprocess.Popen(base, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        resumed = None
        buf = b''
        while True:
            ch = proc.stderr.read(1)
            if not ch:
                break
            buf += ch
            if resumed is None and b'% complete' in buf and (
                    b' 0% complete' not in buf[-20:]):
                resumed = time.monotonic()
        proc.wait()
        self._rbd_cli('migration', 'commit', dst)
        self.drop(RAW, vol.name)
        return (resumed or time.monotonic()) - killed


def _median(fn, repeat, *args):
    return statistics.median(fn(*args) for _ in range(repeat))


def _paired_medians(label, ours, anchor, repeat, *args):
    """Medians of ``ours`` and ``anchor``, run in turn after a warm-up pair.

    Run one after the other, the first runs of a fresh cluster are the
    slowest ones and a whole series of one side would take them all. The
    side that goes first changes from pair to pair: the second copy of a
    pair runs while the cluster still removes what the first one left.
    """
    ours(*args)
    anchor(*args)
    pairs = []
    for run in range(repeat):
        if run % 2:
            took = anchor(*args)
            pairs.append((ours(*args), took))
        else:
            pairs.append((ours(*args), anchor(*args)))
        print('  %s, run %d: ours %.2f s, anchor %.2f s' % (
            label, run + 1, pairs[-1][0], pairs[-1][1]), flush=True)
    return (statistics.median(p[0] for p in pairs),
            statistics.median(p[1] for p in pairs))


def measure(bench, args):
    dense = (args.dense_gib, args.dense_gib * units.Gi)
    sparse = (args.sparse_gib, 100 * units.Mi)
    rows = []
    for label, shape in (('%d GiB dense' % dense[0], dense),
                         ('%d GiB sparse (100 MiB data)' % sparse[0],
                          sparse)):
        a = _median(bench.readable_async, args.repeat, *shape)
        s = _median(bench.readable_stock, 1, *shape)
        rows.append(('readable at destination, ' + label,
                     'async target', a, 'stock RBD migrate_volume', s))
    for gib in args.copy_gib:
        d, r = _paired_medians('%d GiB copy' % gib,
                               bench.copy_driver, bench.copy_raw,
                               args.repeat, gib, gib * units.Gi)
        rows.append(('background copy, %d GiB dense' % gib,
                     'complete_migration_target', d,
                     'raw rbd migration execute+commit', r))
    d = _median(bench.resume_driver, args.repeat, *dense)
    r = _median(bench.resume_raw, 1, *dense)
    rows.append(('resume after SIGKILL of the copy, %d GiB' % dense[0],
                 'driver (blocklists dead worker)', d,
                 're-run of rbd migration execute', r))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=3,
                        help='runs of each measurement (median shown)')
    parser.add_argument('--dense-gib', type=int, default=1)
    parser.add_argument('--sparse-gib', type=int, default=100)
    parser.add_argument('--copy-gib', type=int, nargs='+', default=[1, 4],
                        help='dense sizes of the background copy runs')
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, sources._stop_on_sigterm)
    directory = tempfile.mkdtemp(prefix='asyncmig-bench-')
    os.rmdir(directory)
    # a copy holds its source and its destination at once
    memstore = max(6, 2 * max(args.copy_gib) + 2) * units.Gi
    with contextlib.ExitStack() as cleanup:
        cluster = ceph.CephCluster.up(directory, memstore_bytes=memstore,
                                      pools=[SRC, DST, RAW])
        cleanup.callback(cluster.down)
        bench = Bench(cluster, directory)
        cleanup.callback(bench.close)
        rows = measure(bench, args)

    print()
    print('%-56s %-34s %10s   %-34s %10s %9s' % (
        'measurement', 'ours', 'seconds', 'anchor', 'seconds', 'ratio'))
    for what, ours, ours_s, anchor, anchor_s in rows:
        print('%-56s %-34s %10.3f   %-34s %10.3f %8.2fx' % (
            what, ours, ours_s, anchor, anchor_s, anchor_s / ours_s))
    print('(ratio = anchor / ours: above 1 means ours is faster; medians '
          'of %d runs for ours; the copies run in turn with their anchor, '
          'after a warm-up pair)' % args.repeat)
    return 0


if __name__ == '__main__':
    sys.exit(main())
