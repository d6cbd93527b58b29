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

"""Benchmarks of the source kinds a migration reads from, in one run.

On one throwaway cluster (cephx on, memstore), side by side:

1. copy of the same 1 GiB dense volume by source kind: linked (an RBD
   image in another pool of the cluster), a raw file stream of a local
   file holding the same bytes, and the HTTP exporter serving that file.
   Each is timed from the start of the copy worker (as the driver starts
   it) until commit is done, and the destination's sha256 is checked
   against the source's;
2. accuracy of the exporter's bandwidth cap, read for 30 s with four
   connections, and the rate librbd's execute gets through a capped
   exporter;
3. fio 4k random IO on a destination that reads through to an exporter
   (copy not running, then running) against a settled image holding the
   same data.

Prints tables and ratios. Usage:
``python bench/sources.py [--repeat N] [--keep-dir]``.
"""

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from oslo_utils import units

from cinder_asyncmig.engine import migration
from cinder_asyncmig.engine import specs
from cinder_asyncmig.engine import worker as copy_worker
from cinder_asyncmig import opts
from cinder_asyncmig.sandbox import ceph
from cinder_asyncmig.sources import exporter

SRC, DST = 'bench-src', 'bench-dst'
CHUNK = 4 * units.Mi
SEED = 20240
LINKED, FILE, HTTP = 'linked', 'file', 'http'
KIND_LABELS = {LINKED: 'linked (RBD image, same cluster)',
               FILE: 'raw file stream (local file)',
               HTTP: 'HTTP exporter (same file)'}
COPY_TIMEOUT = 900
SETTLED, IDLE, COPYING = 'settled', 'idle', 'copying'
STATE_LABELS = {SETTLED: 'settled image',
                IDLE: 'migrating, copy not running',
                COPYING: 'migrating, copy running'}


class BenchError(Exception):
    """A measurement could not be made or gave wrong bytes."""


