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

"""Failover of an active-active target: the copying member dies for good.

In one sandbox whose target backend is a Cinder cluster of two volume
services on etcd (``--target-cluster``), volumes of 1 GiB (70% written)
migrate with their copy capped (``--cap-mib`` MiB/s), side by side:

* the anchor: a migration nothing disturbs;
* ``--runs`` migrations whose copying member is SIGKILLed a few seconds
  into the copy, and left down until the migration ends.

Reported per run: the time from the kill to the peer's take-over (the
volume's host turns to the peer), the time from the migrate call to
``success`` against the anchor's, and that the sha256 is the same. The
last line reads ``failover: take-over median T s (min A, max B) over N
runs, to success R x the undisturbed migration``.

Usage: ``python bench/failover.py [--runs N] [--cap-mib N]``; the host's
Ceph release only (etcd is a package of the host).
"""

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import time

from oslo_utils import units
import rbd

from cinder_asyncmig.sandbox import ceph
from cinder_asyncmig.sandbox import cloud
from cinder_asyncmig.sandbox import process
from cinder_asyncmig.volume import constants
from cinder_asyncmig.volume import throttle

_MEMBERS = (cloud.VOLUME_TARGET, cloud.VOLUME_TARGET_PEER)
_CHUNK = 4 * units.Mi


class Bench(object):

    def __init__(self, sandbox, cap):
        self.sandbox = sandbox
        self.cap = cap
        env = sandbox.env()
        self.src_pool = env['ASYNCMIG_SOURCE_POOL']
        self.dst_pool = env['ASYNCMIG_TARGET_POOL']
        self.volume_type = env['ASYNCMIG_MIGRATABLE_TYPE']
        self.rados = sandbox.ceph.connect()
        self.ioctx = {p: self.rados.open_ioctx(p)
                      for p in (self.src_pool, self.dst_pool)}

    def close(self):
        for ioctx in self.ioctx.values():
            ioctx.close()
        self.rados.shutdown()

    def volume(self, volume_id):
        return self.sandbox.api('GET', '/volumes/%s' % volume_id)['volume']

    def wait(self, volume_id, what, predicate, timeout=600):
        process.wait_for('volume %s %s' % (volume_id, what),
                         lambda: predicate(self.volume(volume_id)),
                         timeout, interval=0.25)
        return self.volume(volume_id)

    def members_up(self):
        for name in _MEMBERS:
            service = self.sandbox.service(name)
            if not service.running():
                service.start()
                self.sandbox.wait_service_up(name, timeout=120)

    def migrate(self, seed, kill):
        """One migration; returns (take-over s or None, to success s)."""
        self.members_up()
        volume_id = self.sandbox.api('POST', '/volumes', {'volume': {
            'size': 1, 'name': 'failover-%d' % seed,
            'volume_type': self.volume_type,
            'metadata': {throttle.RATE_KEY: str(self.cap)}}})['volume']['id']
        self.wait(volume_id, 'available',
                  lambda v: v['status'] == 'available')
        name = 'volume-%s' % volume_id
        rng = random.Random(seed)
        with rbd.Image(self.ioctx[self.src_pool], name) as image:
            for offset in range(0, units.Gi, _CHUNK):
                if rng.random() < 0.7:
                    image.write(rng.randbytes(_CHUNK), offset)
        expected = ceph.image_sha256(self.ioctx[self.src_pool], name,
                                     units.Gi)
        started = time.monotonic()
        self.sandbox.api('POST', '/volumes/%s/action' % volume_id, {
            'os-migrate_volume': {'host': self.sandbox.target_host,
                                  'force_host_copy': False}})
        takeover = None
        if kill:
            volume = self.wait(volume_id, 'copying', lambda v: not v[
                'metadata'].get(constants.PROGRESS_KEY, '0.0%').startswith(
                    ('0.0%', 'queued')))
            host = volume['os-vol-host-attr:host'].split('#')[0]
            owner = [self.sandbox.service(n) for n in _MEMBERS
                     if self.sandbox.service(n).host == host][0]
            time.sleep(rng.uniform(0, 5))
            os.kill(owner.pid, signal.SIGKILL)
            killed = time.monotonic()
            self.wait(volume_id, 'taken over',
                      lambda v: v['os-vol-host-attr:host'].split('#')[0] !=
                      host)
            takeover = time.monotonic() - killed
        volume = self.wait(volume_id, 'migrated', lambda v: v[
            'migration_status'] in ('success', 'error'))
        done = time.monotonic() - started
        same = expected == ceph.image_sha256(self.ioctx[self.dst_pool], name,
                                             units.Gi)
        if volume['migration_status'] != 'success' or not same:
            raise RuntimeError('volume %s ended %s, sha256 %s' % (
                volume_id, volume['migration_status'],
                'equal' if same else 'different'))
        self.sandbox.api('DELETE', '/volumes/%s' % volume_id)
        return takeover, done


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--cap-mib', type=int, default=16)
    args = parser.parse_args()
    sandbox = cloud.Sandbox.up(tempfile.mkdtemp(prefix='bench-failover-'),
                               target_cluster=True)
    bench = Bench(sandbox, args.cap_mib * units.Mi)
    try:
        _none, anchor = bench.migrate(0, kill=False)
        print('%-22s %10s %12s %8s' % ('migration', 'take-over', 'to success',
                                       'ratio'))
        print('%-22s %10s %11.1fs %8s' % ('undisturbed (anchor)', '-',
                                          anchor, '1'))
        takeovers, ratios = [], []
        for run in range(1, args.runs + 1):
            takeover, done = bench.migrate(run, kill=True)
            takeovers.append(takeover)
            ratios.append(done / anchor)
            print('%-22s %9.1fs %11.1fs %7.2fx' % (
                'owner killed, run %d' % run, takeover, done, ratios[-1]),
                flush=True)
        print('failover: take-over median %.1f s (min %.1f, max %.1f) over '
              '%d runs, to success %.2fx the undisturbed migration' % (
                  statistics.median(takeovers), min(takeovers),
                  max(takeovers), len(takeovers), statistics.median(ratios)))
    finally:
        bench.close()
        sandbox.down()
    return 0


if __name__ == '__main__':
    sys.exit(main())
