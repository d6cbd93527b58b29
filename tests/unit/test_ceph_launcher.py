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

"""The throwaway cluster's configuration and guard rails, no daemons."""

import os
import subprocess
import tempfile
from unittest import mock

import testtools

from cinder_asyncmig.sandbox import ceph


class LauncherTest(testtools.TestCase):

    def setUp(self):
        super(LauncherTest, self).setUp()
        self.dir = tempfile.mkdtemp()

    def _cluster(self):
        return ceph.CephCluster(self.dir, {
            'fsid': 'f', 'mon_port': 4567, 'memstore_bytes': 123,
            'client': 'cinder', 'pools': ['a', 'b'], 'daemons': {}})

    def test_conf_is_loopback_cephx_memstore(self):
        cluster = self._cluster()
        cluster._write_conf()
        with open(cluster.conf_path) as f:
            conf = f.read()
        self.assertIn('mon host = [v2:127.0.0.1:4567]', conf)
        self.assertIn('public addr = 127.0.0.1', conf)
        for what in ('cluster', 'service', 'client'):
            self.assertIn('auth %s required = cephx' % what, conf)
        self.assertIn('memstore device bytes = 123', conf)
        self.assertIn('keyring = %s/ceph.client.cinder.keyring' % self.dir,
                      conf)
        self.assertNotIn('/var/', conf)

    def test_client_caps_limited_to_pools(self):
        self.assertEqual(
            ['mon', 'profile rbd', 'osd',
             'profile rbd pool=a, profile rbd pool=b'],
            self._cluster()._client_caps())

    def test_up_refuses_a_used_directory(self):
        open(os.path.join(self.dir, 'something'), 'w').close()
        exc = self.assertRaises(ceph.CephClusterError, ceph.CephCluster.up,
                                self.dir)
        self.assertIn('not empty', str(exc))
        self.assertTrue(os.path.exists(os.path.join(self.dir, 'something')))

    def test_load_without_record(self):
        self.assertRaises(ceph.CephClusterError, ceph.CephCluster.load,
                          self.dir)

    def test_down_spares_processes_that_are_not_its_own(self):
        cluster = self._cluster()
        # our own pid, recorded as a daemon: its command line does not
        # name the cluster's configuration, so down() must not kill it
        cluster._state['daemons'] = {'mon.a': os.getpid()}
        cluster.down()
        self.assertFalse(os.path.exists(self.dir))

    def test_a_command_that_times_out_names_the_cluster_health(self):
        cluster = self._cluster()

        def run(argv, **kwargs):
            if 'rbd' in argv:
                raise subprocess.TimeoutExpired(argv, kwargs['timeout'])
            return subprocess.CompletedProcess(
                argv, 0, 'HEALTH_ERR 1 full osd(s)\n', '')
        with mock.patch.object(subprocess, 'run', side_effect=run):
            exc = self.assertRaises(ceph.CephClusterError, cluster.rbd,
                                    'pool', 'init', 'a', timeout=1)
        self.assertEqual('rbd timed out after 1s; cluster health: '
                         'HEALTH_ERR 1 full osd(s)', str(exc))

    def test_disk_bytes_put_the_osd_data_in_a_file(self):
        cluster = self._cluster()
        cluster._state['disk_bytes'] = 5 * 2 ** 30
        cluster._write_conf()
        with open(cluster.conf_path) as f:
            conf = f.read()
        self.assertIn('osd objectstore = bluestore', conf)
        self.assertIn('bluestore block path = %s/$name.block' % self.dir,
                      conf)
        self.assertIn('bluestore block size = %d' % (5 * 2 ** 30), conf)
        self.assertNotIn('memstore', conf)

    def test_address_of_a_host_of_its_own(self):
        cluster = self._cluster()
        cluster._state['address'] = '10.213.0.2'
        cluster._write_conf()
        with open(cluster.conf_path) as f:
            conf = f.read()
        self.assertIn('mon host = [v2:10.213.0.2:4567]', conf)
        self.assertIn('public addr = 10.213.0.2', conf)
        self.assertIn('cluster addr = 10.213.0.2', conf)
        self.assertNotIn('127.0.0.1', conf)
