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

"""A throwaway RabbitMQ node for the sandbox (Debian's rabbitmq-server).

Every port is its own: AMQP, Erlang distribution, and an ``epmd`` on its
own port (``ERL_EPMD_PORT``), all on loopback, so two sandboxes, or a
sandbox and a system RabbitMQ, never meet. The sandbox starts that epmd
itself, in the foreground, and tells the Erlang VM not to start one
(``-start_epmd false``): an epmd started by Erlang daemonises and would be
a process nobody knows the pid of.

The AMQP user, password and vhost come from ``rabbitmq.conf``
(``default_user`` and friends), so no ``rabbitmqctl`` call (another Erlang
node, with its own distribution port) is needed.
"""

import os
import signal

import amqp

from cinder_asyncmig import children
from cinder_asyncmig.sandbox import process

RABBITMQ_SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server'
EPMD = 'epmd'

_CONF_TEMPLATE = """\
listeners.tcp.1 = 127.0.0.1:%(amqp_port)d
default_user = %(user)s
default_pass = %(password)s
default_vhost = %(vhost)s
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
loopback_users = none
disk_free_limit.absolute = 50MB
log.console = false
log.file.level = info
"""


class RabbitMQ(object):
    """One RabbitMQ node and its epmd, living in ``directory``.

    :param directory: its home (configuration, Mnesia, Erlang cookie).
    :param ports: dict with ``amqp``, ``dist`` and ``epmd`` ports.
    :param user: the AMQP user; ``password`` and ``vhost`` go with it.
    :param log_dir: where its logs go.
    """

    def __init__(self, directory, ports, user, password, vhost, log_dir,
                 epmd=None, server=None):
        self.directory = directory
        self.ports = dict(ports)
        self.user = user
        self.password = password
        self.vhost = vhost
        self.log_dir = log_dir
        self.node = 'asyncmig%d@localhost' % self.ports['amqp']
        env = self._env()
        self.epmd = epmd or process.Daemon(
            'epmd', [EPMD, '-port', str(self.ports['epmd'])],
            os.path.join(log_dir, 'epmd.out'),
            marker='-port %d' % self.ports['epmd'], env=env)
        # the start script passes its arguments on to the Erlang VM,
        # which keeps unknown flags as init arguments: this one names the
        # node's home in both command lines
        self.server = server or process.Daemon(
            'rabbitmq', [RABBITMQ_SERVER, '-asyncmig_home', directory],
            os.path.join(log_dir, 'rabbitmq.out'),
            marker=directory, env=env, cwd=self.directory)

    @classmethod
    def from_dict(cls, record):
        """Rebuild the node from :meth:`to_dict` output."""
        return cls(record['directory'], record['ports'], record['user'],
                   record['password'], record['vhost'], record['log_dir'],
                   epmd=process.Daemon.from_dict(record['epmd']),
                   server=process.Daemon.from_dict(record['server']))

    def to_dict(self):
        return {'directory': self.directory, 'ports': self.ports,
                'user': self.user, 'password': self.password,
                'vhost': self.vhost, 'log_dir': self.log_dir,
                'node': self.node, 'epmd': self.epmd.to_dict(),
                'server': self.server.to_dict()}

    @property
    def transport_url(self):
        """The oslo.messaging transport URL for the node's vhost."""
        return 'rabbit://%s:%s@127.0.0.1:%d/%s' % (
            self.user, self.password, self.ports['amqp'], self.vhost)

    def _path(self, name):
        return os.path.join(self.directory, name)

    def _env(self):
        return {
            'HOME': self.directory,  # the Erlang cookie goes there
            'ERL_EPMD_PORT': str(self.ports['epmd']),
            'ERL_EPMD_ADDRESS': '127.0.0.1',
            'RABBITMQ_NODENAME': self.node,
            'RABBITMQ_NODE_IP_ADDRESS': '127.0.0.1',
            'RABBITMQ_NODE_PORT': str(self.ports['amqp']),
            'RABBITMQ_DIST_PORT': str(self.ports['dist']),
            'RABBITMQ_CONFIG_FILE': self._path('rabbitmq.conf'),
            'RABBITMQ_ADVANCED_CONFIG_FILE': self._path('advanced.config'),
            'RABBITMQ_CONF_ENV_FILE': self._path('rabbitmq-env.conf'),
            'RABBITMQ_ENABLED_PLUGINS_FILE': self._path('enabled_plugins'),
            'RABBITMQ_MNESIA_BASE': self._path('mnesia'),
            'RABBITMQ_LOG_BASE': self.log_dir,
            'RABBITMQ_PID_FILE': self._path('rabbitmq.pid'),
            'RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS':
                '-start_epmd false '
                '-kernel inet_dist_use_interface {127,0,0,1}',
        }

    def write_config(self):
        """Write rabbitmq.conf and the files that keep /etc out."""
        os.makedirs(self._path('mnesia'), exist_ok=True)
        with open(self._path('rabbitmq.conf'), 'w') as f:
            f.write(_CONF_TEMPLATE % {
                'amqp_port': self.ports['amqp'], 'user': self.user,
                'password': self.password, 'vhost': self.vhost})
        os.chmod(self._path('rabbitmq.conf'), 0o600)
        with open(self._path('enabled_plugins'), 'w') as f:
            f.write('[].\n')
        open(self._path('rabbitmq-env.conf'), 'w').close()
        with open(self._path('advanced.config'), 'w') as f:
            f.write('[].\n')

    def start(self, timeout=60):
        """Start epmd, then the node; wait until AMQP logins work.

        An epmd still running (the node alone was shut down) is kept.
        """
        self.write_config()
        if not self.epmd.running():
            self.epmd.start()
        process.wait_for('epmd on port %d' % self.ports['epmd'],
                         lambda: process.port_open(self.ports['epmd']),
                         timeout, daemons=[self.epmd])
        self.server.start()
        process.wait_for('RabbitMQ on port %d' % self.ports['amqp'],
                         self._answers, timeout,
                         daemons=[self.epmd, self.server])

    def _answers(self):
        if not process.port_open(self.ports['amqp']):
            return False
        conn = amqp.Connection('127.0.0.1:%d' % self.ports['amqp'],
                               userid=self.user, password=self.password,
                               virtual_host=self.vhost, connect_timeout=2)
        try:
            conn.connect()
        except (OSError, amqp.exceptions.AMQPError):
            return False
        finally:
            conn.collect()
        return True

    def shutdown(self, timeout=60):
        """Stop the node cleanly, as an operator's restart does.

        RabbitMQ takes SIGTERM as ``rabbitmqctl stop``; epmd keeps running.
        """
        alive = children.wait_gone(self.server.kill(signal.SIGTERM), timeout)
        if alive:
            raise process.DaemonError('RabbitMQ %s did not shut down in '
                                      '%d s' % (alive, timeout))

    def stop(self):
        """Kill the node (with its port programs), then its epmd."""
        self.server.stop()
        self.epmd.stop()
