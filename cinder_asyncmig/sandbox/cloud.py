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

"""The sandbox: real Cinder services on loopback, in one directory.

:meth:`Sandbox.up` starts, all bound to 127.0.0.1 on ports picked at start:

- a one-node Ceph cluster (:mod:`.ceph`) with a pool per RBD backend and
  a ``cinder`` client key with ``profile rbd`` on them;
- a second one-node Ceph cluster, ``xcluster`` to the hosts of the
  sandbox, with the pool of the ``rbd-xcluster`` backend;
- MariaDB (:mod:`.mariadb`) and RabbitMQ with its own epmd
  (:mod:`.rabbitmq`);
- Keystone (:mod:`.keystone`), with an admin, a member of another
  project and Cinder's service user;
- cinder-api (behind keystonemiddleware), cinder-scheduler and one
  cinder-volume per backend of :mod:`.settings` (the stock RBD driver as
  the source, ``AsyncMigrationRBDDriver`` as the target, the stock RBD
  driver on the second cluster, the stock NFS driver on a directory of
  the sandbox mounted in place), each a process of its own with a
  configuration file of its own, so a test can kill one volume service
  and start it again;
- with ``target_cluster``, a second cinder-volume of the target backend
  on another host name, the two a Cinder cluster (``[DEFAULT] cluster``),
  and etcd (:mod:`.etcd`) for Cinder's coordination (tooz) in place of
  its file locks;
- with ``network``, each cluster on a host of its own: a network
  namespace on a bridge (:mod:`.netns`), whose address the services and
  the target's exporters here listen on, with a ``hypervisor`` host
  beside them.

It returns once the API answers, every service is ``up`` and the scheduler
knows every backend. ``sandbox.json`` records every pid, port and path, so
another process (``cinder-asyncmig-sandbox down``) can stop everything by
pid. ``openrc`` points the stock ``cinder`` client and ``rbd`` at it.
"""

import datetime
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

from oslo_log import log as logging
from oslo_utils import excutils
from oslo_utils import units

from cinder_asyncmig import children
from cinder_asyncmig.engine import features
from cinder_asyncmig.sandbox import ceph
from cinder_asyncmig.sandbox import cinderconf
from cinder_asyncmig.sandbox import etcd
from cinder_asyncmig.sandbox import keystone
from cinder_asyncmig.sandbox import mariadb
from cinder_asyncmig.sandbox import netns
from cinder_asyncmig.sandbox import pki
from cinder_asyncmig.sandbox import process
from cinder_asyncmig.sandbox import rabbitmq
from cinder_asyncmig.sandbox import roots
from cinder_asyncmig import settings

LOG = logging.getLogger(__name__)

STATE_FILE = 'sandbox.json'
DEFAULT_MEMSTORE_BYTES = 8 * units.Gi
DEFAULT_XCLUSTER_MEMSTORE_BYTES = 3 * units.Gi
DEFAULT_TIMEOUT = 120
CEPH_CLIENT = 'cinder'
DATABASE = 'cinder'
DB_USER = 'cinder'
KEYSTONE_DATABASE = 'keystone'
KEYSTONE_DB_USER = 'keystone'
AMQP_USER = 'cinder'
AMQP_VHOST = 'cinder'
CLI_TIMEOUT = 120

# names re-exported for tests: sandbox.service(cloud.VOLUME_TARGET)
API = cinderconf.API
SCHEDULER = cinderconf.SCHEDULER
VOLUME_SOURCE = cinderconf.VOLUME_SOURCE
VOLUME_TARGET = cinderconf.VOLUME_TARGET
VOLUME_XCLUSTER = cinderconf.VOLUME_XCLUSTER
# ports of the target's exporters: one per volume migrating at once
EXPORTER_PORTS = 16
VOLUME_FILE = cinderconf.VOLUME_FILE
VOLUME_TARGET_PEER = cinderconf.VOLUME_TARGET_PEER
SERVICES = tuple(spec.name for spec in cinderconf.SERVICES)
# the hosts of a sandbox with a network: this one (control and volume
# services), the first cluster's, the second cluster's, a hypervisor's
CLOUD_HOST, CLUSTER_HOST, XCLUSTER_HOST, HYPERVISOR_HOST = NETWORK_HOSTS = (
    'cloud', 'cluster', 'xcluster', 'hypervisor')

_BINARIES = ('cinder-api', 'cinder-scheduler', 'cinder-volume',
             'cinder-manage', 'cinder', 'keystone-manage', 'openstack')


class SandboxError(Exception):
    """The sandbox could not be started, used or stopped."""


class ApiError(SandboxError):
    """The Cinder API answered with an HTTP error.

    :param status: the HTTP status code.
    """

    def __init__(self, status, method, path, body):
        super(ApiError, self).__init__('%s %s: HTTP %d: %s' % (
            method, path, status, body[:500]))
        self.status = status


