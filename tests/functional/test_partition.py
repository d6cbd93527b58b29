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

"""The copying host cut off from the cluster mid-copy, then healed.

Three hosts on a network of the test's own (:mod:`netns`):

- ``target``, this process: the target driver and its copy worker;
- ``ceph``, a namespace: the cluster of the source and the destination
  (a linked migration), its daemons on the namespace's address;
- ``hypervisor``, a namespace: a librbd client reading the volume at
  random while the copy runs, each block checked, and holding its
  exclusive lock as a hypervisor whose guest writes does
  (:data:`base.HYPERVISOR_READER`).

The partition drops every packet between ``target`` and ``ceph`` for
longer than an OSD keeps a lost client's watch (30 s).
"""

import os
import random
import shutil
import sys
import tempfile
import threading
import time

from oslo_utils import units
import rbd
import testtools
from testtools import content

from cinder_asyncmig import children
from cinder_asyncmig.engine import worker as copy_worker
from cinder_asyncmig.sandbox import ceph
from cinder_asyncmig.sandbox import netns
from cinder_asyncmig.sandbox import roots
from cinder_asyncmig.volume import manager
from cinder_asyncmig.volume import throttle
from tests.functional import base

# the volume, and the copy's cap: its copy outlasts the partition
_SIZE = 512 * units.Mi
_CAP = 8 * units.Mi
# seconds the partition lasts: past osd_client_watch_timeout (30 s)
_PARTITION = 40
# bytes one batch of librbd's concurrent object copies may still land
# once the partition starts (10 objects of 4 MiB)
_IN_FLIGHT = 40 * units.Mi
# seconds a copy may make no progress before its attempt ends (600 s by
# default): no attempt of a copy the partition stalled reaches it, as the
# lock holder is asked again after the second
_STALL = 300
_HOLDER_STALL = 30
# seconds between attempts of the completion, as the manager's first
_RETRY_AFTER = 2


@testtools.skipUnless(shutil.which('nft') and shutil.which('ip'),
                      'needs iproute2 and nftables')
