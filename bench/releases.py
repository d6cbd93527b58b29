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

"""Source kinds on each Ceph release, in one run.

For every release (pacific on the host, reef and tentacle from their
roots, see ``cinder-asyncmig-roots``), on throwaway clusters of that
release (cephx on, memstore), the same dense volume is migrated from each
source kind the release's librbd can read:

- ``linked``: an RBD image in another pool of the cluster;
- ``file``: a raw file stream of a local file with the same bytes;
- ``http``: the HTTP exporter serving that file;
- ``nbd``: qemu-nbd serving it with TLS and client certificates
  (librbd 20.2);
- ``native``: an RBD image of a second cluster, imported natively
  (librbd 20.2).

For each: the time to a usable destination (prepare, what
``migrating_attachable`` waits for) and the copy time (copy worker start
to commit), the destination's sha256 checked. Prints one table per
release and the ratios to ``linked`` on the same release.

Usage: ``python bench/releases.py [--size-mib N] [--release R ...]``.
The roots are built first if needed (about 7 minutes each).
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from oslo_utils import units

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sources  # noqa: E402  (the bench next to this one)

from cinder_asyncmig.engine import features  # noqa: E402
from cinder_asyncmig.engine.migration import DESTINATION_FEATURES  # noqa
from cinder_asyncmig.engine import specs  # noqa: E402
from cinder_asyncmig.sandbox import ceph  # noqa: E402
from cinder_asyncmig.sandbox import pki  # noqa: E402
from cinder_asyncmig.sandbox import roots  # noqa: E402
from cinder_asyncmig.sources import exporter  # noqa: E402

NBD, NATIVE = 'nbd', 'native'
KINDS = (sources.LINKED, sources.FILE, sources.HTTP, NBD, NATIVE)
LABELS = dict(sources.KIND_LABELS, **{
    NBD: 'NBD exporter, TLS (same file)',
    NATIVE: 'native import (RBD image, other cluster)'})
REMOTE = 'benchremote'
CLIENT = 'bench'


class ReleaseBench(sources.SourceBench):
    """The source bench with the kinds of librbd 20.2 too."""

    def __init__(self, cluster, remote, directory, data_path, data_sha256,
                 tls_dir):
        super(ReleaseBench, self).__init__(cluster, directory, data_path,
                                           data_sha256)
        self.remote = remote
        self.tls_dir = tls_dir

    def export(self, export_id, max_bytes_per_sec=0, transport=None):
        if transport != exporter.NBD:
            return super(ReleaseBench, self).export(export_id,
                                                    max_bytes_per_sec)
        handle = exporter.Exporter.start(
            self.exports, export_id, self.data_path,
            exporter.generate_token(), transport=exporter.NBD,
            nbd_tls_dir=self.tls_dir, nbd_identities=[pki.CLIENT_IDENTITY])
        self.exporters.append(handle)
        return handle

    def prepare(self, kind, name, url=None):
        if kind == NBD:
            self.engine.prepare_import(specs.raw_nbd(url),
                                       self.io[sources.DST], name)
        elif kind == NATIVE:
            self.engine.prepare_import(
                specs.native(sources.SRC, name, 'bench',
                             cluster_name=REMOTE,
                             client_name='client.%s' % CLIENT),
                self.io[sources.DST], name)
        else:
            super(ReleaseBench, self).prepare(kind, name, url)

    def remote_image(self, name):
        """Write the data to the second cluster, snapshot and protect it."""
        client = self.remote.connect()
        try:
            ioctx = client.open_ioctx(sources.SRC)
            self.rbd.RBD().create(ioctx, name, self.size, old_format=False,
                                  features=DESTINATION_FEATURES)
            with self.rbd.Image(ioctx, name) as img, \
                    open(self.data_path, 'rb') as f:
                offset = 0
                while offset < self.size:
                    block = f.read(sources.CHUNK)
                    img.write(block, offset)
                    offset += len(block)
            self.engine.freeze(ioctx, name, 'bench')
            ioctx.close()
        finally:
            client.shutdown()

    def measure(self, kind, run, url):
        """Seconds to a usable destination and to the end of the copy."""
        name = '%s-%d' % (kind, run)
        if kind == NATIVE:
            self.remote_image(name)
        elif kind == sources.LINKED:
            self.write_image(sources.SRC, name)
        started = time.monotonic()
        if kind == sources.LINKED:
            self.engine.prepare_linked(self.io[sources.SRC], name,
                                       self.io[sources.DST], name)
        else:
            self.prepare(kind, name, url)
        usable = time.monotonic() - started
        took = self.copy_and_commit(name)
        self.check_bytes(name)
        if kind == NATIVE:
            # execute copies the snapshot too
            self.engine.thaw(self.io[sources.DST], name, 'bench')
        self.drop(sources.DST, name)
        return usable, took


def _one(args):
    """Measure on the release this process runs with; print JSON."""
    import rbd
    signal.signal(signal.SIGTERM, sources._stop_on_sigterm)
    have = features.CephFeatures.detect(rbd)
    kinds = [k for k in KINDS if k not in (NBD, NATIVE) or
             (k == NBD and have.nbd_stream) or
             (k == NATIVE and have.native_cross_cluster)]
    base = args.dir
    data_path = os.path.join(base, 'data.raw')
    data_sha256 = sources.write_data_file(data_path, args.size_mib * units.Mi)
    memstore = (args.size_mib * units.Mi * (args.repeat + 2) +
                2 * units.Gi)
    cluster = ceph.CephCluster.up(os.path.join(base, 'ceph'),
                                  memstore_bytes=memstore,
                                  pools=(sources.SRC, sources.DST),
                                  client=CLIENT)
    remote = None
    try:
        if NATIVE in kinds:
            remote = ceph.CephCluster.up(
                os.path.join(base, 'remote'), pools=(sources.SRC,),
                client=CLIENT, memstore_bytes=memstore)
        bench = ReleaseBench(cluster, remote, base, data_path, data_sha256,
                             os.path.join(base, 'tls', 'server'))
        try:
            results = {}
            for kind in kinds:
                handle = None
                if kind in (sources.HTTP, NBD):
                    handle = bench.export('bench-%s' % kind, transport=kind)
                try:
                    results[kind] = [
                        bench.measure(kind, run, handle and handle.url)
                        for run in range(args.repeat)]
                finally:
                    if handle:
                        bench.unexport(handle)
        finally:
            bench.close()
    finally:
        for each in (remote, cluster):
            if each is not None:
                each.down()
    json.dump({'release': roots.current(),
               'librbd': '.'.join(str(n) for n in rbd.RBD().version()),
               'results': results}, sys.stdout)


def _host_files(base, release):
    """/etc/ceph and /etc/pki/libnbd of the bench's host, prepared."""
    etc_ceph = os.path.join(base, 'etc-ceph')
    os.makedirs(etc_ceph)
    remote = os.path.join(base, 'remote')
    os.symlink(os.path.join(remote, 'ceph.conf'),
               os.path.join(etc_ceph, '%s.conf' % REMOTE))
    keyring = 'ceph.client.%s.keyring' % CLIENT
    os.symlink(os.path.join(remote, keyring),
               os.path.join(etc_ceph, REMOTE + keyring[len('ceph'):]))
    pki.write_nbd_files(os.path.join(base, 'tls', 'server'),
                        os.path.join(base, 'tls', 'client'), '127.0.0.1')
    mounts = [(etc_ceph, '/etc/ceph')]
    if os.path.isdir(os.path.join(roots.root_path(release), 'etc', 'pki',
                                  'libnbd')):
        # libnbd is there: librbd reads NBD streams
        mounts.append((os.path.join(base, 'tls', 'client'),
                       '/etc/pki/libnbd'))
    return mounts


