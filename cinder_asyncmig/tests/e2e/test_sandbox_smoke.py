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

"""The sandbox itself: up, used through the stock client, killed, down."""

import os
import re
import tempfile

from oslo_utils import units
import testtools

from cinder_asyncmig.sandbox import cloud
from cinder_asyncmig.sandbox import process

MEMSTORE_BYTES = int(os.environ.get('ASYNCMIG_TEST_MEMSTORE_GIB',
                                    '4')) * units.Gi


def _test_dir():
    base = os.environ.get('ASYNCMIG_TEST_DIR') or tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    return base


def _table_value(output, field):
    """A field of the ``cinder show``/``create`` property table."""
    match = re.search(r'^\|\s*%s\s*\|\s*(.*?)\s*\|$' % re.escape(field),
                      output, re.MULTILINE)
    return match.group(1) if match else None


class SandboxSmokeTest(testtools.TestCase):

    def setUp(self):
        super(SandboxSmokeTest, self).setUp()
        directory = tempfile.mkdtemp(prefix='sandbox-', dir=_test_dir())
        self.sandbox = cloud.Sandbox.up(directory,
                                        memstore_bytes=MEMSTORE_BYTES)
        self.addCleanup(self._down_if_up)

    def _down_if_up(self):
        if os.path.isdir(self.sandbox.directory):
            self.sandbox.down()

    def _wait_status(self, volume_id, status, member=False):
        def reached():
            volume = self.sandbox.api('GET', '/volumes/%s' % volume_id,
                                      member=member)['volume']
            if volume['status'] == 'error':
                self.fail('volume %s went to error' % volume_id)
            return volume['status'] == status
        process.wait_for('volume %s %s' % (volume_id, status), reached, 60)

    def test_up_use_kill_restart_down(self):
        sandbox = self.sandbox
        states = {(s['binary'], s['host']): s['state']
                  for s in sandbox.service_list()}
        self.assertEqual({('cinder-scheduler', 'sandbox'): 'up',
                          ('cinder-volume', 'sandbox@rbd-src'): 'up',
                          ('cinder-volume', 'sandbox@rbd-async'): 'up'},
                         states)

        # the stock client with the openrc variables, rbd as a hypervisor
        env = sandbox.env()
        out = sandbox.cinder('create', '--volume-type',
                             env['ASYNCMIG_SOURCE_TYPE'], '--name', 'smoke',
                             '1')
        volume_id = _table_value(out, 'id')
        self._wait_status(volume_id, 'available')
        self.assertEqual(env['ASYNCMIG_SOURCE_HOST'], _table_value(
            sandbox.cinder('show', volume_id), 'os-vol-host-attr:host'))
        self.assertIn('volume-%s' % volume_id, sandbox.ceph.rbd(
            'ls', env['ASYNCMIG_SOURCE_POOL']).split())

        # the non-admin user owns its volumes, and may not migrate them
        member_volume = sandbox.api('POST', '/volumes', {'volume': {
            'size': 1, 'name': 'mine'}}, member=True)['volume']['id']
        self._wait_status(member_volume, 'available', member=True)
        exc = self.assertRaises(
            cloud.ApiError, sandbox.api, 'POST',
            '/volumes/%s/action' % member_volume,
            {'os-migrate_volume': {'host': sandbox.target_host}},
            member=True)
        self.assertEqual(403, exc.status)
        listed = sandbox.api('GET', '/volumes', member=True)['volumes']
        self.assertEqual([member_volume], [v['id'] for v in listed])

        # SIGKILL the target volume service alone, then start it again
        target = sandbox.service(cloud.VOLUME_TARGET)
        old_pids = target.processes()
        killed = target.kill()
        self.assertEqual(sorted(old_pids), sorted(killed))
        self.assertFalse([p for p in killed if process.pid_alive(p)])
        self.assertTrue(sandbox.service(cloud.VOLUME_SOURCE).running())
        sandbox.wait_service_down(cloud.VOLUME_TARGET, timeout=60)
        new_pid = target.start()
        self.assertNotIn(new_pid, old_pids)
        sandbox.wait_service_up(cloud.VOLUME_TARGET, timeout=60)
        self.assertEqual(new_pid, cloud.Sandbox.load(
            sandbox.directory).service(cloud.VOLUME_TARGET).pid)

        sandbox.cinder('delete', volume_id)
        sandbox.api('DELETE', '/volumes/%s' % member_volume, member=True)

        # down leaves no process and no directory behind
        running = sandbox.pids()
        self.assertEqual(
            {'cinder-api', 'cinder-scheduler', 'cinder-volume-source',
             'cinder-volume-target', 'rabbitmq', 'epmd', 'mariadb', 'ceph'},
            {name for name, pids in running.items() if pids})
        pids = sum(running.values(), [])
        sandbox.down()
        self.assertEqual([], [p for p in pids if process.pid_alive(p)])
        self.assertFalse(os.path.exists(sandbox.directory))
