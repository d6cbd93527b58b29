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

"""Sandbox daemons are stopped by pid, whole trees and nothing else."""

import os
import signal
import time

import fixtures
import psutil
import testtools

from cinder_asyncmig import children
from cinder_asyncmig.sandbox import process


class DaemonTest(testtools.TestCase):

    def setUp(self):
        super(DaemonTest, self).setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.marker = os.path.join(self.dir, 'marker')

    def _daemon(self, script):
        # the marker rides along as $0 of the shell
        daemon = process.Daemon('test', ['sh', '-c', script, self.marker],
                                os.path.join(self.dir, 'log', 'test.out'),
                                marker=self.marker)
        self.addCleanup(daemon.stop)
        return daemon

    def _wait_for_processes(self, daemon, count):
        deadline = time.monotonic() + 10
        while len(daemon.processes()) < count:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        return daemon.processes()

    def test_stop_kills_children_and_escaped_grandchildren(self):
        # a child in the daemon's session, and one that made a session
        # of its own (as Erlang's port programs do)
        daemon = self._daemon('sleep 60 & setsid sleep 61 & wait')
        daemon.start()
        pids = self._wait_for_processes(daemon, 3)
        self.assertEqual(daemon.pid, pids[0])
        daemon.stop()
        self.assertEqual([], [p for p in pids if children.alive(p)])
        self.assertFalse(daemon.running())

    def test_session_members_are_found_after_their_parent_died(self):
        daemon = self._daemon('(sleep 60 &) ; exec sleep 62')
        daemon.start()
        deadline = time.monotonic() + 10
        while True:
            self.assertLess(time.monotonic(), deadline)
            orphans = [p for p in daemon.processes()[1:]
                       if psutil.Process(p).ppid() != daemon.pid]
            # the subshell has exited and its child was reparented
            if orphans and 'sleep 60' in children.cmdline(orphans[0]):
                break
            time.sleep(0.02)
        daemon.stop()
        self.assertFalse(children.alive(orphans[0]))

    def test_a_loaded_record_is_stopped_from_another_object(self):
        # no exec: the marker must stay in the command line
        daemon = self._daemon('sleep 60; true')
        daemon.start()
        loaded = process.Daemon.from_dict(daemon.to_dict())
        self.assertTrue(loaded.running())
        loaded.stop()
        self.assertFalse(children.alive(daemon.pid))

    def test_a_reused_pid_is_never_signalled(self):
        # our own pid, recorded under a marker our command line lacks
        stranger = process.Daemon('stranger', ['true'], '/dev/null',
                                  marker=self.marker, pid=os.getpid())
        self.assertFalse(stranger.running())
        self.assertEqual([], stranger.kill(signal.SIGKILL))

    def test_start_reports_an_immediate_exit_with_the_log(self):
        daemon = self._daemon('echo "bad option"; exit 3')
        exc = self.assertRaises(process.DaemonError, daemon.start)
        self.assertIn('bad option', str(exc))

    def test_wait_for_stops_when_a_daemon_dies(self):
        daemon = self._daemon('exec sleep 0.2')
        daemon.start()
        started = time.monotonic()
        exc = self.assertRaises(process.DaemonError, process.wait_for,
                                'never', lambda: False, 30,
                                daemons=[daemon])
        self.assertIn('stopped', str(exc))
        self.assertLess(time.monotonic() - started, 10)

    def test_free_port_range_is_free_and_below_ephemeral_ports(self):
        first, last = process.free_port_range(16)
        self.assertEqual(15, last - first)
        self.assertTrue(20000 <= first and last < 32768)
        self.assertFalse([p for p in range(first, last + 1)
                          if process.port_open(p)])

    def test_free_ports_differ_and_are_below_ephemeral_ports(self):
        ports = process.free_ports(8)
        self.assertEqual(8, len(set(ports)))
        self.assertFalse([p for p in ports if process.port_open(p)])
        self.assertFalse([p for p in ports if not 20000 <= p < 32768])

    def test_write_private_closes_a_readable_file_to_others(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, 'rc')
        with open(path, 'w') as f:
            f.write('old and longer')
        os.chmod(path, 0o644)
        process.write_private(path, 'secret')
        self.assertEqual(0o600, os.stat(path).st_mode & 0o777)
        with open(path) as f:
            self.assertEqual('secret', f.read())

    def test_run_logged_appends_and_names_the_log_on_failure(self):
        log = os.path.join(self.useFixture(fixtures.TempDir()).path, 'log')
        process.run_logged(['sh', '-c', 'echo one'], log, 30)
        exc = self.assertRaises(
            process.DaemonError, process.run_logged,
            ['sh', '-c', 'echo "$WHO"; exit 3'], log, 30, env={'WHO': 'two'})
        self.assertIn('exit 3', str(exc))
        self.assertIn(log, str(exc))
        with open(log) as f:
            self.assertEqual('one\ntwo\n', f.read())

    def test_together_runs_every_call_and_raises_the_first_error(self):
        ran = []

        def fail(name):
            ran.append(name)
            raise ValueError(name)
        exc = self.assertRaises(ValueError, process.together,
                                (ran.append, 'a'), (fail, 'b'), (fail, 'c'))
        self.assertEqual('b', str(exc))
        self.assertEqual({'a', 'b', 'c'}, set(ran))
