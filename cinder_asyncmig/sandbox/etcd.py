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

"""A throwaway one-member etcd for Cinder's coordination (tooz).

Debian's ``etcd-server``, its data in its own directory, its client and
peer URLs on 127.0.0.1 ports of the sandbox, never started through the
package's init script. Cinder reaches it through tooz's ``etcd3+http``
driver (etcd's gRPC gateway, ``etcd3gw`` from PyPI).
"""

import os
import urllib.request

from cinder_asyncmig.sandbox import process

BINARY = '/usr/bin/etcd'
#: Seconds a tooz lock outlives the last heartbeat of its holder: how long
#: a volume service that died keeps its migrations' locks. tooz renews
#: it every half of it; 30 s (tooz's default) leaves a volume service's
#: green threads a long stall before a peer may think it gone.
LOCK_TIMEOUT = 30


class EtcdError(process.DaemonError):
    """The sandbox's etcd could not be started."""


class Etcd(object):
    """One etcd member on ``client_port`` (and ``peer_port``)."""

    def __init__(self, directory, client_port, peer_port, log_dir,
                 daemon=None):
        self.directory = directory
        self.client_port = client_port
        self.peer_port = peer_port
        self.log_dir = log_dir
        self.daemon = daemon or process.Daemon(
            'etcd', self._argv(), os.path.join(log_dir, 'etcd.log'),
            marker=self.directory)

    @classmethod
    def from_dict(cls, record):
        return cls(record['directory'], record['client_port'],
                   record['peer_port'], record['log_dir'],
                   daemon=process.Daemon.from_dict(record['daemon']))

    def to_dict(self):
        return {'directory': self.directory,
                'client_port': self.client_port,
                'peer_port': self.peer_port, 'log_dir': self.log_dir,
                'daemon': self.daemon.to_dict()}

    @property
    def client_url(self):
        return 'http://127.0.0.1:%d' % self.client_port

    @property
    def backend_url(self):
        """``[coordination] backend_url`` for Cinder's services."""
        return 'etcd3+http://127.0.0.1:%d?lock_timeout=%d' % (
            self.client_port, LOCK_TIMEOUT)

    def _argv(self):
        peer = 'http://127.0.0.1:%d' % self.peer_port
        return [BINARY, '--name', 'sandbox',
                '--data-dir', os.path.join(self.directory, 'data'),
                '--listen-client-urls', self.client_url,
                '--advertise-client-urls', self.client_url,
                '--listen-peer-urls', peer,
                '--initial-advertise-peer-urls', peer,
                '--initial-cluster', 'sandbox=%s' % peer,
                '--initial-cluster-state', 'new']

    def up(self, timeout):
        """Start etcd and wait until it answers."""
        if not os.path.exists(BINARY):
            raise EtcdError('%s not found: install etcd-server (bindep.txt)'
                            % BINARY)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self.daemon.start()
        process.wait_for('etcd on port %d' % self.client_port, self.healthy,
                         timeout, daemons=[self.daemon])

    def healthy(self):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.client_url + '/health', timeout=2) as resp:
                return b'"true"' in resp.read()
        except OSError:
            return False

    def stop(self):
        """Kill etcd."""
        self.daemon.stop()