class CinderCommandError(SandboxError):
    """A stock client (``cinder``, ``openstack``) exited non-zero.

    :param argv: its command line.
    :param returncode: its exit status; ``stdout`` and ``stderr`` its output.
    """

    def __init__(self, argv, returncode, stdout, stderr):
        super(CinderCommandError, self).__init__(
            '%s: exit %d: %s' % (' '.join(argv), returncode,
                                 stderr.strip()[-1000:]))
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def resolve_volume_manager(requested=None):
    """Return the volume manager class path the volume services get.

    :param requested: a class path; returned as is when given.
    :returns: ``(class_path, warning)``; ``warning`` is None unless the
              plugin's manager cannot be imported, in which case Cinder's
              stock manager is returned and ``warning`` says why.
    """
    if requested:
        return requested, None
    # in a child, after what cinder-volume does first, so that this
    # process does not load half of Cinder
    result = subprocess.run(
        [sys.executable, '-c',
         'from cinder import objects; objects.register_all(); '
         'from oslo_utils import importutils; '
         'importutils.import_class(%r)' % settings.VOLUME_MANAGER],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False)
    if result.returncode == 0:
        return settings.VOLUME_MANAGER, None
    lines = result.stderr.strip().splitlines() or ['exit %d' %
                                                   result.returncode]
    return settings.STOCK_VOLUME_MANAGER, (
        'cannot import %s (%s); the volume services run Cinder\'s stock %s '
        'instead' % (settings.VOLUME_MANAGER, lines[-1],
                     settings.STOCK_VOLUME_MANAGER))


def _pools_of(cluster):
    """The pools of the backends on the Ceph cluster called ``cluster``."""
    return [b.pool for b in settings.BACKENDS if b.ceph_cluster == cluster]


def _can_fake_etc_ceph():
    """Whether volume services can get a /etc/ceph of the sandbox."""
    return (os.geteuid() == 0 and os.path.isdir('/etc/ceph') and
            shutil.which('unshare') is not None)


def _has_nbd_stream():
    """Whether librbd here reads NBD streams (the exporter's NBD transport)."""
    import rbd
    return features.CephFeatures.detect(rbd).nbd_stream


def _utc_epoch(timestamp):
    """Seconds since the epoch of an API timestamp (UTC, no zone)."""
    parsed = datetime.datetime.fromisoformat(timestamp.rstrip('Z'))
    return parsed.replace(tzinfo=datetime.timezone.utc).timestamp()


class Service(object):
    """One Cinder service process of a sandbox.

    Obtained from :meth:`Sandbox.service`; :meth:`kill` and :meth:`start`
    update the sandbox's record.
    """

    def __init__(self, sandbox, spec, daemon):
        self._sandbox = sandbox
        self.spec = spec
        self.daemon = daemon

    @property
    def name(self):
        """The sandbox's name of the service (e.g. ``volume-target``)."""
        return self.spec.name

    @property
    def binary(self):
        return self.spec.binary

    @property
    def host(self):
        """The host column of the service list (``sandbox@rbd-async``)."""
        return cinderconf.service_host(self.spec)

    @property
    def pid(self):
        """The pid of the service's main process (last started)."""
        return self.daemon.pid

    @property
    def log(self):
        return self.daemon.log

    @property
    def config(self):
        return cinderconf.config_path(self._sandbox.deployment, self.spec)

    def running(self):
        """Whether the service's main process runs."""
        return self.daemon.running()

    def processes(self):
        """Pids of the service's processes (main process first)."""
        return self.daemon.processes()

    def kill(self, sig=signal.SIGKILL, timeout=30):
        """Send ``sig`` to every process of the service.

        With SIGKILL (the default), waits until all of them are gone, so
        that :meth:`start` can follow at once.

        :returns: the pids signalled.
        """
        pids = self.daemon.kill(sig)
        if sig == signal.SIGKILL:
            alive = children.wait_gone(pids, timeout)
            if alive:
                raise SandboxError('%s: %s survived SIGKILL' % (self.name,
                                                                alive))
        return pids

    def start(self):
        """Start the service again (after :meth:`kill`).

        :returns: the new pid. Wait with :meth:`Sandbox.wait_service_up`.
        """
        pid = self.daemon.start()
        self._sandbox._record_service(self)
        return pid

    def stop(self):
        """Kill the service and wait until it is gone."""
        self.daemon.stop()


