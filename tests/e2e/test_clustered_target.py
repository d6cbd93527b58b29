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

"""Faults that need a sandbox closer to a production cloud.

- The target backend is a Cinder cluster (``[DEFAULT] cluster =
  asyncmig-target``) of two volume services, on the hosts ``sandbox`` and
  ``sandbox-peer``, every service on Cinder's coordination through etcd.
  The host copying a volume dies for good; the other completes the
  migration, the dead host's copy worker fenced.
- Ceph's OSD keeps its data on disk (bluestore in a file), so that it can
  be killed and started again, and a ceph-mgr reports the pools' usage,
  which pool quotas need.

Each case ends in ``success`` with the same bytes (sha256), writes made
during the migration included, and nothing left running.
"""

import json
import os
import signal
import time

from oslo_utils import units
import rbd
from testtools import content

from cinder_asyncmig import children
from cinder_asyncmig.sandbox import cinderconf
from cinder_asyncmig.sandbox import cloud
from cinder_asyncmig.sandbox import etcd
from cinder_asyncmig.sandbox import process
from cinder_asyncmig.sandbox import roots
from cinder_asyncmig import settings
from cinder_asyncmig.volume import constants
from cinder_asyncmig.volume import throttle
from tests.e2e import test_async_migration as base_e2e

_WORKER = 'cinder_asyncmig.engine.worker'
# the copy's cap while the owner dies: slow enough that the copy outlasts
# the failover, which waits for the dead owner's lock to lapse
_SLOW = 8 * units.Mi
# the OSD's disk: a sparse file, written as the volumes fill it
_DISK = 16 * units.Gi
# seconds the OSD stays down once killed
_OSD_DOWN_FOR = 10
# room left in the target pool when its quota is set mid-copy
_ROOM = 32 * units.Mi


