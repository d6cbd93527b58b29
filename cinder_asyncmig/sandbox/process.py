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

"""Daemons of the sandbox: started in a session of their own, known by pid.

A :class:`Daemon` is one long-running program of the sandbox (a database, a
broker, a Cinder service). It is started in the foreground of a new session,
so its pid is known at once and it outlives the process that started it,
and it is described by a plain dict that another process can load to stop
it. Stopping signals every process of its tree (the leader, the children it
forked, whatever they started in sessions of their own) by pid, and checks
each pid against the daemon's marker first so that a pid reused by an
unrelated program is never signalled.
"""

import concurrent.futures
import json
import os
import random
import signal
import socket
import subprocess
import time

from oslo_log import log as logging

from cinder_asyncmig import children

LOG = logging.getLogger(__name__)


class DaemonError(Exception):
    """A sandbox daemon could not be started or stopped."""


def free_port_range(count, low=20000, high=32000, rng=None):
    """Return ``(first, last)``: ``count`` consecutive ports free now.

    Below Linux's ephemeral ports (32768 and up), so that outgoing
    connections do not take them later; the block starts at a random
    place, so sandboxes side by side get different blocks.
    """
    rng = rng or random.SystemRandom()
    for _attempt in range(50):
        first = rng.randrange(low, high - count)
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind(('127.0.0.1', port))
            return first, first + count - 1
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise DaemonError('no %d consecutive free ports in %d-%d' % (
        count, low, high))


def free_ports(count, low=20000, high=32000, rng=None):
    """Return ``count`` distinct TCP ports free on 127.0.0.1 right now.

    Below Linux's ephemeral ports, as :func:`free_port_range`: a port the
    kernel hands out for a listener is one it hands out to outgoing
    connections too, and a client that reconnects often (librados under
    socket faults) took a sandbox's database port that way before the
    database bound it. The sockets stay bound until all ports are picked,
    so the ports differ from each other.
    """
    rng = rng or random.SystemRandom()
    sockets = []
    attempts = 50 * count
    try:
        while len(sockets) < count:
            if not attempts:
                raise DaemonError('no %d free ports in %d-%d' % (
                    count, low, high))
            attempts -= 1
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(('127.0.0.1', rng.randrange(low, high)))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_open(port, host='127.0.0.1', timeout=0.5):
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Daemon(object):
    """One program of the sandbox, running in a session of its own.

    :param name: a short name, used for its log file and messages.
    :param argv: the command line.
    :param log: file receiving its stdout and stderr (appended to).
    :param marker: a string its command line holds (a path of its own),
                   checked before any signal is sent to the recorded pid.
    :param env: variables added to the environment it starts with.
    :param cwd: its working directory.
    :param pid: the pid of a running instance, when loaded from a record.
    """

    def __init__(self, name, argv, log, marker, env=None, cwd=None,
                 pid=None, started_at=None):
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.marker = marker
        self.env = dict(env or {})
        self.cwd = cwd
        self.pid = pid
        self.started_at = started_at
        self._proc = None

    @classmethod
    def from_dict(cls, record):
        """Rebuild a daemon from :meth:`to_dict` output."""
        return cls(record['name'], record['argv'], record['log'],
                   record['marker'], env=record.get('env'),
                   cwd=record.get('cwd'), pid=record.get('pid'),
                   started_at=record.get('started_at'))

    def to_dict(self):
        """Return a JSON-serialisable record of this daemon."""
        return {'name': self.name, 'argv': self.argv, 'log': self.log,
                'marker': self.marker, 'env': self.env, 'cwd': self.cwd,
                'pid': self.pid, 'started_at': self.started_at}

    def start(self):
        """Start the program; fail if it exits at once.

        :returns: its pid.
        """
        if self.running():
            raise DaemonError('%s already runs as pid %d' %
                              (self.name, self.pid))
        env = dict(os.environ)
        env.update(self.env)
        os.makedirs(os.path.dirname(self.log), exist_ok=True)
        try:
            self._proc = children.Child.spawn(self.argv, self.log, env=env,
                                              cwd=self.cwd)
        except OSError as exc:
            raise DaemonError('cannot start %s (%s): %s' % (
                self.name, self.argv[0], exc)) from exc
        self.pid = self._proc.pid
        self.started_at = time.time()
        LOG.debug('Started %(name)s as pid %(pid)d',
                  {'name': self.name, 'pid': self.pid})
        time.sleep(0.05)
        self.check()
        return self.pid

    def check(self):
        """Raise :class:`DaemonError` with its log tail if it stopped."""
        if not self.running():
            raise DaemonError('%s (pid %s) stopped: %s' % (
                self.name, self.pid, self.log_tail()))

    def running(self):
        """Whether the recorded pid runs and is this daemon."""
        return self._child() is not None

    def _child(self):
        if self._proc is not None:
            # started here: it is reaped once it has exited
            return self._proc if self._proc.running() else None
        return children.Child.adopt(self.pid, self.marker)

    def processes(self):
        """The pids of every process of this daemon (leader first)."""
        child = self._child()
        return [proc.pid for proc in child.processes()] if child else []

    def kill(self, sig=signal.SIGKILL):
        """Send ``sig`` to every process of the daemon, leader first.

        :returns: the pids signalled.
        """
        child = self._child()
        pids = child.signal(sig, tree=True) if child else []
        if pids:
            LOG.debug('Sent signal %(sig)d to %(name)s: %(pids)s',
                      {'sig': sig, 'name': self.name, 'pids': pids})
        return pids

    def stop(self, timeout=30):
        """Kill every process of the daemon and wait until all are gone."""
        child = self._child()
        if child is not None and not child.stop(timeout, tree=True,
                                                term=False):
            raise DaemonError('%s: processes %s did not stop' %
                              (self.name, [p.pid for p in child.processes()]))
        self._proc = None

    def log_tail(self, lines=15):
        """The last ``lines`` lines of the daemon's log."""
        try:
            with open(self.log, errors='replace') as f:
                return ''.join(f.readlines()[-lines:]).strip()
        except OSError:
            return 'no log at %s' % self.log


