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

"""Many volumes migrated at once to one target backend, via Cinder.

In one sandbox whose Ceph cluster keeps its data on disk (bluestore in a
sparse file), ``--volumes`` volumes of 1 GiB (a quarter of each written
with random data, spread over the volume) are created on the source RBD
backend, then all asked to migrate to the async target at once, with the
target's defaults (copy cap and copies at once). Reported:

* wall time from the first migrate call to the last ``success``, and the
  time to ``migrating_attachable`` (first, median, last), each from the
  volume's own call (the calls go out while the list is watched);
* how long the API took to answer each call, and from the target's log
  how long each take-over took and how many ran at once;
* peak and final RSS of the target cinder-volume with its children (the
  copy workers), sampled twice a second;
* the most copy workers seen at once, against the bound;
* fairness: the spread of the per-volume copy times (from leaving the line
  to ``success``) and of the per-volume times from the migrate call;
* that every volume ends in ``success`` with the sha256 of its data.

Usage: ``python bench/scale.py [--volumes N] [--disk-gib N]``.
"""

import argparse
import configparser
import contextlib
import datetime
import hashlib
import os
import re
import signal
import statistics
import sys
import tempfile
import threading
import time

from oslo_utils import units
import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sources  # noqa: E402  (the bench next to this one)

from cinder_asyncmig import opts  # noqa: E402
from cinder_asyncmig.sandbox import ceph  # noqa: E402
from cinder_asyncmig.sandbox import cloud  # noqa: E402
from cinder_asyncmig.sandbox import process  # noqa: E402
from cinder_asyncmig.volume import constants  # noqa: E402

CHUNK = 4 * units.Mi
SIZE = units.Gi
DENSITY = 4  # one chunk of every DENSITY is written
WORKER_MODULE = 'cinder_asyncmig.engine.worker'
SAMPLE_INTERVAL = 0.5
FINAL = ('success', 'error')


