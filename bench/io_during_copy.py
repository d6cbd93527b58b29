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

"""IO on a volume while its background copy runs, by copy cap, in one run.

On one throwaway cluster (cephx on, memstore), for a dense volume taken
over by the linked kind (an RBD image in another pool) and by an
import-only kind (a raw file stream of the same bytes):

- fio's rbd engine, 4k random IO, iodepth 16, on the first 128 MiB of the
  volume (a working set: random writes over a whole volume copy every
  object up within seconds, leaving the copy nothing to do): a 70/30 mix
  and 100% reads, on a settled image holding the same data (the
  reference), then on the destination while its copy runs, once per cap:
  off, the default (``async_migration_copy_max_bytes_per_sec``) and others;
- the same on the settled image while another image copies beside it: what
  the copy's load on the cluster alone costs, the best the volume itself
  can hope for;
- fio runs from a few seconds before the copy's start until after its end;
  the copy window is from the copy worker's start until librbd records the
  copy done (``executed``). Every second of the window counts: the tables
  give the median of the per-second IOPS as a ratio to the settled image's
  median, and the copy's rate against the uncapped one.

fio's writes take the image's exclusive lock before the copy starts, as a
hypervisor's would, and librbd then runs the copy in fio's librbd (the
proxied path): there the cap cannot hold, and a capped copy runs with
``async_migration_lock_holder_copy_ops`` object copies at once instead.
Reads take the lock too: librbd copies an object up on the first read of a
migrating image. The table says where each copy ran. Each row also gives
the IOPS of the seconds just before the copy started, against which the
window compares too: the settled image drifts over a run.

It runs on the host's Ceph release and on Tentacle, in its Debian root
(``--release`` to choose), and writes a plot of IOPS over time per release
(``--plot``) and a table per release. The last line reads
``io-during-copy default: mix M of settled, read R of settled, copy C% of
unthrottled`` for the linked kind on the first release, where C compares
the median copy rate of its two workloads at the default cap with that
uncapped; the same line for the other releases comes just before it.

Usage: ``python bench/io_during_copy.py [--size-mib N] [--caps MIB ...]
[--release NAME ...]``.
"""

import argparse
import contextlib
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

from cinder_asyncmig.engine import state  # noqa: E402
from cinder_asyncmig.engine import worker as copy_worker  # noqa: E402
from cinder_asyncmig import opts  # noqa: E402
from cinder_asyncmig.sandbox import ceph  # noqa: E402
from cinder_asyncmig.sandbox import roots  # noqa: E402

KINDS = (sources.LINKED, sources.FILE)
BESIDE = 'beside'
KIND_LABELS = {sources.LINKED: 'linked',
               sources.FILE: 'import-only (raw file stream)',
               BESIDE: 'settled image, another image copying (linked)'}
WORKLOADS = (('randrw', 'mix', '70/30 mix'), ('randread', 'read', '100% read'))
LEAD = 3.0
TAIL = 2.0
SETTLED_SECONDS = 12
# measured in its Debian root besides the host's release
ROOT_RELEASE = 'tentacle'
PLOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results',
                    'io-during-copy.png')


