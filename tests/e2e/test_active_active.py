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

"""A target backend run as a Cinder cluster of two volume services.

The sandbox's target is ``[DEFAULT] cluster = asyncmig-target`` on the
hosts ``sandbox`` and ``sandbox-peer``, every service on Cinder's
coordination through etcd. The host copying a volume dies for good; the
other completes the migration: same bytes (sha256), ``success``, the dead
host's copy worker fenced, nothing left running.
"""

import os
import random
import signal
import tempfile
import time

from oslo_utils import units
import rbd
import testtools
from testtools import content

from cinder_asyncmig import children
from cinder_asyncmig.sandbox import cinderconf
from cinder_asyncmig.sandbox import cloud
from cinder_asyncmig.sandbox import etcd
from cinder_asyncmig.sandbox import roots
from cinder_asyncmig.sandbox import settings
from cinder_asyncmig.volume import constants
from cinder_asyncmig.volume import throttle
from tests.e2e import test_async_migration as base_e2e

_WORKER = 'cinder_asyncmig.engine.worker'
# the copy's cap while the owner dies: slow enough that the copy outlasts
# the failover, which waits for the dead owner's lock to lapse
_SLOW = 8 * units.Mi


class ActiveActiveTest(testtools.TestCase):

    @classmethod
    def setUpClass(cls):
        super(ActiveActiveTest, cls).setUpClass()
        if roots.current() != roots.HOST:
            # etcd is a package of the host; the cluster's logic does not
            # depend on the Ceph release
            raise cls.skipException(
                'the active-active target runs on the host\'s release only '
                '(%s)' % roots.HOST)
        cls.sandbox = cloud.Sandbox.up(
            tempfile.mkdtemp(prefix='sandbox-', dir=base_e2e._test_dir()),
            target_cluster=True)
        env = cls.sandbox.env()
        cls.src_pool = env['ASYNCMIG_SOURCE_POOL']
        cls.dst_pool = env['ASYNCMIG_TARGET_POOL']
        cls.migratable = env['ASYNCMIG_MIGRATABLE_TYPE']
        cls.rados = cls.sandbox.ceph.connect()
        cls.ioctx = {p: cls.rados.open_ioctx(p)
                     for p in (cls.src_pool, cls.dst_pool)}

    @classmethod
    def tearDownClass(cls):
        for ioctx in cls.ioctx.values():
            ioctx.close()
        cls.rados.shutdown()
        cls.sandbox.down()
        super(ActiveActiveTest, cls).tearDownClass()

    def setUp(self):
        super(ActiveActiveTest, self).setUp()
        self.rng = random.Random(self.id())
        for name in (cloud.VOLUME_TARGET, cloud.VOLUME_TARGET_PEER):
            if not self.sandbox.service(name).running():
                self.sandbox.service(name).start()
                self.sandbox.wait_service_up(name, timeout=90)

    # -- helpers ---------------------------------------------------------

    api = base_e2e.AsyncMigrationTest.api
    volume = base_e2e.AsyncMigrationTest.volume
    wait = base_e2e.AsyncMigrationTest.wait
    create = base_e2e.AsyncMigrationTest.create
    delete_quietly = base_e2e.AsyncMigrationTest.delete_quietly
    migrate = base_e2e.AsyncMigrationTest.migrate
    migrate_until_attachable = (
        base_e2e.AsyncMigrationTest.migrate_until_attachable)
    follow = base_e2e.AsyncMigrationTest.follow
    hypervisor_write = base_e2e.AsyncMigrationTest.hypervisor_write
    connection_data = staticmethod(
        base_e2e.AsyncMigrationTest.connection_data)
    image_sha256 = base_e2e.AsyncMigrationTest.image_sha256

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
        self.api('DELETE', '/volumes/%s/metadata/%s' % (volume_id,
                                                        throttle.RATE_KEY))
        seen = self.follow(volume_id)

        volume = seen['volume']
        self.assertEqual('success', volume['migration_status'], seen)
        self.assertEqual(peer.host, volume['os-vol-host-attr:host'].split(
            '#')[0])
        self.assertNotIn(constants.PROGRESS_KEY, volume['metadata'])
        self.assertEqual(model.sha256(),
                         self.image_sha256(self.dst_pool, volume_id))
        self.assertNotIn('volume-%s' % volume_id,
                         rbd.RBD().list(self.ioctx[self.src_pool]))
        self.assertEqual([], self.workers(peer))
        self.assertEqual([], self.state_files(peer, volume_id))
        # the dead host's state is its own: it finds nothing to do there
        # when it comes back
        owner.start()
        self.sandbox.wait_service_up(owner.name, timeout=90)
        self.assertEqual('success', self.volume(volume_id)[
            'migration_status'])
