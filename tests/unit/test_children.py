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

"""Child processes, with real ones."""

import os
import signal
import sys
import time

import fixtures
import testtools

from cinder_asyncmig import children


class ChildTest(testtools.TestCase):

    def setUp(self):
        super(ChildTest, self).setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.log = os.path.join(self.dir, 'child.log')

    def spawn(self, script):
        child = children.Child.spawn(['sh', '-c', script, self.dir],
                                     self.log)
        self.addCleanup(child.stop, 5, tree=True, term=False)
        return child

    def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout(self):
        child = self.spawn('trap "" TERM; echo ready; sleep 60; true')
        while 'ready' not in open(self.log).read():
            time.sleep(0.01)
        self.assertTrue(child.running())
        self.assertTrue(child.stop(timeout=0.5))
        self.assertFalse(child.running())
        self.assertEqual(-signal.SIGKILL, child.returncode)

    def test_stopped_with_sigterm_when_it_obeys(self):
        child = self.spawn('sleep 60; true')
        self.assertTrue(child.stop(timeout=10))
        self.assertEqual(-signal.SIGTERM, child.returncode)

    def test_adopted_only_with_its_markers(self):
        child = self.spawn('sleep 60; true')
        # the kernel sets a new program's command line a moment after its
        # parent may run again: adoption is for processes of an earlier life
        deadline = time.monotonic() + 10
        while (self.dir not in children.cmdline(child.pid) and
               time.monotonic() < deadline):
            time.sleep(0.01)
        adopted = children.Child.adopt(child.pid, 'sleep 60', self.dir)
        self.assertEqual(child.pid, adopted.pid)
        self.assertTrue(adopted.running())
        self.assertIsNone(children.Child.adopt(child.pid, 'another dir'))
        child.stop()
        self.assertIsNone(children.Child.adopt(child.pid, self.dir))
        self.assertFalse(children.alive(child.pid))
        self.assertEqual('', children.cmdline(child.pid))

    def test_wait_gone_takes_pids_and_says_which_still_run(self):
        child = self.spawn('sleep 60; true')
        self.assertEqual([child.pid], children.wait_gone([child.pid], 0.1))
        child.signal(signal.SIGKILL)
        self.assertEqual([], children.wait_gone([child.pid], 10))

    def test_programs_of_ours_under_a_directory_are_stopped(self):
        other = self.useFixture(fixtures.TempDir()).path
        sleep = [sys.executable, '-c', 'import time; time.sleep(60)']

        def start(*argv):
            child = children.Child.spawn(sleep + list(argv), self.log)
            self.addCleanup(child.stop, 5, term=False)
            deadline = time.monotonic() + 10
            while (argv[-1] not in children.cmdline(child.pid) and
                   time.monotonic() < deadline):
                time.sleep(0.01)
            return child

        worker = start('-m', 'cinder_asyncmig.engine.worker', '--pool', 'p',
                       '--status-file', os.path.join(self.dir, 'w.status'))
        exporter = start('-m', 'cinder_asyncmig.sources.exporter',
                         '--config=%s' % os.path.join(self.dir, 'e.json'))
        elsewhere = start('-m', 'cinder_asyncmig.engine.worker',
                          '--status-file', os.path.join(other, 'w.status'))
        not_ours = start('-m', 'http.server', '--directory', self.dir)
        prefix = start('-m', 'cinder_asyncmig.engine.worker',
                       '--status-file', self.dir + '-other/w.status')

        self.assertEqual([], children.stop_left_under(self.dir))

        self.assertEqual(-signal.SIGTERM, worker.wait(5))
        self.assertEqual(-signal.SIGTERM, exporter.wait(5))
        self.assertTrue(elsewhere.running())
        self.assertTrue(not_ours.running())
        self.assertTrue(prefix.running())
