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

"""A throwaway Keystone for the sandbox (keystone from PyPI, cheroot).

Keystone of Cinder's OpenStack release, its database on the sandbox's
MariaDB, fernet tokens with keys in its own directory, served on 127.0.0.1
by cheroot (CherryPy's WSGI server, which the exporter already uses):
``python -m cinder_asyncmig.sandbox.keystone DIR PORT`` (:func:`main`).

:meth:`Keystone.up` syncs the database, makes the keys, runs
``keystone-manage bootstrap`` (the ``admin`` user and project, the
standard roles, the identity endpoint) and starts the server;
:meth:`Keystone.register` adds
what a cloud with Cinder has: a ``service`` project with Cinder's service
user, a member project and user, and the block-storage endpoints.
"""

import collections
import os
import sys
import urllib.request

from cinder_asyncmig.sandbox import process
from cinder_asyncmig import settings

REGION = 'RegionOne'
DOMAIN = 'default'
#: Cinder's endpoint in the catalog, as devstack registers it: the
#: official service type and the alias older clients ask for.
BLOCK_STORAGE = (('cinder', 'block-storage'), ('cinderv3', 'volumev3'))
BLOCK_STORAGE_FILTER = {'service_type': 'block-storage',
                        'interface': 'public', 'region_name': REGION}
_CMD_TIMEOUT = 300

#: A user of the sandbox, with its project and its role there.
Identity = collections.namedtuple('Identity', 'key user project role')

ADMIN = Identity('admin', 'admin', 'admin', 'admin')
MEMBER = Identity('member', 'demo', 'demo', 'member')
#: Cinder's service user: keystonemiddleware validates tokens with it,
#: which Keystone's policy grants to the ``service`` role.
SERVICE = Identity('service', 'cinder', 'service', 'service')
IDENTITIES = (ADMIN, MEMBER, SERVICE)


class KeystoneError(process.DaemonError):
    """The sandbox's Keystone could not be set up."""


