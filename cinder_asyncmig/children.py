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

"""Child processes that outlive their parent: spawn, adopt, stop.

The copy workers and the exporters outlive the volume service that starts
them, and the sandbox's daemons the command that starts them. Each runs in
a session of its own and is known by its pid; a process found by pid again
(after a restart) is adopted only when its command line holds a marker of
its own, so a pid reused by another program is never signalled. psutil
tells zombies and process trees apart.
"""

import os
import signal
import subprocess
import time

import psutil

_PACKAGE = __name__.rpartition('.')[0]


class Child(object):
    """One child process: spawned here, or adopted by pid.

    :param proc: its :class:`psutil.Process` (a :class:`psutil.Popen` when
                 spawned here, which reaps it).
    """

    def __init__(self, proc):
        self._proc = proc

    @classmethod
    def spawn(cls, argv, log_path, env=None, cwd=None, opener=None):
        """Start ``argv`` in a session of its own, output to ``log_path``.

        :param env: its whole environment; the caller's when None.
        :param opener: opens the log (e.g. to create it private).
        :raises OSError: the program cannot be started.
        """
        with open(log_path, 'ab', opener=opener) as log:
            return cls(psutil.Popen(argv, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    env=env, cwd=cwd, start_new_session=True,
                                    close_fds=True))

    @classmethod
    def adopt(cls, pid, *markers):
        """A handle on ``pid``, or None unless it runs and is ours.

        :param markers: strings its command line must all hold.
        """
        if not pid:
            return None
        try:
            proc = psutil.Process(pid)
            line = ' '.join(proc.cmdline())
        except psutil.Error:
            return None
        if not running(proc) or not all(m in line for m in markers):
            return None
        return cls(proc)

    @property
    def pid(self):
        return self._proc.pid

    @property
    def returncode(self):
        """The exit code of a child spawned here, once it has ended."""
        return getattr(self._proc, 'returncode', None)

    def running(self):
        return running(self._proc)

    def wait(self, timeout=None):
        """Wait until it ends; its exit code when spawned here."""
        return self._proc.wait(timeout)

    def processes(self):
        """It, its descendants and the rest of its session; leader first.

        Descendants are found through their parents, so the ones that
        started sessions of their own (Erlang's port programs do) are
        included; the members of its session are found even after their
        parent died.
        """
        if not self.running():
            return []
        found = [self._proc]
        try:
            found += self._proc.children(recursive=True)
        except psutil.NoSuchProcess:
            pass
        for proc in psutil.process_iter():
            try:
                if os.getsid(proc.pid) == self.pid and proc not in found:
                    found.append(proc)
            except (OSError, psutil.Error):
                continue
        return [proc for proc in found if running(proc)]

    def signal(self, sig, tree=False):
        """Send ``sig`` to it, or to all of its :meth:`processes`.

        The leader goes first so that a supervisor (oslo.service's process
        launcher, the RabbitMQ start script) cannot respawn or signal the
        others in between.

        :returns: the pids signalled.
        """
        procs = self.processes() if tree else [self._proc]
        sent = []
        for proc in procs:
            try:
                proc.send_signal(sig)
                sent.append(proc.pid)
            except psutil.NoSuchProcess:
                pass
        return sent

    def stop(self, timeout=10, tree=False, term=True):
        """SIGTERM, then SIGKILL what still runs after ``timeout`` s.

        :param tree: all of its :meth:`processes`, not only it.
        :param term: False sends SIGKILL at once.
        :returns: True when every process is gone.
        """
        procs = self.processes() if tree else [self._proc]
        return not _stop_all(procs, timeout, term)


def stop_left_under(directory, timeout=10):
    """Stop this package's programs that work on files under ``directory``.

    For throwaway clusters and sandboxes about to be removed: a copy worker
    or an exporter runs in a session of its own, so when its volume service
    is killed (as fault tests do) it is left running, a client of a cluster
    about to go. Any process started as ``python -m cinder_asyncmig.*``
    whose command line names ``directory`` or a path under it is stopped.

    :returns: the pids that did not stop.
    """
    directory = os.path.abspath(directory)
    found = []
    for proc in psutil.process_iter():
        try:
            argv = proc.cmdline()
        except psutil.Error:
            continue
        if (proc.pid != os.getpid() and running(proc) and
                _runs_module_of_ours(argv) and
                any(_is_under(arg.rpartition('=')[2], directory)
                    for arg in argv)):
            found.append(proc)
    return [proc.pid for proc in _stop_all(found, timeout)]


def _stop_all(procs, timeout, term=True):
    # SIGTERM, then SIGKILL what still runs after the timeout
    for sig in (signal.SIGTERM, signal.SIGKILL)[0 if term else 1:]:
        procs = [proc for proc in procs if running(proc)]
        for proc in procs:
            try:
                proc.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        procs = wait_gone(procs, timeout)
    return procs


def _runs_module_of_ours(argv):
    return any(flag == '-m' and module.startswith(_PACKAGE + '.')
               for flag, module in zip(argv, argv[1:]))


def _is_under(path, directory):
    return path == directory or path.startswith(directory + os.sep)


def running(proc):
    """Whether ``proc`` (a :class:`psutil.Process`) runs, not a zombie."""
    poll = getattr(proc, 'poll', None)
    if poll is not None:
        # a child spawned here: poll reaps it once it has ended
        return poll() is None
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def alive(pid):
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        return running(psutil.Process(pid))
    except psutil.Error:
        return False


def cmdline(pid):
    """The command line of ``pid`` as one string ('' when gone)."""
    try:
        return ' '.join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ''


def wait_gone(procs, timeout):
    """Wait until none of ``procs`` (processes or pids) runs.

    :returns: the ones still running, as given.
    """
    pairs = []
    for given in procs:
        try:
            proc = (psutil.Process(given) if isinstance(given, int)
                    else given)
        except psutil.NoSuchProcess:
            continue
        pairs.append((given, proc))
    deadline = time.monotonic() + timeout
    while True:
        pairs = [(given, proc) for given, proc in pairs if running(proc)]
        if not pairs or time.monotonic() > deadline:
            return [given for given, _proc in pairs]
        time.sleep(0.05)