def create(sandbox, ioctx, count):
    """Create ``count`` volumes with data; return {id: sha256}."""
    import rbd
    # above Cinder's default quota of 10 volumes, as an operator would
    sandbox.set_quota(volumes=count + 10,
                      gigabytes=(count + 10) * SIZE // units.Gi)
    ids = [sandbox.api('POST', '/volumes', {'volume': {
        'size': SIZE // units.Gi, 'name': 'scale-%02d' % i}})['volume']['id']
        for i in range(count)]
    process.wait_for('%d volumes available' % count, lambda: all(
        v['status'] == 'available' for v in listed(sandbox, ids).values()),
        300, interval=1)
    digests = {}
    zeros = bytes(CHUNK)
    for volume_id in ids:
        digest = hashlib.sha256()
        with rbd.Image(ioctx, 'volume-%s' % volume_id) as image:
            for i in range(SIZE // CHUNK):
                if i % DENSITY == 0:
                    data = os.urandom(CHUNK)
                    image.write(data, i * CHUNK)
                else:
                    data = zeros
                digest.update(data)
        digests[volume_id] = digest.hexdigest()
    return digests


def listed(sandbox, ids):
    """The volumes of ``ids`` as the API lists them, by id."""
    wanted = set(ids)
    return {v['id']: v for v in sandbox.api(
        'GET', '/volumes/detail?limit=1000')['volumes'] if v['id'] in wanted}


class Sampler(threading.Thread):
    """RSS of the target service's process tree and its copy workers."""

    def __init__(self, service):
        super(Sampler, self).__init__(daemon=True)
        self.service = service
        self.peak_rss = 0
        self.last_rss = 0
        self.most_workers = 0
        self._done = threading.Event()

    def run(self):
        while not self._done.wait(SAMPLE_INTERVAL):
            rss, workers = 0, 0
            for pid in self.service.processes():
                try:
                    proc = psutil.Process(pid)
                    rss += proc.memory_info().rss
                    workers += WORKER_MODULE in ' '.join(proc.cmdline())
                except psutil.NoSuchProcess:
                    continue
            self.last_rss = rss
            self.peak_rss = max(self.peak_rss, rss)
            self.most_workers = max(self.most_workers, workers)

    def stop(self):
        self._done.set()
        self.join()


def migrate_all(sandbox, ids, timeout):
    """Migrate every volume at once; return per-volume times and states.

    The calls go out one after the other in a thread while this one polls
    the list, so that a volume's times count from its own call.
    """
    times = {volume_id: {} for volume_id in ids}
    started = time.monotonic()

    def ask():
        for volume_id in ids:
            times[volume_id]['asked'] = time.monotonic() - started
            sandbox.api('POST', '/volumes/%s/action' % volume_id,
                        {'os-migrate_volume': {
                            'host': sandbox.target_host,
                            'force_host_copy': False}})
            times[volume_id]['answered'] = time.monotonic() - started
    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    states = {}
    deadline = started + timeout
    while len(states) < len(ids) and time.monotonic() < deadline:
        now = time.monotonic() - started
        for volume_id, volume in listed(sandbox, ids).items():
            seen = times[volume_id]
            if 'asked' not in seen:
                continue
            status = volume['migration_status']
            progress = volume['metadata'].get(constants.PROGRESS_KEY, '')
            if status == constants.ATTACHABLE:
                seen.setdefault('attachable', now)
                if progress.startswith('queued') or 'copy_from' not in seen:
                    seen['copy_from'] = now
            if status in FINAL and volume_id not in states:
                states[volume_id] = status
                seen['done'] = now
                seen.setdefault('attachable', now)
                seen.setdefault('copy_from', now)
        time.sleep(SAMPLE_INTERVAL)
    asking.join(timeout=60)
    return times, states, time.monotonic() - started


_TAKEN_OVER = re.compile(
    r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) .* Volume (\S+) \(\d+ '
    r'bytes, .* source\) taken over from .* in ([\d.]+) ms')


def take_overs(service):
    """``(start, end)`` of every take-over the target's log records.

    In seconds; each line gives its end and how long it took.
    """
    spans = []
    with open(service.log, errors='replace') as f:
        for line in f:
            found = _TAKEN_OVER.match(line)
            if found:
                end = datetime.datetime.strptime(
                    found.group(1), '%Y-%m-%d %H:%M:%S.%f').timestamp()
                spans.append((end - float(found.group(3)) / 1000, end))
    return spans


def most_at_once(spans):
    """The most spans that overlap at one moment."""
    events = sorted([(start, 1) for start, _ in spans] +
                    [(end, -1) for _, end in spans])
    most = current = 0
    for _at, change in events:
        current += change
        most = max(most, current)
    return most


def spread(values):
    return 'min %.1f  median %.1f  max %.1f  (max/min %.2f)' % (
        min(values), statistics.median(values), max(values),
        max(values) / max(min(values), 0.001))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--volumes', type=int, default=50)
    parser.add_argument('--disk-gib', type=int, default=160,
                        help='size of the sparse file the OSD keeps its '
                             'data in')
    parser.add_argument('--timeout', type=int, default=3600)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, sources._stop_on_sigterm)
    directory = tempfile.mkdtemp(prefix='asyncmig-bench-')
    os.rmdir(directory)
    with contextlib.ExitStack() as cleanup:
        sandbox = cloud.Sandbox.up(directory,
                                   disk_bytes=args.disk_gib * units.Gi)
        cleanup.callback(sandbox.down)
        client = sandbox.ceph.connect()
        cleanup.callback(client.shutdown)
        env = sandbox.env()
        src = client.open_ioctx(env['ASYNCMIG_SOURCE_POOL'])
        cleanup.callback(src.close)
        dst = client.open_ioctx(env['ASYNCMIG_TARGET_POOL'])
        cleanup.callback(dst.close)
        target = sandbox.service(cloud.VOLUME_TARGET)
        bound = bound_of(target)
        began = time.monotonic()
        digests = create(sandbox, src, args.volumes)
        print('created %d volumes of %d GiB (1/%d written) in %.0f s' % (
            args.volumes, SIZE // units.Gi, DENSITY,
            time.monotonic() - began), flush=True)
        sampler = Sampler(target)
        sampler.start()
        times, states, wall = migrate_all(sandbox, list(digests),
                                          args.timeout)
        sampler.stop()
        wrong = [v for v in digests if states.get(v) != 'success' or
                 ceph.image_sha256(dst, 'volume-%s' % v) != digests[v]]
        spans = take_overs(target)

    ended = [t for v, t in times.items() if v in states]
    attachable = [t['attachable'] - t['asked'] for t in ended]
    total = [t['done'] - t['asked'] for t in ended]
    copy = [t['done'] - t['copy_from'] for t in ended]
    print()
    print('volumes                      %d of %d GiB, %d in success, '
          '%d wrong or unfinished' % (args.volumes, SIZE // units.Gi,
                                      sum(s == 'success' for s in
                                          states.values()), len(wrong)))
    answered = [t['answered'] - t['asked'] for t in times.values()
                if 'answered' in t]
    print('first migrate to last final  %.1f s' % wall)
    print('migrate calls                %d answered in %.1f s; each (s) %s' % (
        len(answered), max(t.get('answered', 0) for t in times.values()),
        spread(answered)))
    print('to migrating_attachable (s)  %s' % spread(attachable))
    if spans:
        print('take-overs on the target     %d; each (s) %s; at most %d at '
              'once; first start to last end %.1f s' % (
                  len(spans), spread([end - start for start, end in spans]),
                  most_at_once(spans),
                  max(e for _, e in spans) - min(s for s, _ in spans)))
    print('migrate call to success (s)  %s' % spread(total))
    print('copy time per volume (s)     %s' % spread(copy))
    print('copy workers at once         %d (bound %s)' % (
        sampler.most_workers, bound))
    print('target RSS with children     peak %d MiB, final %d MiB' % (
        sampler.peak_rss // units.Mi, sampler.last_rss // units.Mi))
    return 1 if wrong else 0


def bound_of(service):
    """The target's async_migration_max_concurrent_copies."""
    name = 'async_migration_max_concurrent_copies'
    config = configparser.ConfigParser(interpolation=None)
    config.read(service.config)
    for section in config.sections():
        if config.has_option(section, name):
            return config.get(section, name)
    return '%d (default)' % opts.target_default(name)


if __name__ == '__main__':
    sys.exit(main())