class ClusteredTargetTest(base_e2e.SandboxTestCase):

    SANDBOX = {'target_cluster': True, 'disk_bytes': _DISK,
               'with_mgr': True}
    SERVICES = (cloud.VOLUME_TARGET, cloud.VOLUME_TARGET_PEER)

    @classmethod
    def setUpClass(cls):
        if roots.current() != roots.HOST:
            # etcd is a package of the host; what these cases test does not
            # depend on the Ceph release
            raise cls.skipException(
                'the clustered target runs on the host\'s release only '
                '(%s)' % roots.HOST)
        super(ClusteredTargetTest, cls).setUpClass()

    # -- helpers ---------------------------------------------------------

    def lift_cap(self, volume_id):
        """The rest of the copy at full speed: the fault is over."""
        self.api('DELETE', '/volumes/%s/metadata/%s' % (volume_id,
                                                        throttle.RATE_KEY))

    def progress(self, volume_id):
        return self.volume(volume_id)['metadata'].get(constants.PROGRESS_KEY)

    def assert_migrated_here(self, volume_id, model, host=None):
        """``success`` on the cluster, same bytes, nothing left running."""
        volume = self.follow(volume_id)['volume']
        self.assertEqual('success', volume['migration_status'], volume)
        if host is not None:
            self.assertEqual(host, volume['os-vol-host-attr:host'].split(
                '#')[0])
        self.assertNotIn(constants.PROGRESS_KEY, volume['metadata'])
        self.assertEqual(model.sha256(),
                         self.image_sha256(self.dst_pool, volume_id))
        self.assertNotIn('volume-%s' % volume_id,
                         rbd.RBD().list(self.ioctx[self.src_pool]))
        for name in (cloud.VOLUME_TARGET, cloud.VOLUME_TARGET_PEER):
            service = self.sandbox.service(name)
            self.assertEqual([], self.workers(service))
            if service.running():
                self.assertEqual([], self.state_files(service, volume_id))

    def member(self, host):
        """The sandbox's service whose host is ``host@backend#pool``'s."""
        for name in (cloud.VOLUME_TARGET, cloud.VOLUME_TARGET_PEER):
            service = self.sandbox.service(name)
            if host.split('#')[0] == service.host:
                return service
        self.fail('%s is no host of the target cluster' % host)

    def workers(self, service):
        return [p for p in service.processes()
                if _WORKER in children.cmdline(p)]

    def state_files(self, service, volume_id):
        state_dir = dict(
            (key, value) for _section, key, value in
            cinderconf.volume_settings(self.sandbox.deployment, service.spec)
        )['async_migration_state_dir']
        if not os.path.isdir(state_dir):
            return []
        return [n for n in os.listdir(state_dir) if volume_id in n]

    # -- the cluster -----------------------------------------------------

    def test_cluster_serves_the_target_and_locks_through_etcd(self):
        services = {(s['binary'], s['host']): s
                    for s in self.api('GET', '/os-services')['services']}
        for name in (cloud.VOLUME_TARGET, cloud.VOLUME_TARGET_PEER):
            service = services[('cinder-volume',
                                self.sandbox.service(name).host)]
            self.assertEqual('up', service['state'])
            self.assertEqual('%s@%s' % (cinderconf.TARGET_CLUSTER,
                                        settings.TARGET.name),
                             service['cluster'])
        self.assertTrue(self.sandbox.pids()['etcd'])
        self.assertTrue(self.sandbox.deployment.coordination_url.startswith(
            'etcd3+http://127.0.0.1:'))

    def test_peer_completes_when_the_copying_host_dies(self):
        volume_id, model = self.create()
        self.api('POST', '/volumes/%s/metadata' % volume_id, {'metadata': {
            throttle.RATE_KEY: str(_SLOW)}})
        self.migrate_until_attachable(volume_id)
        volume = self.wait(volume_id, 'copying', lambda v: not v[
            'metadata'].get(constants.PROGRESS_KEY, '0.0%').startswith(
                ('0.0%', 'queued')))
        owner = self.member(volume['os-vol-host-attr:host'])
        peer = self.member(
            self.sandbox.service(cloud.VOLUME_TARGET_PEER).host
            if owner.name == cloud.VOLUME_TARGET else
            self.sandbox.service(cloud.VOLUME_TARGET).host)
        workers = self.workers(owner)
        self.assertEqual(1, len(workers))
        name = {'name': '%s/volume-%s' % (self.dst_pool, volume_id)}
        self.hypervisor_write(model, name)

        # the owner's volume service dies for good; its copy worker runs
        # on, as on a host cut off from the cluster's services
        os.kill(owner.pid, signal.SIGKILL)
        killed = time.monotonic()
        volume = self.wait(
            volume_id, 'taken over by %s' % peer.host,
            lambda v: v['os-vol-host-attr:host'].split('#')[0] == peer.host,
            timeout=etcd.LOCK_TIMEOUT * 4)
        failover = time.monotonic() - killed
        self.addDetail('failover', content.text_content(
            '%.1f s from the owner\'s death to the peer\'s take-over' %
            failover))
        self.assertEqual(constants.ATTACHABLE, volume['migration_status'])
        # the dead owner's worker is blocklisted, and stops
        self.assertEqual([], children.wait_gone(workers, 60))
        # writes reach the volume while the peer copies
        self.hypervisor_write(model, name)
        self.lift_cap(volume_id)
        self.assert_migrated_here(volume_id, model, peer.host)
        # the dead host finds nothing to do when it comes back, and
        # removes what its copy worker left
        self.assertTrue(self.state_files(owner, volume_id))
        owner.start()
        self.sandbox.wait_service_up(owner.name, timeout=90)
        process.wait_for('the files of the old copy removed',
                         lambda: not self.state_files(owner, volume_id), 60)
        self.assertEqual('success', self.volume(volume_id)[
            'migration_status'])

    def test_reset_and_force_deleted_mid_copy_through_either_member(self):
        volume_id, _model = self.create()
        self.api('POST', '/volumes/%s/metadata' % volume_id, {'metadata': {
            throttle.RATE_KEY: str(_SLOW)}})
        self.migrate_until_attachable(volume_id)
        self.wait(volume_id, 'copying', lambda v: not v['metadata'].get(
            constants.PROGRESS_KEY, '0.0%').startswith(('0.0%', 'queued')))
        owner = self.member(self.volume(volume_id)['os-vol-host-attr:host'])
        members = (cloud.VOLUME_TARGET, cloud.VOLUME_TARGET_PEER)
        offsets = {m: os.path.getsize(self.sandbox.service(m).log)
                   for m in members}
        # the delete goes to the cluster: the member completing the volume
        # or the other, which waits for the owner's completion to stop
        # (well before the copy, at 8 MiB/s, could end)
        self.reset_and_force_delete(volume_id)
        rolled_back = [m for m in members if 'being deleted, is rolled back'
                       in self.log_since(m, offsets[m])]
        self.addDetail('delete', content.text_content(
            'owner %s, rolled back by %s' % (owner.name, rolled_back)))
        name = 'volume-%s' % volume_id
        for pool in (self.src_pool, self.dst_pool):
            self.assertNotIn(name, rbd.RBD().list(self.ioctx[pool]))
        for member in members:
            service = self.sandbox.service(member)
            process.wait_for('no copy worker on %s' % service.host,
                             lambda: not self.workers(service), 60)
            self.assertEqual([], self.state_files(service, volume_id))

    # -- Ceph ------------------------------------------------------------

    def test_osd_killed_and_started_again_mid_copy(self):
        volume_id, model = self._slow_copy_under_way()
        name = {'name': '%s/volume-%s' % (self.dst_pool, volume_id)}
        self.hypervisor_write(model, name)
        self.sandbox.ceph.restart_osd(down=_OSD_DOWN_FOR)
        # every client waited for the OSD meanwhile: the copy carries on
        self.assertEqual(constants.ATTACHABLE,
                         self.volume(volume_id)['migration_status'])
        self.hypervisor_write(model, name)
        self.lift_cap(volume_id)
        self.assert_migrated_here(volume_id, model)

    def _pool_stored(self, pool):
        df = json.loads(self.sandbox.ceph.ceph('df', '-f', 'json'))
        for entry in df['pools']:
            if entry['name'] == pool:
                return entry['stats']['stored']
        self.fail('no pool %s in ceph df' % pool)

    def _set_quota(self, max_bytes):
        self.sandbox.ceph.ceph('osd', 'pool', 'set-quota', self.dst_pool,
                               'max_bytes', str(max_bytes))

    def _pool_full(self):
        return 'POOL_FULL' in self.sandbox.ceph.ceph('health', 'detail')

    def test_target_pool_full_mid_copy_then_freed(self):
        volume_id, model = self._slow_copy_under_way()
        self._set_quota(self._pool_stored(self.dst_pool) + _ROOM)
        self.addCleanup(self._set_quota, 0)
        process.wait_for('the target pool full', self._pool_full, 120)
        # librados holds the copy's writes (and a hypervisor's) until the
        # pool has room: the volume stays attachable, its copy waits (past
        # the holes it skips, which need no write)
        seen = {'percent': None, 'since': time.monotonic()}

        def stalled():
            percent = self.progress(volume_id).split('%')[0]
            if percent != seen['percent']:
                seen.update(percent=percent, since=time.monotonic())
            return time.monotonic() - seen['since'] >= 10
        process.wait_for('the copy waiting for room', stalled, 120)
        volume = self.volume(volume_id)
        self.assertEqual(constants.ATTACHABLE, volume['migration_status'])
        self.assertLess(float(seen['percent']), 100)
        self.addDetail('while full', content.text_content(
            volume['metadata'][constants.PROGRESS_KEY]))
        self._set_quota(0)
        process.wait_for('the target pool with room',
                         lambda: not self._pool_full(), 120)
        self.hypervisor_write(model, {
            'name': '%s/volume-%s' % (self.dst_pool, volume_id)})
        self.lift_cap(volume_id)
        self.assert_migrated_here(volume_id, model)