class Keystone(object):
    """One Keystone living in ``directory``.

    :param directory: its home (configuration, fernet keys).
    :param port: its TCP port on 127.0.0.1.
    :param bin_dir: where ``keystone-manage`` and ``python`` are.
    :param log_dir: where its logs go.
    :param daemon: the :class:`process.Daemon` of a running server.
    """

    def __init__(self, directory, port, bin_dir, log_dir, daemon=None):
        self.directory = directory
        self.port = port
        self.bin_dir = bin_dir
        self.log_dir = log_dir
        self.daemon = daemon or process.Daemon(
            'keystone', self._argv(), os.path.join(log_dir, 'keystone.log'),
            marker=self.directory)

    @property
    def url(self):
        """The identity endpoint, ``OS_AUTH_URL``."""
        return 'http://127.0.0.1:%d/v3' % self.port

    @property
    def key_repository(self):
        """Where the fernet keys of tokens and receipts are."""
        return os.path.join(self.directory, 'fernet-keys')

    @property
    def config_path(self):
        return os.path.join(self.directory, 'keystone.conf')

    @classmethod
    def from_dict(cls, record):
        """Rebuild the server from :meth:`to_dict` output."""
        return cls(record['directory'], record['port'], record['bin_dir'],
                   record['log_dir'],
                   daemon=process.Daemon.from_dict(record['daemon']))

    def to_dict(self):
        return {'directory': self.directory, 'port': self.port,
                'bin_dir': self.bin_dir, 'log_dir': self.log_dir,
                'daemon': self.daemon.to_dict()}

    def _argv(self):
        return [os.path.join(self.bin_dir, 'python'), '-m', __name__,
                self.directory, str(self.port)]

    def settings(self, database_url):
        """The settings of ``keystone.conf``."""
        return [
            ('DEFAULT', 'log_file', os.path.join(self.log_dir,
                                                 'keystone-app.log')),
            ('database', 'connection', database_url),
            ('token', 'provider', 'fernet'),
            ('fernet_tokens', 'key_repository', self.key_repository),
            ('fernet_receipts', 'key_repository', self.key_repository),
        ]

    def up(self, database_url, admin_password, timeout=_CMD_TIMEOUT):
        """Set Keystone up in an empty database and start it.

        The token keys are what ``keystone-manage fernet_setup`` makes (a
        staged key ``0`` and a primary key ``1``, readable by the server
        only), written here because each ``keystone-manage`` costs seconds
        of a start-up that is short of CPU. No credential keys: nothing of
        the sandbox stores credentials (EC2, TOTP) in Keystone. The
        server starts while the database is filled: it reads the
        database only when asked.

        :param database_url: an empty database of its own.
        :param admin_password: the ``admin`` user's password.
        :raises KeystoneError: when a step fails.
        """
        from cryptography import fernet

        os.makedirs(self.key_repository, mode=0o700)
        process.write_private(self.config_path,
                              settings.render_ini(self.settings(database_url)))
        for name in ('0', '1'):
            process.write_private(os.path.join(self.key_repository, name),
                                  fernet.Fernet.generate_key().decode())
        process.together((self._fill, admin_password, timeout),
                         (self.start, timeout))

    def _fill(self, admin_password, timeout):
        self._manage(['db_sync'], timeout)
        # the password in the environment, not in the process list
        self._manage(['bootstrap', '--bootstrap-username', ADMIN.user,
                      '--bootstrap-project-name', ADMIN.project,
                      '--bootstrap-role-name', ADMIN.role,
                      '--bootstrap-service-name', 'keystone',
                      '--bootstrap-region-id', REGION,
                      '--bootstrap-public-url', self.url], timeout,
                     env={'OS_BOOTSTRAP_PASSWORD': admin_password})

    def _manage(self, args, timeout, env=None):
        log = os.path.join(self.log_dir, 'keystone-manage.log')
        argv = [os.path.join(self.bin_dir, 'keystone-manage'),
                '--config-file', self.config_path] + args
        try:
            process.run_logged(argv, log, timeout, env=env)
        except process.DaemonError as exc:
            raise KeystoneError('keystone-manage %s: %s' % (args[0],
                                                            exc)) from exc

    def start(self, timeout=60):
        """Start the server and wait until the identity API answers."""
        self.daemon.start()
        process.wait_for('keystone on port %d' % self.port, self._answers,
                         timeout, daemons=[self.daemon])

    def stop(self):
        """Kill the server."""
        self.daemon.stop()

    def _answers(self):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.url, timeout=2):
                return True
        except OSError:
            return False

    def register(self, passwords, cinder_url):
        """Create the sandbox's users, projects and Cinder's endpoints.

        :param passwords: the password of each :data:`IDENTITIES` key.
        :param cinder_url: cinder-api's ``/v3`` URL.
        :returns: ``{identity key: {'user_id': ..., 'project_id': ...}}``.
        """
        from keystoneclient.v3 import client

        admin = client.Client(session=session(self.url, ADMIN,
                                              passwords[ADMIN.key]),
                              interface='public', region_name=REGION)
        roles = {role.name: role for role in admin.roles.list()}
        ids = {}
        for identity in IDENTITIES:
            if identity == ADMIN:
                user = admin.users.list(name=ADMIN.user)[0]
                project = admin.projects.list(name=ADMIN.project)[0]
            else:
                project = admin.projects.create(identity.project, DOMAIN)
                user = admin.users.create(
                    identity.user, domain=DOMAIN, default_project=project,
                    password=passwords[identity.key])
                admin.roles.grant(roles[identity.role], user=user,
                                  project=project)
            ids[identity.key] = {'user_id': user.id,
                                 'project_id': project.id}
        for name, service_type in BLOCK_STORAGE:
            service = admin.services.create(name, service_type)
            admin.endpoints.create(service, '%s/$(project_id)s' % cinder_url,
                                   interface='public', region=REGION)
        return ids


def session(auth_url, identity, password):
    """A keystoneauth1 session of ``identity``, scoped to its project.

    It never goes through a proxy of the environment: the sandbox is on
    loopback.
    """
    from keystoneauth1.identity import v3
    from keystoneauth1 import session as ksa_session
    import requests

    direct = requests.Session()
    direct.trust_env = False
    auth = v3.Password(auth_url=auth_url, username=identity.user,
                       password=password, project_name=identity.project,
                       user_domain_id=DOMAIN, project_domain_id=DOMAIN)
    return ksa_session.Session(auth=auth, session=direct)


def main(argv=None):
    """Serve Keystone from ``DIR/keystone.conf`` on 127.0.0.1:``PORT``."""
    from cheroot import wsgi

    directory, port = argv if argv is not None else sys.argv[1:]
    os.environ['OS_KEYSTONE_CONFIG_DIR'] = directory
    # Keystone parses the command line as its own options (oslo.config),
    # which is why no stock WSGI server's command line can run it
    sys.argv = sys.argv[:1]
    from keystone.server import wsgi as keystone_wsgi
    application = keystone_wsgi.initialize_public_application()
    server = wsgi.Server(('127.0.0.1', int(port)), application, numthreads=4)
    server.start()


if __name__ == '__main__':
    main()