def write_private(path, text):
    """Write ``text`` to ``path``, readable by its owner only.

    For what holds a password or a key: the file is never readable by
    others, not even while it is written.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, 'w') as f:
        f.write(text)


def together(*calls):
    """Run ``(function, *args)`` calls side by side, each in a thread.

    :returns: once every call has ended.
    :raises: the error of the first call (in argument order) that failed.
    """
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(*call) for call in calls]
    for future in futures:
        future.result()


def run_logged(argv, log, timeout, env=None):
    """Run a set-up command to its end, its output appended to ``log``.

    :param env: variables added to the environment.
    :raises DaemonError: when it exits non-zero or outlives ``timeout``.
    """
    with open(log, 'ab') as out:
        try:
            result = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, timeout=timeout, check=False,
                env=dict(os.environ, **(env or {})))
        except subprocess.TimeoutExpired:
            raise DaemonError('%s did not end in %d s, see %s' % (
                os.path.basename(argv[0]), timeout, log)) from None
    if result.returncode != 0:
        raise DaemonError('%s failed (exit %d), see %s' % (
            os.path.basename(argv[0]), result.returncode, log))


def wait_for(what, predicate, timeout, interval=0.2, daemons=()):
    """Wait until ``predicate()`` is true.

    :param what: what is awaited, for the error message.
    :param daemons: daemons that must keep running meanwhile; one that
                    stops ends the wait at once with its log tail.
    :raises DaemonError: on timeout or when a daemon stops.
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        for daemon in daemons:
            daemon.check()
        if time.monotonic() > deadline:
            raise DaemonError('%s: not ready after %ss' % (what, timeout))
        time.sleep(interval)


class Recorded(object):
    """Something living in a directory, with a JSON record there.

    Subclasses set ``STATE_FILE`` (the record's name), ``ERROR`` (raised
    when there is no readable record) and ``KIND`` (for messages), and
    take ``(directory, state)`` in their constructor.
    """

    STATE_FILE = None
    ERROR = Exception
    KIND = 'record'

    @classmethod
    def load(cls, directory):
        """Attach to one started by ``up`` (maybe in another process)."""
        path = os.path.join(directory, cls.STATE_FILE)
        try:
            with open(path) as f:
                state = json.load(f)
        except (OSError, ValueError) as exc:
            raise cls.ERROR('no %s record at %s: %s' % (cls.KIND, path,
                                                        exc)) from exc
        return cls(directory, state)

    @classmethod
    def find(cls, parent):
        """Return those whose directories are right below ``parent``."""
        found = []
        if os.path.isdir(parent):
            for name in sorted(os.listdir(parent)):
                directory = os.path.join(parent, name)
                if os.path.isfile(os.path.join(directory, cls.STATE_FILE)):
                    found.append(cls.load(directory))
        return found