def _run_release(release, args, directory):
    base = tempfile.mkdtemp(prefix='%s-' % release, dir=directory)
    argv = [os.path.abspath(__file__), '--one', '--dir', base,
            '--size-mib', str(args.size_mib), '--repeat', str(args.repeat)]
    mounts = []
    if release != 'pacific':
        mounts = _host_files(base, release)
    binds = []
    for source, mount_point in mounts:
        binds += [source, mount_point]
    inner = ['unshare', '--mount', '--propagation', 'private', '--',
             '/bin/sh', '-c',
             'while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 1; '
             'shift 2; done; shift; exec "$@"', 'bench'] + binds + ['--']
    if release == roots.current():
        command = inner + [sys.executable] + argv
        result = subprocess.run(command, capture_output=True, text=True)
    else:
        roots.build(release)
        python = os.path.join(roots.VENV, 'bin', 'python')
        result = roots.run(release, inner + [python] + argv,
                           check=False, capture_output=True, text=True)
    if result.returncode:
        raise sources.BenchError('%s: %s' % (release, result.stderr[-3000:]))
    return json.loads(result.stdout.strip().splitlines()[-1])


def _print(found, size_mib):
    print()
    print('Source kinds by Ceph release: %d MiB dense volume, median of '
          'the runs; ratio = copy time / linked copy time on that release'
          % size_mib)
    print()
    print('| release (librbd) | kind | usable after (ms) | copy (s) | '
          'copy MiB/s | ratio to linked |')
    print('|---|---|---|---|---|---|')
    for run in found:
        results = run['results']
        linked = statistics.median(
            t for _, t in results[sources.LINKED])
        for kind in KINDS:
            if kind not in results:
                continue
            usable = statistics.median(u for u, _ in results[kind])
            took = statistics.median(t for _, t in results[kind])
            print('| %s (%s) | %s | %.1f | %.2f | %.0f | %.2f |' % (
                run['release'], run['librbd'], LABELS[kind], usable * 1000,
                took, size_mib / took, took / linked))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size-mib', type=int, default=512)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--release', action='append',
                        choices=list(roots.RELEASES))
    parser.add_argument('--one', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--dir', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        return _one(args)
    directory = tempfile.mkdtemp(prefix='bench-releases-')
    try:
        found = [_run_release(release, args, directory)
                 for release in args.release or list(roots.RELEASES)]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    _print(found, args.size_mib)
    return 0


if __name__ == '__main__':
    sys.exit(main())