def _label(cap):
    return 'off' if not cap else '%d MiB/s' % (cap // units.Mi)


def _totals(run):
    """Read plus write IOPS of each second of a fio run."""
    by_second = run.per_second()
    seconds = sorted(set(by_second[0]) | set(by_second[1]))
    return [(t, by_second[0].get(t, 0) + by_second[1].get(t, 0))
            for t in seconds]


def _stop_fio(bench, proc, prefix):
    """End a time-based fio run now; return its :class:`sources.FioRun`.

    fio ends on SIGINT with its report written, exit status 128, and a
    line before the JSON.
    """
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    bench.fio_procs.remove(proc)
    with open(prefix + '.json') as f:
        text = f.read()
    result = json.loads(text[text.index('{'):])
    job = result['jobs'][0]
    if job.get('error'):
        raise sources.BenchError('fio job error %s' % job['error'])
    return sources.FioRun(job['read']['iops'], job['write']['iops'],
                          prefix + '_iops.1.log',
                          result['timestamp_ms'] - job['job_runtime'])


def settled(bench, rw, iodepth, region):
    """Median per-second IOPS on the settled image, first second out."""
    run = bench.run_fio('settled-%s' % rw, sources.SETTLED, rw,
                        SETTLED_SECONDS, iodepth, region)
    return statistics.median(iops for t, iops in _totals(run) if t > 1)


def _copy(bench, name, cap):
    """Run the copy.

    :returns: when librbd recorded it done (time.time()), and whether it
              ran in the client holding the image's lock (fio).
    """
    job = bench.start_copy(name, cap)
    executed = None
    proxied = False
    while True:
        status = bench.engine.status(bench.io[sources.DST], name)
        if executed is None and status.state is state.MigrationState.EXECUTED:
            executed = time.time()
        report = job.read()
        proxied = proxied or bool(report.get('copy_in'))
        if report.get('phase') == copy_worker.DONE:
            break
        if report.get('phase') == copy_worker.FAILED or not job.running():
            raise sources.BenchError('copy worker of %s failed: %s' % (
                name, report))
        time.sleep(0.05)
    ended = time.time()
    job.stop()
    bench.workers.remove(job)
    return executed or ended, proxied


def during_copy(bench, kind, rw, cap, iodepth, region, on_settled=False):
    """fio on a destination from before its copy starts until it ends.

    :param on_settled: fio works on the settled image instead, beside the
                       copy: what the copy's load alone costs.
    :returns: dict of the copy's seconds and rate, where it ran, the
              per-second IOPS of the copy window (seconds since the copy's
              start) and their median.
    """
    name = 'io-%s-%s-%s%s' % (kind, rw, cap // units.Mi,
                              '-beside' if on_settled else '')
    bench.prepare(kind, name)
    proc, prefix = bench.fio(name, sources.SETTLED if on_settled else name,
                             rw, 3600, iodepth, region)
    time.sleep(LEAD)
    if proc.poll() is not None:
        bench.fio_result(proc, prefix, 0)
        raise sources.BenchError('fio ended before the copy started')
    started = time.time()
    ended, proxied = _copy(bench, name, cap)
    time.sleep(TAIL)
    run = _stop_fio(bench, proc, prefix)
    bench.engine.commit(bench.io[sources.DST], name)
    if rw == 'randread' or on_settled:
        bench.check_bytes(name)
    bench.drop(sources.DST, name)
    start = (started * 1000 - run.job_start) / 1000.0
    stop = (ended * 1000 - run.job_start) / 1000.0
    totals = _totals(run)
    # whole seconds inside the window; a window shorter than a second
    # takes the seconds it overlaps
    # whole seconds before the copy, the first of fio's left out
    before = [iops for t, iops in totals if start - LEAD + 1 < t <= start]
    inside = [(t, iops) for t, iops in totals if t - 1 >= start and t <= stop]
    if not inside:
        inside = [(t, iops) for t, iops in totals
                  if t > start and t - 1 < stop]
    return {'seconds': ended - started,
            'rate': bench.size / (ended - started),
            'proxied': proxied,
            'series': [(t - start, iops) for t, iops in totals],
            'window': stop - start,
            'before': statistics.median(before) if before else None,
            'median': statistics.median(iops for _t, iops in inside)}


def measure(bench, caps, iodepth, region):
    """{(kind, workload): {cap: result}} and {workload: settled IOPS}.

    The kind ``BESIDE`` is fio on the settled image while a linked copy of
    another image runs: the load the copy puts on the cluster.
    """
    bench.write_image(sources.DST, sources.SETTLED)
    reference = {key: settled(bench, rw, iodepth, region)
                 for rw, key, _label_text in WORKLOADS}
    results = {}
    for kind in KINDS + (BESIDE,):
        for rw, key, _label_text in WORKLOADS:
            for cap in caps:
                result = during_copy(
                    bench, sources.LINKED if kind == BESIDE else kind, rw,
                    cap, iodepth, region, on_settled=kind == BESIDE)
                results.setdefault((kind, key), {})[cap] = result
                print('  %s, %s, cap %s: copy %.1f s (%.0f MiB/s%s), median '
                      '%.0f IOPS (settled %.0f)' % (
                          kind, key, _label(cap), result['seconds'],
                          result['rate'] / units.Mi,
                          ', in fio' if result['proxied'] else '',
                          result['median'], reference[key]),
                      file=sys.stderr, flush=True)
    bench.drop(sources.DST, sources.SETTLED)
    return results, reference


def plot(results, reference, caps, default, path):
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot

    kinds = KINDS + (BESIDE,)
    figure, axes = pyplot.subplots(len(kinds), len(WORKLOADS),
                                   figsize=(13, 4 * len(kinds)),
                                   squeeze=False)
    colors = pyplot.rcParams['axes.prop_cycle'].by_key()['color']
    for row, kind in enumerate(kinds):
        for col, (_rw, key, title) in enumerate(WORKLOADS):
            ax = axes[row][col]
            for i, cap in enumerate(caps):
                result = results[(kind, key)][cap]
                color = colors[i % len(colors)]
                label = _label(cap) + (' (default)' if cap == default else '')
                xs = [t for t, _ in result['series']]
                ys = [iops for _, iops in result['series']]
                ax.plot(xs, ys, color=color, label=label, linewidth=1.2)
                ax.axvline(result['window'], color=color, linestyle='--',
                           linewidth=0.8)
            ax.axvline(0, color='black', linewidth=0.8)
            ax.axhline(reference[key], color='black', linestyle=':',
                       label='settled image')
            ax.set_title('%s: %s' % (KIND_LABELS[kind], title), fontsize=10)
            ax.set_xlabel('seconds since the copy started (dashed: its '
                          'end, per cap)')
            ax.set_ylabel('IOPS (4k, read + write)')
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=8)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=90)