class Sandbox(process.Recorded):
    """A running sandbox in ``directory``; see the module documentation.

    Use :meth:`up` to start one, :meth:`load` to attach to one another
    process started, and :meth:`down` to stop it and remove its directory.
    """

    STATE_FILE = STATE_FILE
    ERROR = SandboxError
    KIND = 'sandbox'

    def __init__(self, directory, state):
        self.directory = os.path.abspath(directory)
        self._state = state
        self._lock = threading.Lock()
        # keystoneauth sessions by identity: one token each, renewed
        self._sessions = {}

    # -- record ------------------------------------------------------------

    @property
    def deployment(self):
        """The :class:`cinderconf.Deployment` of this sandbox."""
        return cinderconf.Deployment(**self._state['deployment'])

    @property
    def state(self):
        """A copy of the ``sandbox.json`` record."""
        return json.loads(json.dumps(self._state))

    def _save(self):
        path = os.path.join(self.directory, STATE_FILE)
        with self._lock:
            tmp = path + '.tmp'
            with open(tmp, 'w') as f:
                json.dump(self._state, f, indent=2, sort_keys=True)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)

    def _record(self, key, value):
        with self._lock:
            self._state[key] = value
        self._save()

    def _record_service(self, service):
        with self._lock:
            self._state['services'][service.name] = service.daemon.to_dict()
        self._save()

    # -- lifecycle ---------------------------------------------------------

    @classmethod
    def up(cls, directory=None, memstore_bytes=DEFAULT_MEMSTORE_BYTES,
           volume_manager=None, timeout=DEFAULT_TIMEOUT,
           xcluster_memstore_bytes=DEFAULT_XCLUSTER_MEMSTORE_BYTES,
           cluster_release=None, disk_bytes=None, target_cluster=False,
           with_mgr=False, network=False):
        """Create and start a sandbox.

        :param directory: where everything lives; must be empty or absent.
                          A temporary directory is made when None.
        :param memstore_bytes: RAM the Ceph OSD may use for data.
        :param xcluster_memstore_bytes: the same for the second cluster.
        :param volume_manager: ``[DEFAULT] volume_manager`` of the volume
                               services. None means the plugin's manager,
                               or Cinder's stock one (with a warning in
                               the record) when that does not import.
        :param timeout: seconds each start-up step may take.
        :param cluster_release: the Ceph release of the clusters' daemons
                                (default: :func:`ceph.default_release`).
        :param disk_bytes: when set, the first cluster keeps its data on
                           disk (see :meth:`ceph.CephCluster.up`) instead
                           of in ``memstore_bytes`` of RAM.
        :param target_cluster: run the target backend as a Cinder cluster
                               of two volume services, coordinated
                               through etcd.
        :param with_mgr: the first cluster gets a ceph-mgr, which pool
                         quotas need (the mgr reports the pools' usage).
        :param network: the hosts of :data:`NETWORK_HOSTS` on a network of
                        the sandbox's own (:attr:`network`): this one, with
                        the services; each cluster's; a hypervisor's.
        :returns: the running :class:`Sandbox`.
        :raises SandboxError: when something does not start; every process
                              started is stopped, the logs are kept.
        """
        if directory is None:
            directory = tempfile.mkdtemp(prefix='asyncmig-sandbox-')
        directory = os.path.abspath(directory)
        if os.path.isdir(directory) and os.listdir(directory):
            raise SandboxError('%s is not empty; pick another directory '
                               'or run down on it first' % directory)
        bin_dir = os.path.dirname(sys.executable)
        missing = [b for b in _BINARIES
                   if not os.path.exists(os.path.join(bin_dir, b))]
        if missing:
            raise SandboxError('%s not found in %s: run the sandbox with '
                               'the python of the virtualenv that has '
                               'cinder and python-cinderclient' %
                               (', '.join(missing), bin_dir))
        for sub in ('etc', 'log', 'state', 'mariadb', 'rabbitmq'):
            os.makedirs(os.path.join(directory, sub), exist_ok=True)
        sandbox = cls(directory, cls._new_state(directory, bin_dir,
                                                memstore_bytes,
                                                volume_manager,
                                                xcluster_memstore_bytes,
                                                cluster_release, disk_bytes,
                                                target_cluster, with_mgr))
        sandbox._save()
        started = time.monotonic()
        try:
            if network:
                made = netns.Network.make(NETWORK_HOSTS, reaped=False)
                sandbox._record('network', made.as_record())
                sandbox._record('deployment', sandbox.deployment._replace(
                    host_address=made.address(CLOUD_HOST))._asdict())
            sandbox._bring_up(timeout)
        except BaseException:
            with excutils.save_and_reraise_exception():
                LOG.error('Sandbox in %s did not come up; stopping it, '
                          'logs kept in %s', directory,
                          os.path.join(directory, 'log'))
                sandbox.down(remove=False)
        sandbox._state['timings']['total'] = round(
            time.monotonic() - started, 1)
        sandbox._save()
        LOG.info('Sandbox up in %(dir)s after %(secs).1fs',
                 {'dir': directory, 'secs': time.monotonic() - started})
        return sandbox

    @staticmethod
    def _new_state(directory, bin_dir, memstore_bytes, volume_manager,
                   xcluster_memstore_bytes, cluster_release, disk_bytes=None,
                   target_cluster=False, with_mgr=False):
        (api, db, amqp_port, dist, epmd, identity, etcd_client,
         etcd_peer) = process.free_ports(8)
        ceph_dir = os.path.join(directory, 'ceph')
        xcluster_dir = os.path.join(directory, 'xcluster')
        db_password = secrets.token_hex(12)
        amqp_password = secrets.token_hex(12)
        identities = {i.key: {'password': secrets.token_hex(12)}
                      for i in keystone.IDENTITIES}
        deployment = cinderconf.Deployment(
            directory=directory, api_port=api,
            transport_url=None, database_url=None,
            ceph_conf=os.path.join(ceph_dir, 'ceph.conf'),
            rbd_user=CEPH_CLIENT,
            rbd_keyring=os.path.join(ceph_dir,
                                     'ceph.client.%s.keyring' % CEPH_CLIENT),
            rbd_secret_uuid=str(uuid.uuid4()),
            volume_manager=volume_manager, bin_dir=bin_dir,
            privileged=_can_fake_etc_ceph(),
            xcluster_ceph_conf=os.path.join(xcluster_dir, 'ceph.conf'),
            xcluster_keyring=os.path.join(
                xcluster_dir, 'ceph.client.%s.keyring' % CEPH_CLIENT),
            xcluster_secret_uuid=str(uuid.uuid4()),
            exporter_ports=list(process.free_port_range(EXPORTER_PORTS)),
            nbd_tls=_can_fake_etc_ceph() and _has_nbd_stream(),
            auth_url='http://127.0.0.1:%d/v3' % identity,
            identities=identities, target_cluster=bool(target_cluster))
        return {
            'directory': directory,
            'ports': {'api': api, 'mariadb': db, 'amqp': amqp_port,
                      'erlang_dist': dist, 'epmd': epmd,
                      'keystone': identity, 'etcd': etcd_client,
                      'etcd_peer': etcd_peer},
            'memstore_bytes': int(memstore_bytes),
            'disk_bytes': int(disk_bytes or 0),
            'with_mgr': bool(with_mgr),
            'xcluster_memstore_bytes': int(xcluster_memstore_bytes),
            'ceph_release': roots.current(),
            'cluster_release': cluster_release or ceph.default_release(),
            'passwords': {'database': db_password, 'amqp': amqp_password,
                          'keystone_database': secrets.token_hex(12)},
            'deployment': deployment._asdict(),
            'ceph_dir': ceph_dir,
            'xcluster_dir': xcluster_dir,
            'mariadb': None,
            'rabbitmq': None,
            'keystone': None,
            'etcd': None,
            'network': None,
            'services': {},
            'warnings': [],
            'timings': {},
        }

    def _timed(self, what, func, *args):
        started = time.monotonic()
        result = func(*args)
        with self._lock:
            self._state['timings'][what] = round(time.monotonic() - started,
                                                 1)
        return result

    def _bring_up(self, timeout):
        self._complete_deployment()
        self._write_files()
        # the slow parts do not depend on each other
        process.together(
            (self._timed, 'ceph', self._start_ceph),
            (self._timed, 'ceph-xcluster', self._start_xcluster),
            (self._start_databases, timeout),
            (self._timed, 'rabbitmq', self._start_rabbitmq, timeout),
            (self._timed, 'etcd', self._start_etcd, timeout),
            (self._timed, 'volume_manager', self._pick_volume_manager))
        self._timed('cinder', self._start_cinder, timeout)

    def _complete_deployment(self):
        ports = self._state['ports']
        passwords = self._state['passwords']
        db = mariadb.MariaDB(os.path.join(self.directory, 'mariadb'),
                             ports['mariadb'], self._log_dir())
        mq = rabbitmq.RabbitMQ(os.path.join(self.directory, 'rabbitmq'),
                               {'amqp': ports['amqp'],
                                'dist': ports['erlang_dist'],
                                'epmd': ports['epmd']},
                               AMQP_USER, passwords['amqp'], AMQP_VHOST,
                               self._log_dir())
        deployment = self.deployment._replace(
            transport_url=mq.transport_url,
            database_url=db.url(DATABASE, DB_USER, passwords['database']))
        coordination = None
        if deployment.target_cluster:
            coordination = etcd.Etcd(os.path.join(self.directory, 'etcd'),
                                     ports['etcd'], ports['etcd_peer'],
                                     self._log_dir())
            deployment = deployment._replace(
                coordination_url=coordination.backend_url)
        identity = keystone.Keystone(
            os.path.join(self.directory, 'keystone'), ports['keystone'],
            self.deployment.bin_dir, self._log_dir())
        with self._lock:
            self._state['deployment'] = deployment._asdict()
            self._state['mariadb'] = db.to_dict()
            self._state['rabbitmq'] = mq.to_dict()
            self._state['keystone'] = identity.to_dict()
            if coordination is not None:
                self._state['etcd'] = coordination.to_dict()
        self._save()

    def _log_dir(self):
        return os.path.join(self.directory, 'log')

    def _write_files(self):
        etc = os.path.join(self.directory, 'etc')
        installed = os.path.join(sys.prefix, 'etc', 'cinder')
        try:
            for name in ('api-paste.ini', 'resource_filters.json'):
                shutil.copy(os.path.join(installed, name), etc)
        except OSError as exc:
            raise SandboxError('Cinder\'s api-paste.ini or '
                               'resource_filters.json not found in %s: %s' %
                               (installed, exc)) from exc
        deployment = self.deployment
        if deployment.privileged:
            # what a hypervisor host or cinder-volume host has in /etc/ceph
            host_ceph = cinderconf.host_ceph_dir(deployment)
            os.makedirs(host_ceph, exist_ok=True)
            for name, real in cinderconf.host_ceph_files(deployment):
                os.symlink(real, os.path.join(host_ceph, name))
        else:
            self._state['warnings'].append(
                'not root (or no /etc/ceph, or no unshare): generic '
                '(host copy) migration will fail, os-brick cannot attach '
                'RBD volumes without the keyring in /etc/ceph')
            self._state['warnings'].append(
                'not root: no %s backend (the sandbox mounts its share in '
                'the volume services\' mount namespaces)' %
                settings.FILE.name)
        if deployment.nbd_tls:
            pki.write_nbd_files(cinderconf.nbd_server_dir(deployment),
                                cinderconf.libnbd_dir(deployment),
                                cinderconf.host_address(deployment))
        if settings.FILE in cinderconf.backends(deployment):
            # both sides of the bind mount; a volume file is readable to
            # whoever has the sandbox directory, as on an NFS export
            os.makedirs(cinderconf.file_share_dir(deployment), mode=0o755)
            os.makedirs(cinderconf.nfs_mount_point(deployment), mode=0o755)
        for spec in cinderconf.SERVICES:
            if spec.backend is None:
                self._write_service_config(spec)

    def _write_service_config(self, spec):
        deployment = self.deployment
        # database and broker passwords
        process.write_private(
            cinderconf.config_path(deployment, spec),
            settings.render_ini(cinderconf.service_settings(deployment,
                                                            spec)))

    def _write_openrc(self):
        for name, member in (('openrc', False), ('openrc-member', True)):
            process.write_private(
                os.path.join(self.directory, name),
                cinderconf.render_openrc(self.deployment, member=member))

    @property
    def network(self):
        """The sandbox's :class:`netns.Network`, None without one."""
        record = self._state.get('network')
        return netns.Network.from_record(record) if record else None

    def _on_host(self, name):
        """``CephCluster.up``'s ``address`` and ``netns`` on host ``name``.

        Loopback here (the defaults) without a network.
        """
        network = self.network
        if network is None:
            return {}
        return {'address': network.address(name),
                'netns': network.hosts[name]['netns']}

    def _start_ceph(self):
        ceph.CephCluster.up(self._state['ceph_dir'],
                            memstore_bytes=self._state['memstore_bytes'],
                            pools=_pools_of(settings.CEPH_CLUSTER),
                            client=CEPH_CLIENT,
                            release=self._state['cluster_release'],
                            disk_bytes=self._state.get('disk_bytes'),
                            with_mgr=self._state.get('with_mgr', False),
                            **self._on_host(CLUSTER_HOST))

    def _start_xcluster(self):
        ceph.CephCluster.up(
            self._state['xcluster_dir'],
            memstore_bytes=self._state['xcluster_memstore_bytes'],
            pools=_pools_of(settings.SECOND_CEPH_CLUSTER),
            client=CEPH_CLIENT, release=self._state['cluster_release'],
            **self._on_host(XCLUSTER_HOST))

    def _start_databases(self, timeout):
        """MariaDB, then Cinder's schema and Keystone side by side."""
        self._timed('mariadb', self._start_database, timeout)
        process.together(
            (self._timed, 'cinder db_sync', self._sync_cinder_database,
             timeout),
            (self._timed, 'keystone', self._start_keystone, timeout))

    def _start_database(self, timeout):
        db = self._mariadb()
        try:
            db.install()
            db.start(timeout=timeout)
        finally:
            self._record('mariadb', db.to_dict())
        passwords = self._state['passwords']
        db.create_database(DATABASE, DB_USER, passwords['database'])
        db.create_database(KEYSTONE_DATABASE, KEYSTONE_DB_USER,
                           passwords['keystone_database'])

    def _sync_cinder_database(self, timeout):
        api = cinderconf.config_path(self.deployment,
                                     cinderconf.service_spec(API))
        log = os.path.join(self._log_dir(), 'cinder-manage.log')
        try:
            process.run_logged(
                [os.path.join(self.deployment.bin_dir, 'cinder-manage'),
                 '--log-file', log, '--config-file', api, 'db', 'sync'],
                log, timeout * 2)
        except process.DaemonError as exc:
            raise SandboxError('cinder-manage db sync: %s' % exc) from exc

    def _start_keystone(self, timeout):
        """Keystone up, with the sandbox's users and Cinder's endpoints."""
        server = self._keystone()
        identities = self.deployment.identities
        try:
            server.up(self._mariadb().url(
                KEYSTONE_DATABASE, KEYSTONE_DB_USER,
                self._state['passwords']['keystone_database']),
                identities[keystone.ADMIN.key]['password'],
                timeout=timeout * 2)
        finally:
            self._record('keystone', server.to_dict())
        ids = server.register(
            {key: value['password'] for key, value in identities.items()},
            self.api_url)
        with self._lock:
            for key, value in ids.items():
                self._state['deployment']['identities'][key].update(value)
        self._save()

    def _start_rabbitmq(self, timeout):
        mq = self._rabbitmq()
        try:
            mq.start(timeout=timeout)
        finally:
            self._record('rabbitmq', mq.to_dict())

    def _start_etcd(self, timeout):
        if not self._state.get('etcd'):
            return
        server = self._etcd()
        try:
            server.up(timeout)
        finally:
            self._record('etcd', server.to_dict())

    def _pick_volume_manager(self):
        manager, warning = resolve_volume_manager(
            self.deployment.volume_manager)
        if warning:
            LOG.warning('%s', warning)
        with self._lock:
            self._state['deployment']['volume_manager'] = manager
            if warning:
                self._state['warnings'].append(warning)
        self._save()

    def _start_cinder(self, timeout):
        deployment = self.deployment
        for spec in cinderconf.services(deployment):
            if spec.backend is not None:
                self._write_service_config(spec)
        services = []
        for spec in cinderconf.services(deployment):
            daemon = process.Daemon(
                'cinder-%s' % spec.name,
                cinderconf.service_argv(deployment, spec),
                cinderconf.log_path(deployment, spec),
                marker=cinderconf.config_path(deployment, spec))
            service = Service(self, spec, daemon)
            try:
                service.start()
            finally:
                self._record_service(service)
            services.append(service)
        self.wait_service_up(API, timeout)
        self._create_volume_types()
        self.wait_services_up([s.name for s in services if s.name != API],
                              timeout)
        self._wait_for_pools(timeout, [s.daemon for s in services])
        self._write_openrc()

    def _create_volume_types(self):
        for name, description, extra_specs in cinderconf.volume_types(
                cinderconf.backends(self.deployment)):
            self.api('POST', '/types', {'volume_type': {
                'name': name, 'description': description,
                'extra_specs': extra_specs}})

    def _wait_for_pools(self, timeout, daemons):
        wanted = {cinderconf.scheduler_pool(self.deployment, b)
                  for b in cinderconf.backends(self.deployment)}

        def known():
            try:
                pools = self.api('GET', '/scheduler-stats/get_pools')
            except (SandboxError, OSError):
                return False
            return wanted <= {p['name'] for p in pools['pools']}
        process.wait_for('the scheduler knowing pools %s' %
                         ', '.join(sorted(wanted)), known, timeout,
                         interval=0.5, daemons=daemons)

    def down(self, remove=True):
        """Stop every process of the sandbox by pid; remove its directory.

        Cinder services first, with the copy workers and exporters they
        left running, then RabbitMQ and its epmd, Keystone, MariaDB, etcd,
        the Ceph clusters.

        :param remove: also remove the directory (when all stopped).
        :raises SandboxError: when a process did not stop; the directory
                              is kept then.
        """
        errors = []
        for name in reversed(SERVICES):
            if name in self._state['services']:
                self._stop(errors, self.service(name).stop)
        left = children.stop_left_under(self.directory)
        if left:
            errors.append('copy workers or exporters did not stop: pids %s'
                          % left)
        if self._state.get('rabbitmq'):
            self._stop(errors, self._rabbitmq().stop)
        if self._state.get('keystone'):
            self._stop(errors, self._keystone().stop)
        if self._state.get('mariadb'):
            self._stop(errors, self._mariadb().stop)
        if self._state.get('etcd'):
            self._stop(errors, self._etcd().stop)
        for cluster in self.clusters().values():
            self._stop(errors, cluster.down)
        if self.network is not None and not errors:
            # once nothing runs in its namespaces
            self._stop(errors, self.network.down)
        if errors:
            raise SandboxError('sandbox in %s not fully stopped: %s' %
                               (self.directory, '; '.join(errors)))
        if remove:
            shutil.rmtree(self.directory, ignore_errors=True)

    @staticmethod
    def _stop(errors, stop):
        try:
            stop()
        except (process.DaemonError, ceph.CephClusterError,
                netns.NetworkError) as exc:
            errors.append(str(exc))

    def clusters(self):
        """The sandbox's Ceph clusters that were started.

        :returns: a dict of ``ceph`` and ``ceph-xcluster`` (the second
                  cluster) to :class:`ceph.CephCluster`.
        """
        dirs = {'ceph': self._state['ceph_dir'],
                # a record from before the second cluster has none
                'ceph-xcluster': self._state.get('xcluster_dir')}
        return {name: ceph.CephCluster.load(directory)
                for name, directory in dirs.items()
                if directory and os.path.isfile(
                    os.path.join(directory, ceph.STATE_FILE))}

    def _mariadb(self):
        return mariadb.MariaDB.from_dict(self._state['mariadb'])

    def _rabbitmq(self):
        return rabbitmq.RabbitMQ.from_dict(self._state['rabbitmq'])

    def _keystone(self):
        return keystone.Keystone.from_dict(self._state['keystone'])

    def _etcd(self):
        return etcd.Etcd.from_dict(self._state['etcd'])

    def pids(self):
        """Every running process of the sandbox, by daemon name.

        :returns: a dict of daemon names (``cinder-volume-target``,
                  ``mariadb``, ``epmd``, ``ceph``, ``ceph-xcluster``...)
                  to lists of pids.
        """
        found = {}
        for name in SERVICES:
            if name in self._state['services']:
                found['cinder-%s' % name] = self.service(name).processes()
        if self._state.get('rabbitmq'):
            mq = self._rabbitmq()
            found['rabbitmq'] = mq.server.processes()
            found['epmd'] = mq.epmd.processes()
        if self._state.get('keystone'):
            found['keystone'] = self._keystone().daemon.processes()
        if self._state.get('mariadb'):
            found['mariadb'] = self._mariadb().daemon.processes()
        if self._state.get('etcd'):
            found['etcd'] = self._etcd().daemon.processes()
        for name, cluster in self.clusters().items():
            found[name] = cluster.daemon_pids()
        return found

    # -- using it ----------------------------------------------------------

    @property
    def ceph(self):
        """The sandbox's :class:`ceph.CephCluster`."""
        return ceph.CephCluster.load(self._state['ceph_dir'])

    @property
    def xcluster(self):
        """The sandbox's second :class:`ceph.CephCluster`.

        Hosts of the sandbox know it as ``xcluster``; the
        ``rbd-xcluster`` backend keeps its volumes there.
        """
        if not self._state.get('xcluster_dir'):
            raise SandboxError('the sandbox in %s has no second cluster' %
                               self.directory)
        return ceph.CephCluster.load(self._state['xcluster_dir'])

    @property
    def source_host(self):
        """``host@backend#pool`` of the source backend."""
        return cinderconf.pool_host(settings.SOURCE)

    @property
    def target_host(self):
        """``host@backend#pool`` of the target backend."""
        return cinderconf.pool_host(settings.TARGET)

    @property
    def xcluster_host(self):
        """``host@backend#pool`` of the backend on the second cluster."""
        return cinderconf.pool_host(settings.XCLUSTER)

    @property
    def file_host(self):
        """``host@backend#pool`` of the NFS backend."""
        return cinderconf.pool_host(settings.FILE)

    @property
    def file_dir(self):
        """The directory of the NFS backend's volume files.

        The real directory: the volume services see it at
        :attr:`file_mount_point`, in their mount namespaces only.
        """
        return cinderconf.file_share_dir(self.deployment)

    @property
    def file_mount_point(self):
        """Where the file and target volume services see the share."""
        return cinderconf.nfs_mount_point(self.deployment)

    @property
    def api_url(self):
        return 'http://127.0.0.1:%d/v3' % self.deployment.api_port

    @property
    def openrc(self):
        """Path of the admin openrc (``openrc-member`` is beside it)."""
        return os.path.join(self.directory, 'openrc')

    @property
    def warnings(self):
        """Warnings of the start-up (e.g. the volume manager fallback)."""
        return list(self._state['warnings'])

    def env(self, member=False):
        """The openrc variables as a dict.

        :param member: for the non-admin user instead of the admin.
        """
        return cinderconf.openrc_env(self.deployment, member=member)

    def service(self, name):
        """Return the :class:`Service` called ``name`` (see SERVICES)."""
        spec = cinderconf.service_spec(name)
        record = self._state['services'].get(name)
        if record is None:
            raise SandboxError('service %s was never started' % name)
        return Service(self, spec, process.Daemon.from_dict(record))

    def project_id(self, member=False):
        """The Keystone id of the admin's (or the member's) project."""
        identity = keystone.MEMBER if member else keystone.ADMIN
        return self.deployment.identities[identity.key]['project_id']

    def _session(self, member):
        identity = keystone.MEMBER if member else keystone.ADMIN
        with self._lock:
            if identity.key not in self._sessions:
                self._sessions[identity.key] = keystone.session(
                    self.deployment.auth_url, identity,
                    self.deployment.identities[identity.key]['password'])
            return self._sessions[identity.key]

    def api(self, method, path, body=None, member=False, timeout=30):
        """Call the Cinder API (newest microversion) and return its JSON.

        Cinder is found in Keystone's catalog, with a token of the admin
        (or the member), kept and renewed by keystoneauth.

        :param path: below ``/v3/<project>``, e.g. ``/os-services``.
        :param member: as the non-admin user instead of the admin.
        :raises ApiError: on an HTTP error status.
        :raises ConnectionError: when Keystone or cinder-api do not answer.
        """
        from keystoneauth1 import exceptions as ksa_exceptions

        try:
            response = self._session(member).request(
                path, method, json=body, raise_exc=False, timeout=timeout,
                endpoint_filter=keystone.BLOCK_STORAGE_FILTER,
                headers={'OpenStack-API-Version':
                         'volume %s' % cinderconf.API_MICROVERSION,
                         'Accept': 'application/json'})
        except ksa_exceptions.ConnectionError as exc:
            raise ConnectionError('%s %s: %s' % (method, path, exc)) from exc
        except ksa_exceptions.HttpError as exc:
            # from Keystone, while getting a token
            raise ApiError(exc.http_status, method, path, str(exc)) from exc
        if response.status_code >= 400:
            raise ApiError(response.status_code, method, path, response.text)
        return response.json() if response.content else None

    def restart_database(self, down=5.0, timeout=60):
        """Shut MariaDB down cleanly, leave it down, then start it again.

        What the services see of a database restart: their connections
        break, and new ones are refused for ``down`` seconds.
        """
        self._restart('mariadb', self._mariadb(), down, timeout)

    def restart_broker(self, down=5.0, timeout=60):
        """Shut RabbitMQ down cleanly, leave it down, then start it again.

        What the services see of a broker restart: their connections
        close, their queues are gone, and new connections are refused for
        ``down`` seconds.
        """
        self._restart('rabbitmq', self._rabbitmq(), down, timeout)

    def _restart(self, key, server, down, timeout):
        """Shut ``server`` down, wait ``down`` s, start it, record it."""
        server.shutdown(timeout=timeout)
        time.sleep(down)
        try:
            server.start(timeout=timeout)
        finally:
            self._record(key, server.to_dict())

    def wait_volume_gone(self, volume_id, timeout=60):
        """Wait until the API answers 404 for the volume."""
        def gone():
            try:
                self.api('GET', '/volumes/%s' % volume_id)
            except ApiError as exc:
                if exc.status == 404:
                    return True
                raise
            return False
        process.wait_for('volume %s deleted' % volume_id, gone, timeout)

    def set_quota(self, **limits):
        """Raise the admin project's quotas, as an operator would.

        :param limits: Cinder's quota names, e.g. ``volumes=60``,
                       ``gigabytes=4096``.
        """
        self.api('PUT', '/os-quota-sets/%s' % self.project_id(),
                 {'quota_set': limits})

    def api_answers(self):
        """Whether cinder-api answers HTTP at all."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open('http://127.0.0.1:%d/' %
                             self.deployment.api_port, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # the version list answers 300
        except OSError:
            return False

    def service_list(self):
        """The API's service list (``os-services``)."""
        return self.api('GET', '/os-services')['services']

    def _service_entries(self):
        """The service list by ``(binary, host)``; empty when unavailable."""
        try:
            entries = self.service_list()
        except (SandboxError, OSError):
            return {}
        return {(entry['binary'], entry['host']): entry
                for entry in entries}

    def _service_entry(self, spec):
        return self._service_entries().get(
            (spec.binary, cinderconf.service_host(spec)))

    def wait_service_up(self, name, timeout=60):
        """Wait until a service is up and done with its start-up.

        cinder-api is up when it answers HTTP. The other services are up
        when the service list shows them ``up`` with two heartbeats sent
        since their last start: a service writes the first one before
        ``init_host`` and the periodic ones only after ``init_host`` and
        ``init_host_with_rpc``, and a service just started again must not
        be taken for up on the strength of its previous life's heartbeat.

        :raises process.DaemonError: on timeout, or at once when the
                                     service's process stops.
        """
        self.wait_services_up([name], timeout)

    def wait_services_up(self, names, timeout=60):
        """Wait until several services are up (see :meth:`wait_service_up`).

        The services are watched together, so the wait lasts as long as
        the slowest one's start-up, not the sum of them.

        :raises process.DaemonError: on timeout, or at once when a
                                     service's process stops.
        """
        names = list(names)
        services = [self.service(name) for name in names]
        if API in names:
            api = services.pop(names.index(API))
            process.wait_for('cinder-api on port %d' %
                             self.deployment.api_port, self.api_answers,
                             timeout, daemons=[api.daemon])
        # the database keeps whole seconds
        since = {s.name: int(s.daemon.started_at or 0) for s in services}
        heartbeats = {s.name: set() for s in services}

        def up(service, entries):
            entry = entries.get((service.binary, service.host))
            if not entry or not entry.get('updated_at'):
                return False
            if _utc_epoch(entry['updated_at']) >= since[service.name]:
                heartbeats[service.name].add(entry['updated_at'])
            return (entry['state'] == 'up' and
                    len(heartbeats[service.name]) >= 2)

        def all_up():
            entries = self._service_entries()
            # every service, so that each one's heartbeats are counted
            return all([up(service, entries) for service in services])
        if services:
            process.wait_for(
                ', '.join('%s on %s' % (s.binary, s.host)
                          for s in services) + ' up',
                all_up, timeout, interval=0.5,
                daemons=[s.daemon for s in services])

    def wait_service_down(self, name, timeout=60):
        """Wait until the service list shows a service ``down``.

        That takes ``service_down_time`` (8 s here) after its last
        heartbeat.
        """
        spec = cinderconf.service_spec(name)

        def down():
            entry = self._service_entry(spec)
            return bool(entry and entry['state'] == 'down')
        process.wait_for('%s on %s down' % (spec.binary,
                                            cinderconf.service_host(spec)),
                         down, timeout, interval=0.5)

    def cli_env(self, member=False):
        """The environment the ``cinder`` client runs with."""
        env = dict(os.environ)
        env.update(self.env(member=member))
        env['PATH'] = '%s:%s' % (self.deployment.bin_dir,
                                 env.get('PATH', '/usr/bin:/bin'))
        for key in ('no_proxy', 'NO_PROXY'):
            env[key] = ','.join(filter(None, ['127.0.0.1', 'localhost',
                                              env.get(key)]))
        return env

    def cinder(self, *args, member=False, timeout=CLI_TIMEOUT):
        """Run the stock ``cinder`` client against the sandbox.

        :param args: its arguments, e.g. ``('show', volume_id)``.
        :param member: as the non-admin user instead of the admin.
        :returns: its stdout.
        :raises CinderCommandError: when it exits non-zero.
        """
        return self._client('cinder', args, member, timeout)

    def openstack(self, *args, member=False, timeout=CLI_TIMEOUT):
        """Run the stock ``openstack`` client against the sandbox.

        :param args: its arguments, e.g. ``('volume', 'list')``.
        :param member: as the non-admin user instead of the admin.
        :returns: its stdout.
        :raises CinderCommandError: when it exits non-zero.
        """
        return self._client('openstack', args, member, timeout)

    def _client(self, binary, args, member, timeout):
        argv = [os.path.join(self.deployment.bin_dir, binary)]
        argv += [str(arg) for arg in args]
        result = subprocess.run(argv, env=self.cli_env(member=member),
                                capture_output=True, text=True,
                                timeout=timeout, check=False)
        if result.returncode != 0:
            raise CinderCommandError([binary] + argv[1:], result.returncode,
                                     result.stdout, result.stderr)
        return result.stdout