def write_data_file(path, size, seed=SEED):
    """Write ``size`` bytes of seeded random data; return their sha256."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with open(path, 'wb') as f:
        written = 0
        while written < size:
            block = rng.randbytes(min(CHUNK, size - written))
            digest.update(block)
            f.write(block)
            written += len(block)
    return digest.hexdigest()


class SourceBench(object):

    def __init__(self, cluster, directory, data_path, data_sha256):
        import rbd
        self.rbd = rbd
        self.cluster = cluster
        self.directory = directory
        self.data_path = data_path
        self.data_sha256 = data_sha256
        self.size = os.path.getsize(data_path)
        self.engine = migration.Engine()
        self.exports = os.path.join(directory, 'exports')
        self.state = os.path.join(directory, 'state')
        os.makedirs(self.state, mode=0o700, exist_ok=True)
        self.workers = []
        self.exporters = []
        self.fio_procs = []
        self.client = cluster.connect()
        self.io = {}
        for pool in (SRC, DST):
            self.io[pool] = self.client.open_ioctx(pool)

    def close(self):
        """Stop every process this bench started and disconnect."""
        for proc in self.fio_procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for job in self.workers:
            job.stop()
        for handle in self.exporters:
            handle.stop()
        for ioctx in self.io.values():
            ioctx.close()
        self.client.shutdown()

    # -- images and sources ----------------------------------------------

    def write_image(self, pool, name):
        """Create ``pool/name`` holding the data file's bytes."""
        self.rbd.RBD().create(self.io[pool], name, self.size,
                              old_format=False,
                              features=migration.DESTINATION_FEATURES)
        with self.rbd.Image(self.io[pool], name) as img, \
                open(self.data_path, 'rb') as f:
            offset = 0
            while offset < self.size:
                block = f.read(CHUNK)
                img.write(block, offset)
                offset += len(block)

    def image_sha256(self, pool, name):
        return ceph.image_sha256(self.io[pool], name, self.size)

    def drop(self, pool, name):
        try:
            self.rbd.RBD().remove(self.io[pool], name)
        except self.rbd.ImageNotFound:
            pass

    def export(self, export_id, max_bytes_per_sec=0):
        handle = exporter.Exporter.start(
            self.exports, export_id, self.data_path,
            exporter.generate_token(), max_bytes_per_sec=max_bytes_per_sec)
        self.exporters.append(handle)
        return handle

    def unexport(self, handle):
        handle.stop()
        self.exporters.remove(handle)

    def prepare(self, kind, name, url=None):
        """Make ``DST/name`` a migration destination of a ``kind`` source."""
        if kind == LINKED:
            self.write_image(SRC, name)
            self.engine.prepare_linked(self.io[SRC], name, self.io[DST], name)
        elif kind == FILE:
            self.engine.prepare_import(specs.raw_file(self.data_path),
                                       self.io[DST], name)
        else:
            self.engine.prepare_import(specs.raw_http(url), self.io[DST],
                                       name)

    # -- the copy ----------------------------------------------------------

    def start_copy(self, name, max_bytes_per_sec=0):
        """Start execute in a worker process, as the driver does."""
        if max_bytes_per_sec:
            self.engine.set_copy_ops(
                self.io[DST], name,
                opts.target_default('async_migration_lock_holder_copy_ops'))
        job = copy_worker.ExecuteWorker.start(
            name, DST, os.path.join(self.state, 'copy-%s.json' % name),
            conf=self.cluster.conf_path, user=self.cluster.client,
            max_bytes_per_sec=max_bytes_per_sec)
        self.workers.append(job)
        return job

    def wait_copy(self, job, timeout=COPY_TIMEOUT, interval=0.02):
        """Wait until the worker reports the copy done."""
        deadline = time.monotonic() + timeout
        while True:
            report = job.read()
            phase = report.get('phase')
            if phase == copy_worker.DONE:
                break
            if phase == copy_worker.FAILED or (
                    not job.running() and job.read().get('phase') !=
                    copy_worker.DONE):
                raise BenchError('copy worker of %s failed: %s; see %s.log' %
                                 (report.get('image'), report,
                                  job.status_path))
            if time.monotonic() > deadline:
                raise BenchError('copy not done after %d s' % timeout)
            time.sleep(interval)
        job.stop()
        self.workers.remove(job)

    def copy_and_commit(self, name):
        """Seconds from the worker's start until commit is done."""
        started = time.monotonic()
        self.wait_copy(self.start_copy(name))
        self.engine.commit(self.io[DST], name)
        return time.monotonic() - started

    def check_bytes(self, name):
        found = self.image_sha256(DST, name)
        if found != self.data_sha256:
            raise BenchError('%s holds other bytes than its source (sha256 '
                             '%s, expected %s)' % (name, found,
                                                   self.data_sha256))

    def copy_by_kind(self, kind, run, url):
        name = '%s-%d' % (kind, run)
        self.prepare(kind, name, url)
        took = self.copy_and_commit(name)
        self.check_bytes(name)
        self.drop(DST, name)
        return took

    # -- bandwidth cap ------------------------------------------------------

    def read_rate(self, max_bytes_per_sec, seconds, connections=4):
        """Bytes/s read from an exporter with that cap (0: uncapped)."""
        handle = self.export('cap-%d' % max_bytes_per_sec, max_bytes_per_sec)
        try:
            return exporter.measure_read_rate(handle.url, seconds,
                                              connections=connections)
        finally:
            self.unexport(handle)

    def capped_copy(self, max_bytes_per_sec):
        """librbd execute through a capped exporter.

        :returns: (execute seconds, bytes the exporter served).
        """
        handle = self.export('exec-%d' % max_bytes_per_sec,
                             max_bytes_per_sec)
        name = 'capped'
        try:
            self.prepare(HTTP, name, handle.url)
            served = self.served(handle)
            started = time.monotonic()
            self.wait_copy(self.start_copy(name))
            took = time.monotonic() - started
            # the exporter reports its counters once a second
            time.sleep(1.5)
            served = self.served(handle) - served
            self.engine.commit(self.io[DST], name)
            self.check_bytes(name)
            self.drop(DST, name)
        finally:
            self.unexport(handle)
        return took, served

    @staticmethod
    def served(handle):
        return handle.status().get('bytes_served', 0)

    # -- fio ---------------------------------------------------------------

    def fio(self, label, name, rw, seconds, iodepth, region=None):
        """Start fio's rbd engine on ``DST/name``; return the process.

        :param region: bytes from the image's start that fio works on
                       (default: the whole image).
        """
        prefix = os.path.join(self.directory, 'fio-%s' % label)
        args = ['fio', '--name=%s' % label, '--ioengine=rbd',
                '--clientname=%s' % self.cluster.client, '--pool=%s' % DST,
                '--rbdname=%s' % name, '--rw=%s' % rw, '--rwmixread=70',
                '--bs=4k', '--iodepth=%d' % iodepth, '--time_based',
                '--runtime=%d' % seconds, '--output-format=json',
                '--output=%s.json' % prefix,
                '--write_iops_log=%s' % prefix, '--log_avg_msec=1000']
        if region:
            args.append('--size=%d' % region)
        env = dict(os.environ, **self.cluster.env())
        proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        self.fio_procs.append(proc)
        return proc, prefix

    def fio_result(self, proc, prefix, seconds):
        """Wait for fio and read its report.

        :returns: a :class:`FioRun`.
        """
        try:
            _out, err = proc.communicate(timeout=seconds + 120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise BenchError('fio did not finish')
        self.fio_procs.remove(proc)
        if proc.returncode != 0:
            raise BenchError('fio failed (exit %d): %s' % (
                proc.returncode, err.decode(errors='replace')[-2000:]))
        with open(prefix + '.json') as f:
            result = json.load(f)
        job = result['jobs'][0]
        if job.get('error'):
            raise BenchError('fio job error %s' % job['error'])
        # fio stamps its report when the job ends; its log is relative
        # to the job's start
        return FioRun(job['read']['iops'], job['write']['iops'],
                      prefix + '_iops.1.log',
                      result['timestamp_ms'] - job['job_runtime'])

    def run_fio(self, label, name, rw, seconds, iodepth, region=None):
        proc, prefix = self.fio(label, name, rw, seconds, iodepth, region)
        return self.fio_result(proc, prefix, seconds)

    def fio_during_copy(self, label, name, rw, seconds, iodepth, lead=2.0):
        """fio on a destination whose copy starts ``lead`` s into the run.

        :returns: (:class:`FioRun`, the copy's (start, end) in ms since
                  the fio job's start).
        """
        proc, prefix = self.fio(label, name, rw, seconds, iodepth)
        # with writes, fio takes the exclusive lock first, as a hypervisor
        # would: librbd then runs the copy in that lock holder
        time.sleep(lead)
        if proc.poll() is not None:
            self.fio_result(proc, prefix, seconds)
            raise BenchError('fio ended before the copy started; give it '
                             'more than %.0f s' % lead)
        copy_from = time.time()
        self.wait_copy(self.start_copy(name))
        copy_to = time.time()
        run = self.fio_result(proc, prefix, seconds)
        self.engine.commit(self.io[DST], name)
        return run, (copy_from * 1000 - run.job_start,
                     copy_to * 1000 - run.job_start)


class FioRun(object):
    """IOPS of one fio run, and its per-second log."""

    def __init__(self, reads, writes, log_path, job_start):
        self.reads = reads
        self.writes = writes
        self.log_path = log_path
        self.job_start = job_start  # ms since the epoch

    def per_second(self):
        """IOPS of each second of the job: ``{0: {s: reads}, 1: {s: writes}}``.

        ``s`` is the end of the 1 s bucket, in seconds since the job's start.
        """
        buckets = {0: {}, 1: {}}
        with open(self.log_path) as f:
            for line in f:
                fields = [x.strip() for x in line.split(',')]
                if len(fields) < 3:
                    continue
                end, value, ddir = (int(fields[0]), int(fields[1]),
                                    int(fields[2]))
                if ddir in buckets:
                    buckets[ddir][end] = buckets[ddir].get(end, 0) + value
        # bucket ends drift by a few ms from run to run: match by second
        by_second = {0: {}, 1: {}}
        for ddir, values in buckets.items():
            for end, value in values.items():
                by_second[ddir][int(round(end / 1000.0))] = value
        return by_second

    def window(self, window):
        """Mean read and write IOPS of the 1 s buckets in ``window``.

        Buckets lying wholly inside the window (ms since the job's start)
        are averaged; when the window is shorter than a bucket, the
        buckets it overlaps are.

        :returns: (read IOPS, write IOPS, seconds the buckets cover).
        """
        start, stop = window
        by_second = self.per_second()
        seconds = sorted(set(by_second[0]) | set(by_second[1]))
        inside = [t for t in seconds
                  if (t - 1) * 1000 >= start and t * 1000 <= stop]
        if not inside:
            inside = [t for t in seconds
                      if t * 1000 > start and (t - 1) * 1000 < stop]
        if not inside:
            raise BenchError('no fio log bucket in the window %s' %
                             (window,))
        reads = statistics.mean(by_second[0].get(t, 0) for t in inside)
        writes = statistics.mean(by_second[1].get(t, 0) for t in inside)
        return reads, writes, len(inside)


def _mib(num_bytes):
    return num_bytes / units.Mi


def measure_copies(bench, repeat, url, warmup):
    """Copy times by source kind, the kinds interleaved run by run.

    The first ``warmup`` rounds are run and checked, but not counted.
    """
    times = {LINKED: [], FILE: [], HTTP: []}
    for run in range(-warmup, repeat):
        for kind in (LINKED, FILE, HTTP):
            took = bench.copy_by_kind(kind, run + warmup, url)
            if run >= 0:
                times[kind].append(took)
            print('  copy %-6s %s: %.3f s, sha256 ok' % (
                kind, 'run %d' % (run + 1) if run >= 0 else 'warm-up',
                took), flush=True)
    return times


def measure_caps(bench, caps, seconds, reference_seconds):
    rows = [('uncapped (reference, %d s)' % reference_seconds, 0,
             bench.read_rate(0, reference_seconds))]
    for cap in caps:
        rate = bench.read_rate(cap * units.Mi, seconds)
        rows.append(('cap %d MiB/s, %d s, 4 connections' % (cap, seconds),
                     cap * units.Mi, rate))
        print('  cap %d MiB/s: %.1f MiB/s' % (cap, _mib(rate)), flush=True)
    return rows


def measure_fio_once(bench, url, rw, run, seconds, iodepth):
    """One fio run on each kind of image, for one workload.

    :returns: ({state: (read IOPS, write IOPS, the same in the copy
              window)}, copy window in ms since the job's start).
    """
    runs = {SETTLED: bench.run_fio('%s-settled-%d' % (rw, run), SETTLED,
                                   rw, seconds, iodepth)}
    name = '%s-migrating-%d' % (rw, run)
    bench.prepare(HTTP, name, url)
    runs[IDLE] = bench.run_fio(name, name, rw, seconds, iodepth)
    if rw == 'randread':
        # nothing was written: every byte read through is checked
        bench.check_bytes(name)
    bench.engine.abort(bench.io[DST], name, force=True)
    name = '%s-copying-%d' % (rw, run)
    bench.prepare(HTTP, name, url)
    runs[COPYING], window = bench.fio_during_copy(name, name, rw, seconds,
                                                  iodepth)
    bench.drop(DST, name)
    sample = {}
    for state, fio_run in runs.items():
        in_copy = fio_run.window(window)
        sample[state] = (fio_run.reads, fio_run.writes) + in_copy[:2]
    print('  fio %s run %d: settled %.0f/%.0f, migrating %.0f/%.0f, copy '
          'running %.0f/%.0f IOPS (copy %.1f s)' % (
              rw, run + 1, runs[SETTLED].reads, runs[SETTLED].writes,
              runs[IDLE].reads, runs[IDLE].writes, runs[COPYING].reads,
              runs[COPYING].writes, (window[1] - window[0]) / 1000.0),
          flush=True)
    return sample, window


def measure_fio(bench, url, seconds, iodepth, repeat):
    """fio on settled, migrating and copying images, per workload.

    :returns: [(workload label, {state: medians of (read IOPS, write
              IOPS, the same in the copy window)}, [copy windows])].
    """
    results = []
    bench.write_image(DST, SETTLED)
    for rw, label in (('randrw', '70/30 mix'), ('randread', '100% read')):
        samples = {state: [] for state in STATE_LABELS}
        windows = []
        for run in range(repeat):
            sample, window = measure_fio_once(bench, url, rw, run, seconds,
                                              iodepth)
            windows.append(window)
            for state, values in sample.items():
                samples[state].append(values)
        medians = {state: tuple(statistics.median(col) for col in zip(*v))
                   for state, v in samples.items()}
        results.append((label, medians, windows))
    bench.drop(DST, SETTLED)
    return results


def _ratio(a, b):
    return a / b if b else float('nan')


def print_copies(times, size, repeat, warmup):
    med = {kind: statistics.median(v) for kind, v in times.items()}
    print()
    print('Copy of a %d MiB dense volume by source kind, worker start to '
          'commit done (median of %d after %d warm-up round(s); every '
          'destination sha256-checked)' % (_mib(size), repeat, warmup))
    print('%-36s %10s %10s   %s' % ('source', 'seconds', 'MiB/s', 'runs'))
    for kind in (LINKED, FILE, HTTP):
        print('%-36s %10.3f %10.1f   %s' % (
            KIND_LABELS[kind], med[kind], _mib(size) / med[kind],
            ', '.join('%.3f' % t for t in times[kind])))
    print('time ratios: exporter/linked %.2fx, file/linked %.2fx, '
          'exporter/file %.2fx (above 1: slower than the second)' % (
              med[HTTP] / med[LINKED], med[FILE] / med[LINKED],
              med[HTTP] / med[FILE]))


def print_caps(rows, capped, exec_cap, size):
    print()
    print('Exporter bandwidth cap (measure_read_rate; requirement: within '
          '+-10% over 30 s)')
    print('%-40s %12s %14s %9s' % ('reader', 'cap MiB/s', 'measured MiB/s',
                                   'error'))
    for what, cap, rate in rows:
        if cap:
            print('%-40s %12.1f %14.1f %+8.1f%%' % (
                what, _mib(cap), _mib(rate), 100.0 * (rate - cap) / cap))
        else:
            print('%-40s %12s %14.1f %9s' % (what, '-', _mib(rate), '-'))
    took, served = capped
    rate = size / took
    cap = exec_cap * units.Mi
    print('%-40s %12.1f %14.1f %+8.1f%%' % (
        'librbd execute, %d MiB in %.2f s' % (_mib(size), took), _mib(cap),
        _mib(rate), 100.0 * (rate - cap) / cap))
    print('(the exporter served %.1f MiB for that copy of %d MiB)' % (
        _mib(served), _mib(size)))


def _ratios(reads, writes, base_r, base_w):
    text = '%.2f' % _ratio(reads, base_r)
    if base_w:
        text += ' / %.2f' % _ratio(writes, base_w)
    return text


def print_fio(results, seconds, iodepth, repeat):
    print()
    print('fio rbd engine, 4k random IO, iodepth %d, %d s, medians of %d; '
          'migrating: an import-only destination reading through to the '
          'HTTP exporter' % (iodepth, seconds, repeat))
    print('%-44s %9s %9s %12s   %11s %11s %12s' % (
        'workload, image', 'read IOPS', 'write', 'vs settled',
        'copy: read', 'copy: write', 'vs settled'))
    for label, medians, windows in results:
        base = medians[SETTLED]
        for state in (SETTLED, IDLE, COPYING):
            reads, writes, copy_r, copy_w = medians[state]
            print('%-44s %9.0f %9.0f %12s   %11.0f %11.0f %12s' % (
                '%s, %s' % (label, STATE_LABELS[state]), reads, writes,
                _ratios(reads, writes, base[0], base[1]), copy_r, copy_w,
                _ratios(copy_r, copy_w, base[2], base[3])))
        print('  (%s: the copy ran %s s into the runs; the "copy:" '
              'columns average the whole seconds of that window in the '
              'three runs of a round)' % (label, ', '.join(
                  '%.1f-%.1f' % (a / 1000.0, b / 1000.0)
                  for a, b in windows)))


def _stop_on_sigterm(signum, frame):
    # unwinds like Ctrl-C, so that everything started is stopped
    raise SystemExit(128 + signum)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=3,
                        help='runs of each copy and fio measurement '
                             '(medians shown)')
    parser.add_argument('--warmup', type=int, default=1,
                        help='rounds of copies run first and not counted')
    parser.add_argument('--keep-dir', action='store_true',
                        help='keep the work directory (fio output, data '
                             'file, Ceph logs) instead of removing it')
    parser.add_argument('--size-mib', type=int, default=1024,
                        help='size of the dense volume')
    parser.add_argument('--cap-seconds', type=int, default=30,
                        help='seconds each capped exporter is read')
    parser.add_argument('--caps', type=int, nargs='+', default=[50, 200],
                        help='bandwidth caps to check, MiB/s')
    parser.add_argument('--exec-cap', type=int, default=100,
                        help='cap (MiB/s) of the exporter librbd copies '
                             'through')
    parser.add_argument('--fio-seconds', type=int, default=20)
    parser.add_argument('--iodepth', type=int, default=16)
    args = parser.parse_args(argv)
    size = args.size_mib * units.Mi

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    directory = tempfile.mkdtemp(prefix='asyncmig-bench-sources-')
    print('work directory %s' % directory, flush=True)
    with contextlib.ExitStack() as cleanup:
        if not args.keep_dir:
            cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
        data_path = os.path.join(directory, 'source.raw')
        data_sha256 = write_data_file(data_path, size)
        # peak: a linked source and its copy, or two fio images, plus
        # copy-ups and metadata
        cluster = ceph.CephCluster.up(
            os.path.join(directory, 'ceph'),
            memstore_bytes=max(4 * units.Gi, 5 * size), pools=[SRC, DST])
        cleanup.callback(cluster.down)
        if args.keep_dir:
            cleanup.callback(shutil.copytree,
                             os.path.join(cluster.directory, 'log'),
                             os.path.join(directory, 'ceph-log'))
        bench = SourceBench(cluster, directory, data_path, data_sha256)
        cleanup.callback(bench.close)

        source = bench.export('source')
        times = measure_copies(bench, args.repeat, source.url,
                               args.warmup)
        caps = measure_caps(bench, args.caps, args.cap_seconds, 10)
        capped = bench.capped_copy(args.exec_cap * units.Mi)
        print('  librbd through a %d MiB/s cap: %.2f s' % (
            args.exec_cap, capped[0]), flush=True)
        fio_results = measure_fio(bench, source.url, args.fio_seconds,
                                  args.iodepth, args.repeat)

    print_copies(times, size, args.repeat, args.warmup)
    print_caps(caps, capped, args.exec_cap, size)
    print_fio(fio_results, args.fio_seconds, args.iodepth,
              args.repeat)
    print()
    print('(one memstore OSD in RAM, loopback; %d CPUs)' % os.cpu_count())
    if args.keep_dir:
        print('kept %s' % directory)
    return 0


if __name__ == '__main__':
    sys.exit(main())