def report(release, results, reference, caps, default, size):
    """Print the table of one release; return its summary line."""
    print()
    print('%s: IO during the copy of a %d MiB dense volume: median of the '
          'per-second IOPS over the copy window, as a ratio to a settled '
          'image (%s)' % (
              release, size // units.Mi,
              ', '.join('%s %.0f IOPS' % (key, reference[key])
                        for _rw, key, _t in WORKLOADS)))
    print()
    print('| kind | workload | cap | copy runs in | copy (s) | copy MiB/s '
          '| copy vs off | median IOPS | ratio to settled | IOPS before '
          '| ratio to before |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    for kind in KINDS + (BESIDE,):
        for _rw, key, title in WORKLOADS:
            off = results[(kind, key)][0]['rate']
            for cap in caps:
                r = results[(kind, key)][cap]
                before = r.get('before')
                print('| %s | %s | %s%s | %s | %.1f | %.0f | %.0f%% | %.0f | '
                      '%.2f | %s | %s |' % (
                          KIND_LABELS[kind], title, _label(cap),
                          ' (default)' if cap == default else '',
                          'fio (lock holder)' if r['proxied'] else 'worker',
                          r['seconds'], r['rate'] / units.Mi,
                          100.0 * r['rate'] / off, r['median'],
                          r['median'] / reference[key],
                          '%.0f' % before if before else '-',
                          '%.2f' % (r['median'] / before) if before else '-'))
    print()
    print('(one memstore OSD in RAM, loopback; %d CPUs)' % os.cpu_count())
    linked = {key: results[(sources.LINKED, key)]
              for _rw, key, _t in WORKLOADS}
    copy = statistics.median(
        linked[key][default]['rate'] / linked[key][0]['rate']
        for key in linked)
    return ('io-during-copy default: mix %.2f of settled, read %.2f of '
            'settled, copy %.0f%% of unthrottled' % (
                linked['mix'][default]['median'] / reference['mix'],
                linked['read'][default]['median'] / reference['read'],
                100 * copy))


def measure_here(size, caps, iodepth, region):
    """Measure on a throwaway cluster of this process's Ceph release."""
    signal.signal(signal.SIGTERM, sources._stop_on_sigterm)
    directory = tempfile.mkdtemp(prefix='asyncmig-bench-io-')
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
        data_path = os.path.join(directory, 'source.raw')
        data_sha256 = sources.write_data_file(data_path, size)
        # a linked source, its destination and the settled image
        cluster = ceph.CephCluster.up(
            os.path.join(directory, 'ceph'),
            memstore_bytes=max(4 * units.Gi, 5 * size),
            pools=[sources.SRC, sources.DST])
        cleanup.callback(cluster.down)
        bench = sources.SourceBench(cluster, directory, data_path,
                                    data_sha256)
        cleanup.callback(bench.close)
        return measure(bench, caps, iodepth, region)


def _encode(results):
    return [[kind, key, cap, result]
            for (kind, key), by_cap in results.items()
            for cap, result in by_cap.items()]


def _decode(rows):
    results = {}
    for kind, key, cap, result in rows:
        results.setdefault((kind, key), {})[cap] = result
    return results


def _measure_in_root(release, argv):
    """Run this bench in the root of ``release``; return its results."""
    roots.build(release)
    python = os.path.join(roots.VENV, 'bin', 'python')
    # its progress on stderr, shown as it comes; its results on stdout
    found = roots.run(release, [python, os.path.abspath(__file__), '--one'] +
                      argv, check=False, stdout=subprocess.PIPE, text=True)
    if found.returncode:
        raise sources.BenchError('%s: the bench failed (exit %d)' % (
            release, found.returncode))
    rows, reference = json.loads(found.stdout.strip().splitlines()[-1])
    return _decode(rows), reference


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size-mib', type=int, default=1024)
    parser.add_argument('--caps', type=int, nargs='+', default=[32, 256],
                        help='caps (MiB/s) besides off and the default')
    parser.add_argument('--iodepth', type=int, default=16)
    parser.add_argument('--region-mib', type=int, default=128,
                        help='MiB from the volume\'s start that fio works on')
    parser.add_argument('--release', action='append',
                        choices=list(roots.RELEASES),
                        help='Ceph release to measure on; repeat for more '
                             '(default: the host\'s, then %s)' % ROOT_RELEASE)
    parser.add_argument('--plot', default=PLOT,
                        help='PNG file of IOPS over time; one per release, '
                             'the release\'s name before its extension')
    parser.add_argument('--one', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size = args.size_mib * units.Mi
    default = opts.target_default('async_migration_copy_max_bytes_per_sec')
    caps = sorted({0, default} | {c * units.Mi for c in args.caps})
    region = args.region_mib * units.Mi
    if args.one:
        results, reference = measure_here(size, caps, args.iodepth, region)
        json.dump([_encode(results), reference], sys.stdout)
        return 0

    releases = args.release or [roots.current(), ROOT_RELEASE]
    child = ['--size-mib', str(args.size_mib), '--iodepth',
             str(args.iodepth), '--region-mib', str(args.region_mib),
             '--caps'] + [str(c) for c in args.caps]
    lines = []
    for release in releases:
        print('%s:' % release, flush=True)
        if release == roots.current():
            results, reference = measure_here(size, caps, args.iodepth,
                                              region)
        else:
            results, reference = _measure_in_root(release, child)
        stem, ext = os.path.splitext(args.plot)
        path = '%s-%s%s' % (stem, release, ext)
        plot(results, reference, caps, default, path)
        print('plot: %s' % path)
        lines.append((release, report(release, results, reference, caps,
                                      default, size)))
    print()
    for release, line in lines[1:]:
        print('%s: %s' % (release, line))
    # the first release's last, on a line of its own
    print(lines[0][1])
    return 0


if __name__ == '__main__':
    sys.exit(main())
