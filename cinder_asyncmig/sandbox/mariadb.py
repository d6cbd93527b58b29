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

"""A throwaway MariaDB server for the sandbox (Debian's mariadb-server).

Its own data directory, socket and port, bound to 127.0.0.1, started as
``mariadbd`` in the foreground of its own session (Debian's init scripts
need systemd or a system-wide setup). ``--no-defaults`` keeps
/etc/mysql out of it, so several sandboxes and a system MariaDB coexist.
"""

import os
import signal
import subprocess

from cinder_asyncmig import children
from cinder_asyncmig.sandbox import process

MARIADBD = '/usr/sbin/mariadbd'
INSTALL_DB = 'mariadb-install-db'
CLIENT = 'mariadb'
_CMD_TIMEOUT = 60


class MariaDBError(process.DaemonError):
    """The sandbox database could not be set up."""


class MariaDB(object):
    """One MariaDB server living in ``directory``.

    :param directory: its home (data, socket, pid file).
    :param port: its TCP port on 127.0.0.1.
    :param log_dir: where its logs go.
    :param daemon: the :class:`process.Daemon` of a running server.
    """

    def __init__(self, directory, port, log_dir, daemon=None):
        self.directory = directory
        self.port = port
        self.log_dir = log_dir
        self.daemon = daemon or process.Daemon(
            'mariadb', self._argv(), os.path.join(log_dir, 'mariadb.out'),
            marker=self.datadir)

    @property
    def datadir(self):
        return os.path.join(self.directory, 'data')

    @property
    def tmpdir(self):
        # its own: a starting server removes the "#sql*" files it finds in
        # its tmpdir, those of another server's bootstrap included
        return os.path.join(self.directory, 'tmp')

    @property
    def socket(self):
        return os.path.join(self.directory, 'mariadb.sock')

    @classmethod
    def from_dict(cls, record):
        """Rebuild the server from :meth:`to_dict` output."""
        return cls(record['directory'], record['port'], record['log_dir'],
                   daemon=process.Daemon.from_dict(record['daemon']))

    def to_dict(self):
        return {'directory': self.directory, 'port': self.port,
                'log_dir': self.log_dir, 'socket': self.socket,
                'daemon': self.daemon.to_dict()}

    def _user_args(self):
        # mariadbd refuses to run as root unless told to; the data
        # directory belongs to whoever runs the sandbox
        return ['--user=root'] if os.geteuid() == 0 else []

    def _argv(self):
        return [MARIADBD, '--no-defaults', '--datadir=%s' % self.datadir,
                '--socket=%s' % self.socket, '--port=%d' % self.port,
                '--tmpdir=%s' % self.tmpdir,
                '--bind-address=127.0.0.1', '--skip-name-resolve',
                '--pid-file=%s' % os.path.join(self.directory,
                                               'mariadb.pid'),
                '--log-error=%s' % os.path.join(self.log_dir,
                                                'mariadb.log'),
                '--innodb-buffer-pool-size=64M',
                '--innodb-log-file-size=16M',
                '--character-set-server=utf8mb4',
                '--max-connections=500'] + self._user_args()

    def install(self):
        """Create the system tables in an empty data directory."""
        os.makedirs(self.datadir, exist_ok=True)
        os.makedirs(self.tmpdir, exist_ok=True)
        _run([INSTALL_DB, '--no-defaults', '--datadir=%s' % self.datadir,
              '--auth-root-authentication-method=normal', '--skip-test-db',
              '--skip-name-resolve', '--tmpdir=%s' % self.tmpdir] +
             self._user_args())

    def start(self, timeout=60):
        """Start the server and wait until its socket answers."""
        self.daemon.start()
        process.wait_for('MariaDB on port %d' % self.port, self._answers,
                         timeout, daemons=[self.daemon])

    def _answers(self):
        try:
            self.sql('SELECT 1')
        except MariaDBError:
            return False
        return True

    def sql(self, statements):
        """Run SQL as the database root user through the socket."""
        # on stdin, so that passwords stay out of the process list
        return _run([CLIENT, '--no-defaults', '--socket=%s' % self.socket,
                     '--user=root', '--batch'], stdin=statements)

    def create_database(self, name, user, password):
        """Create a database and a user with every right on it.

        The user may connect over TCP from 127.0.0.1 and over the socket.
        """
        grants = ''.join(
            "CREATE USER '%(user)s'@'%(host)s' IDENTIFIED BY '%(pw)s'; "
            "GRANT ALL PRIVILEGES ON `%(db)s`.* TO '%(user)s'@'%(host)s'; "
            % {'user': user, 'host': host, 'pw': password, 'db': name}
            for host in ('127.0.0.1', 'localhost'))
        self.sql('CREATE DATABASE `%s` CHARACTER SET utf8mb4; %s'
                 'FLUSH PRIVILEGES;' % (name, grants))

    def url(self, database, user, password):
        """The SQLAlchemy URL of ``database`` (PyMySQL over TCP)."""
        return 'mysql+pymysql://%s:%s@127.0.0.1:%d/%s?charset=utf8mb4' % (
            user, password, self.port, database)

    def stop(self):
        """Kill the server (a throwaway database needs no clean stop)."""
        self.daemon.stop()

    def shutdown(self, timeout=60):
        """Stop the server cleanly, as an operator's restart does."""
        alive = children.wait_gone(self.daemon.kill(signal.SIGTERM), timeout)
        if alive:
            raise MariaDBError('MariaDB %s did not shut down in %d s' % (
                alive, timeout))


def _run(args, stdin=None):
    try:
        result = subprocess.run(args, input=stdin, capture_output=True,
                                text=True, timeout=_CMD_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MariaDBError('%s timed out' % args[0]) from exc
    except OSError as exc:
        raise MariaDBError('cannot run %s: %s (is mariadb-server '
                           'installed? see bindep.txt)' % (args[0], exc)
                           ) from exc
    if result.returncode != 0:
        raise MariaDBError('%s failed (exit %d): %s' % (
            args[0], result.returncode,
            (result.stderr or result.stdout).strip()[-2000:]))
    return result.stdout
