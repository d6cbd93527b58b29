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

"""The copy worker's parent-side handle, with real processes."""

import json
import os
import subprocess
import sys
import tempfile
import time

import testtools

from cinder_asyncmig import children
from cinder_asyncmig.engine import worker


class WorkerHandleTest(testtools.TestCase):

    def setUp(self):
        super(WorkerHandleTest, self).setUp()
        self.dir = tempfile.mkdtemp()
        self.status = os.path.join(self.dir, 'pool.volume-1.json')

    def _fake_worker(self, image='volume-1'):
        # a process whose command line looks like a worker's
        proc = subprocess.Popen(
            [sys.executable, '-c', 'import time; time.sleep(60)',
             '-m', 'cinder_asyncmig.engine.worker', '--image', image,
             '--status-file', self.status])
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        # until exec, /proc shows the parent's command line
        deadline = time.monotonic() + 10
        while ('--status-file' not in children.cmdline(proc.pid) and
               time.monotonic() < deadline):
            time.sleep(0.01)
        with open(self.status, 'w') as f:
            json.dump({'pid': proc.pid, 'phase': worker.RUNNING}, f)
        return proc

    def test_adopt_running_worker_and_stop_it(self):
        proc = self._fake_worker()
        handle = worker.ExecuteWorker.adopt(self.status, 'volume-1')
        self.assertIsNotNone(handle)
        self.assertTrue(handle.running())
        handle.stop(timeout=5)
        self.assertEqual(-15, proc.wait(timeout=5))

    def test_no_adoption_of_a_reused_pid(self):
        with open(self.status, 'w') as f:
            json.dump({'pid': os.getpid()}, f)
        self.assertIsNone(worker.ExecuteWorker.adopt(self.status,
                                                     'volume-1'))

    def test_no_adoption_of_another_images_worker(self):
        self._fake_worker(image='volume-2')
        self.assertIsNone(worker.ExecuteWorker.adopt(self.status,
                                                     'volume-1'))

    def test_no_adoption_of_a_dead_worker(self):
        proc = self._fake_worker()
        proc.kill()
        proc.wait()
        self.assertIsNone(worker.ExecuteWorker.adopt(self.status,
                                                     'volume-1'))

    def test_unreadable_status(self):
        with open(self.status, 'w') as f:
            f.write('{half')
        self.assertEqual({}, worker.read_status(self.status))
        self.assertEqual({}, worker.read_status(self.status + '.missing'))
        self.assertIsNone(worker.ExecuteWorker.adopt(self.status, 'x'))

    def test_worker_reports_a_failed_connection(self):
        # no cluster behind this configuration: the worker exits non-zero
        conf = os.path.join(self.dir, 'ceph.conf')
        with open(conf, 'w') as f:
            f.write('[global]\nmon host = 127.0.0.1:1\n'
                    'client mount timeout = 1\n')
        result = subprocess.run(
            [sys.executable, '-m', 'cinder_asyncmig.engine.worker',
             '--conf', conf, '--user', 'nobody', '--pool', 'p', '--image',
             'i', '--status-file', self.status],
            capture_output=True, timeout=60)
        self.assertNotEqual(0, result.returncode)
        self.assertEqual({}, worker.read_status(self.status))


class FenceWatchTest(testtools.TestCase):

    def test_listed_whatever_the_address_notation(self):
        me = '127.0.0.1:0/2330575827'
        for blocklist in ({me: '2026-12-05T09:50:00.0+0000'},
                          {'v2:%s' % me: 'x'}, {'any:%s' % me: 'x'}):
            self.assertTrue(worker.FenceWatch.listed(
                me, {'blocklist': blocklist}), blocklist)
        self.assertTrue(worker.FenceWatch.listed(
            '[v2:%s,v1:127.0.0.1:0/1]' % me, {'blocklist': {me: 'x'}}))
        # another client of the same host; a map of before the rename
        self.assertFalse(worker.FenceWatch.listed(
            me, {'blocklist': {'127.0.0.1:0/1': 'x'}}))
        self.assertTrue(worker.FenceWatch.listed(
            me, {'blacklist': {me: 'x'}}))
        self.assertFalse(worker.FenceWatch.listed(me, {}))