class PartitionTest(base.FunctionalTestCase):

    TARGET_OPTIONS = {'async_migration_stall_timeout': _STALL,
                      'async_migration_lock_holder_stall_timeout':
                          _HOLDER_STALL}

    @classmethod
    def make_cluster(cls):
        cls.network = netns.Network.make(['target', 'ceph', 'hypervisor'])
        directory = tempfile.mkdtemp(prefix='ceph-', dir=base._test_dir())
        os.rmdir(directory)
        try:
            return ceph.CephCluster.up(
                directory, memstore_bytes=4 * units.Gi,
                address=cls.network.address('ceph'),
                netns=cls.network.hosts['ceph']['netns'])
        except BaseException:
            cls.network.down()
            raise

    @classmethod
    def tearDownClass(cls):
        super(PartitionTest, cls).tearDownClass()
        cls.cluster.down()
        cls.network.down()

    def setUp(self):
        super(PartitionTest, self).setUp()
        self.rng = random.Random(self.id())

    def hypervisor_reading(self, volume):
        """A librbd client reading ``volume`` from the hypervisor.

        :returns: its log (:func:`base.checked_reads`).
        """
        log = os.path.join(self.state_dir, 'hypervisor.log')
        argv, env = roots.command(roots.current(), [
            sys.executable, '-c', base.HYPERVISOR_READER,
            self.cluster.conf_path, self.cluster.client, self.dst_pool,
            volume.name, 'lock'])
        reader = children.Child.spawn(self.network.argv('hypervisor', argv),
                                      log, env=env)
        self.addCleanup(reader.stop, 10)
        return log

    def complete(self, volume, watch):
        """Complete as the manager does: again after an error that heals.

        :returns: the final progress and the errors of the failed attempts.
        """
        errors = []
        while True:
            try:
                return self.target_driver.complete_migration_target(
                    self.ctxt, volume, watch), errors
            except Exception as exc:
                if not manager._can_heal(exc) or len(errors) > 60:
                    raise
                errors.append(exc)
                time.sleep(_RETRY_AFTER)

    def partition_mid_copy(self, hypervisor):
        """Cut the target host off the cluster at 10% of the copy.

        :returns: the migration's facts, once it ended in ``success``.
        """
        volume = self.make_volume(size_bytes=_SIZE)
        model = base.ImageModel(_SIZE)
        base.fill_with_holes(model, self.src_ioctx, volume.name, self.rng,
                             density=1.0)
        self.assertEqual((True, True, {}),
                         self.target_driver.migrate_volume_target(
                             self.ctxt, volume, self.src_host()))
        volume.metadata = {throttle.RATE_KEY: str(_CAP)}
        if hypervisor:
            reader_log = self.hypervisor_reading(volume)
        status_path = self.target_driver._status_path(volume.name)
        facts = {'window': [], 'samples': [], 'workers': set(),
                 'copy_in': set()}
        window = facts['window']

        def heal():
            self.network.heal('target')
            window.append(time.monotonic())
            # the rest at full speed
            volume.metadata = {}
            self.target_driver.set_copy_rate(volume, 0)

        def watch(progress):
            if progress.get('phase') != 'copying':
                return
            facts['samples'].append((time.monotonic(),
                                     progress['bytes_copied']))
            facts['copy_in'].add(progress.get('copy_in'))
            facts['workers'].add(
                copy_worker.read_status(status_path).get('pid'))
            if not window and progress['percent'] >= 10:
                self.network.partition('target', 'ceph')
                window.append(time.monotonic())
                threading.Timer(_PARTITION, heal).start()
        self.addCleanup(self.network.heal, 'target')

        final, facts['errors'] = self.complete(volume, watch)

        self.assertEqual('success', final['phase'])
        self.assertEqual(2, len(window), 'the partition never healed')
        self.assertEqual([], [e for e in facts['errors']
                              if 'no progress for' in str(e)])
        cut, healed = window
        self.addDetail('partition', content.text_content(
            'cut at %.1f s of the copy, healed %.1f s later; success %.1f s '
            'after the heal; attempts that failed meanwhile: %s' % (
                cut - facts['samples'][0][0], healed - cut,
                time.monotonic() - healed,
                [str(e) for e in facts['errors']])))
        facts['workers'].discard(None)
        self.assertEqual([], [pid for pid in facts['workers']
                              if children.alive(pid)])
        self.assertEqual(model.sha256(),
                         base.image_sha256(self.dst_ioctx, volume.name))
        self.assertNotIn(volume.name, rbd.RBD().list(self.src_ioctx))
        self.assertEqual([], [n for n in os.listdir(self.state_dir)
                              if volume.name in n])
        if hypervisor:
            reads = base.checked_reads(reader_log, model)
            # every block the hypervisor read was the volume's
            self.assertEqual([], [when for when, correct in reads
                                  if not correct])
            # the window is in time.monotonic(), the reads in time.time()
            wall = time.time() - time.monotonic()
            facts['reads'] = base.reads_per_second(reads, cut + wall,
                                                   healed + wall)
            self.addDetail('reads', content.text_content(
                'per second during the partition: %s' % facts['reads']))
        return facts

    def test_copying_host_cut_off_from_the_cluster(self):
        if roots.current() != roots.HOST:
            # for time: the e2e test of the same partition, with real
            # services, runs there too
            self.skipTest('the driver-level partition runs on the host\'s '
                          'release (%s)' % roots.HOST)
        facts = self.partition_mid_copy(hypervisor=False)
        cut, healed = facts['window']
        # the copy stood still but what was in flight, and went on once
        # healed: the worker's librados resent its requests
        during = [copied for at, copied in facts['samples']
                  if cut < at < healed]
        self.assertLessEqual(max(during) - min(during), _IN_FLIGHT)
        self.assertEqual({None}, facts['copy_in'])
        # the completion could not reach the cluster and tried again; the
        # worker's watch lapsed meanwhile, so its execute ended with
        # ESHUTDOWN once healed, and a later attempt started another
        # worker, which finished the copy
        self.assertTrue(facts['errors'])

    def test_copying_host_cut_off_while_a_hypervisor_reads(self):
        if roots.current() != 'tentacle':
            # for time: on 16.2 the e2e test of the same partition has a
            # hypervisor reading through it too
            self.skipTest('the lock holder\'s partition runs on 20.2')
        facts = self.partition_mid_copy(hypervisor=True)
        # the hypervisor holds the image's exclusive lock: the copy ran
        # in it, which the partition did not cut off, and its reads went
        # on throughout
        self.assertIn(self.network.address('hypervisor'),
                      ' '.join(filter(None, facts['copy_in'])))
        self.assertTrue(any(facts['reads'][5:-5]),
                        'the hypervisor read nothing during the partition')
