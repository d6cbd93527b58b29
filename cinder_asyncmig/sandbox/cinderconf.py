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

"""What the sandbox writes: Cinder configuration and openrc.

Pure functions of the sandbox's layout and ports; :mod:`.cloud` writes
their output and starts the services. Backend and manager settings come
from :mod:`.settings`, shared with the devstack plugin.
"""

import collections
import hashlib
import os
import shlex

from cinder_asyncmig.sandbox import keystone
from cinder_asyncmig.sandbox import pki
from cinder_asyncmig import settings

#: Names of the sandbox's Cinder services, for ``Sandbox.service(name)``.
API = 'api'
SCHEDULER = 'scheduler'
VOLUME_SOURCE = 'volume-source'
VOLUME_TARGET = 'volume-target'
VOLUME_XCLUSTER = 'volume-xcluster'
VOLUME_FILE = 'volume-file'
VOLUME_TARGET_PEER = 'volume-target-peer'

#: The ``host`` of every service; volume services are ``host@backend``.
HOST = 'sandbox'
#: The host of the target backend's second volume service, when the
#: target runs as a Cinder cluster (``Deployment.target_cluster``).
PEER_HOST = 'sandbox-peer'
#: ``[DEFAULT] cluster`` of the target's volume services in that case.
TARGET_CLUSTER = 'asyncmig-target'

#: python-cinderclient 9.x and Cinder 29 both top out at 3.71.
API_MICROVERSION = '3.71'

#: A volume type fitting both backends. ``cinder migrate`` keeps the
#: volume's type and the scheduler checks it against the destination, so
#: a volume of a type pinned to the source (``volume_backend_name``) can
#: only move by retype; volumes of this type can be migrated both ways.
#: It is the default type, and new volumes of it land on the source: the
#: scheduler weighs backends by ``goodness_function`` only, and every
#: source is better than the target. The sources of other kinds get a
#: type of the same sort, named after them (see :func:`volume_types`).
MIGRATABLE_TYPE = 'rbd-migratable'
GOODNESS = {'source': '100', 'xcluster': '100', 'file': '100',
            'target': '50'}

#: The NFS server the file backend names. Nothing serves NFS there: the
#: sandbox mounts the share's directory in place (see :func:`bind_mounts`).
NFS_HOST = '127.0.0.1'

ServiceSpec = collections.namedtuple('ServiceSpec',
                                     'name binary backend host',
                                     defaults=(HOST,))

SERVICES = (
    ServiceSpec(API, 'cinder-api', None),
    ServiceSpec(SCHEDULER, 'cinder-scheduler', None),
    ServiceSpec(VOLUME_SOURCE, 'cinder-volume', settings.SOURCE),
    ServiceSpec(VOLUME_TARGET, 'cinder-volume', settings.TARGET),
    ServiceSpec(VOLUME_XCLUSTER, 'cinder-volume', settings.XCLUSTER),
    ServiceSpec(VOLUME_FILE, 'cinder-volume', settings.FILE),
    # only in a deployment whose target is a cluster
    ServiceSpec(VOLUME_TARGET_PEER, 'cinder-volume', settings.TARGET,
                PEER_HOST),
)

#: What the services need to know of the rest of the sandbox.
Deployment = collections.namedtuple('Deployment', [
    'directory',        # the sandbox directory
    'api_port',
    'transport_url',
    'database_url',
    'ceph_conf',
    'rbd_user',
    'rbd_keyring',
    'rbd_secret_uuid',
    'volume_manager',
    'bin_dir',          # where the cinder console scripts are
    'privileged',       # root: volume services get a host's /etc/ceph
    # the second Ceph cluster (settings.XCLUSTER); None in records written
    # before it existed
    'xcluster_ceph_conf',
    'xcluster_keyring',
    'xcluster_secret_uuid',
    # the target's exporter ports, [first, last]; None in older records
    'exporter_ports',
    # the exporter serves over NBD with TLS (librbd 20.2 and privileged)
    'nbd_tls',
    # Keystone's OS_AUTH_URL, and each keystone.IDENTITIES key's password,
    # user_id and project_id (the ids once Keystone has them)
    'auth_url',
    'identities',
    # the target backend runs as a Cinder cluster of two volume services
    # (VOLUME_TARGET and VOLUME_TARGET_PEER), coordinated through etcd
    'target_cluster',
    # [coordination] backend_url; None: tooz's file driver in the sandbox
    'coordination_url',
    # this host's address on the sandbox's network (cloud.Sandbox.network),
    # where the exporter listens; None: loopback
    'host_address',
], defaults=(None,) * 10)


def host_address(deployment):
    """The volume services' host's address: its network's, or loopback."""
    return deployment.host_address or '127.0.0.1'


def service_spec(name):
    """Return the :class:`ServiceSpec` called ``name``."""
    for spec in SERVICES:
        if spec.name == name:
            return spec
    raise KeyError('no sandbox service %r; the services are %s' % (
        name, ', '.join(s.name for s in SERVICES)))


def needs_root(backend):
    """Whether a backend works only when the sandbox runs as root.

    Cinder's NFS driver runs its file commands as root, and the sandbox
    mounts its share in place in the volume services' mount namespaces.
    """
    return backend.driver == settings.STOCK_NFS_DRIVER


def _served(deployment, backend):
    if backend.ceph_cluster not in (None, settings.CEPH_CLUSTER):
        if not deployment.xcluster_ceph_conf:
            return False
    return deployment.privileged or not needs_root(backend)


def services(deployment):
    """The :class:`ServiceSpec` of the services a deployment runs.

    Every one of :data:`SERVICES`, but the file backend's without root,
    and the second cluster's in a record from before it existed.
    """
    return tuple(spec for spec in SERVICES
                 if (spec.backend is None or
                     _served(deployment, spec.backend)) and
                 (spec.name != VOLUME_TARGET_PEER or
                  deployment.target_cluster))


def backends(deployment):
    """The backends (:class:`settings.Backend`) a deployment serves."""
    return tuple(spec.backend for spec in services(deployment)
                 if spec.backend is not None and spec.host == HOST)


def service_spec_of(backend):
    """Return the :class:`ServiceSpec` of the volume service of backend."""
    for spec in SERVICES:
        if spec.backend == backend:
            return spec
    raise KeyError(backend.name)


def service_host(spec):
    """The host of a service as the service list shows it."""
    if spec.backend is None:
        return spec.host
    return '%s@%s' % (spec.host, spec.backend.name)


def pool_host(backend):
    """The ``host@backend#pool`` of a backend, for ``cinder migrate``.

    Cinder's RBD driver reports no pools, so the pool is the backend name.
    """
    return '%s@%s#%s' % (HOST, backend.name, backend.name)


def scheduler_pool(deployment, backend):
    """The name the scheduler gives a backend's pool.

    A clustered backend's pool is its cluster's, whichever host reports.
    """
    if deployment.target_cluster and backend == settings.TARGET:
        return '%s@%s#%s' % (TARGET_CLUSTER, backend.name, backend.name)
    return pool_host(backend)


def path(deployment, *parts):
    """A path inside the sandbox directory."""
    return os.path.join(deployment.directory, *parts)


def config_path(deployment, spec):
    return path(deployment, 'etc', 'cinder-%s.conf' % spec.name)


def log_path(deployment, spec):
    return path(deployment, 'log', 'cinder-%s.log' % spec.name)


def host_ceph_dir(deployment):
    """The sandbox's /etc/ceph, seen there by the volume services."""
    return path(deployment, 'etc', 'ceph')


def host_ceph_files(deployment):
    """What a host of the sandbox's cloud holds in /etc/ceph.

    os-brick's RBD connector reads ``/etc/ceph/<cluster>.client.<user>
    .keyring``, ``<cluster>`` being the ``cluster_name`` of the connection
    info (the backend's ``rbd_cluster_name``); ``<cluster>.conf`` is
    where Ceph's tools look for the cluster by default.

    :returns: a list of ``(name in /etc/ceph, real path)``.
    """
    files = [
        ('%s.conf' % settings.CEPH_CLUSTER, deployment.ceph_conf),
        ('%s.client.%s.keyring' % (settings.CEPH_CLUSTER,
                                   deployment.rbd_user),
         deployment.rbd_keyring),
    ]
    if deployment.xcluster_ceph_conf:
        cluster = settings.XCLUSTER.ceph_cluster
        files += [
            ('%s.conf' % cluster, deployment.xcluster_ceph_conf),
            ('%s.client.%s.keyring' % (cluster, deployment.rbd_user),
             deployment.xcluster_keyring),
        ]
    return files


def nbd_server_dir(deployment):
    """qemu-nbd's x509 directory on the target host."""
    return path(deployment, 'etc', 'nbd-server')


def libnbd_dir(deployment):
    """The sandbox's /etc/pki/libnbd: every host's NBD client certificate."""
    return path(deployment, 'etc', 'pki-libnbd')


def file_share_dir(deployment):
    """The directory the file backend's share is, outside any namespace."""
    return path(deployment, 'nfs', 'share')


def nfs_share(deployment):
    """The file backend's share as Cinder names it (``host:/path``)."""
    return '%s:%s' % (NFS_HOST, file_share_dir(deployment))


def nfs_mount_point_base(deployment):
    """The file backend's ``nfs_mount_point_base``."""
    return path(deployment, 'state', 'mnt')


def nfs_mount_point(deployment):
    """Where Cinder's NFS driver and os-brick expect the share mounted.

    ``RemoteFsClient.get_mount_point``: the base joined with the md5 of
    the share string. os-brick counts the share as mounted when that path
    is a mount point in ``/proc/mounts``, and mounts nothing then.
    """
    digest = hashlib.md5(nfs_share(deployment).encode('utf-8'),
                         usedforsecurity=False).hexdigest()
    return os.path.join(nfs_mount_point_base(deployment), digest)


def sees_file_share(backend):
    """Whether a backend's host mounts the file backend's share.

    The file backend's own host does, and so does the target's: it reads
    the volume files of a shared-file source at the same path.
    """
    return (backend.name in settings.shared_file_backends(settings.BACKENDS)
            or backend.driver == settings.TARGET_DRIVER)


def host_mounts(deployment):
    """What every host of the sandbox's cloud has mounted.

    /etc/ceph, and with the NBD transport, /etc/pki/libnbd.

    :returns: a list of ``(directory, mount point)``.
    """
    mounts = [(host_ceph_dir(deployment), '/etc/ceph')]
    if deployment.nbd_tls:
        mounts.append((libnbd_dir(deployment), '/etc/pki/libnbd'))
    return mounts


def on_a_host(deployment, argv):
    """A command line running ``argv`` as on a host of the sandbox's cloud.

    A hypervisor, for instance: librbd finds the second cluster and the
    NBD client certificate where a real host keeps them.
    """
    return _in_mounts(host_mounts(deployment), argv)


def _in_mounts(mounts, argv):
    binds = []
    for directory, mount_point in mounts:
        binds += [directory, mount_point]
    return (['unshare', '--mount', '--propagation', 'private', '--',
             '/bin/sh', '-c', MOUNT_SCRIPT, 'sandbox-mounts'] + binds +
            ['--'] + list(argv))


def bind_mounts(deployment, spec):
    """The bind mounts of a volume service's mount namespace.

    The sandbox's ``etc/ceph`` is ``/etc/ceph``; the share directory of
    the file backend is at its mount point for the hosts that see it
    (:func:`sees_file_share`), "mounted in place": the machine has no NFS
    client or server, and Cinder and os-brick only check that the mount
    point is one.

    :returns: a list of ``(directory, mount point)``.
    """
    mounts = host_mounts(deployment)
    if sees_file_share(spec.backend):
        mounts.append((file_share_dir(deployment),
                       nfs_mount_point(deployment)))
    return mounts


def common_settings(deployment, host=HOST):
    """Settings every service of the sandbox shares.

    There is no ``log_file``: oslo.log then writes to stdout, which the
    sandbox sends to the service's log file, together with whatever is
    printed before logging is set up.
    """
    state = path(deployment, 'state')
    common = [
        ('DEFAULT', 'debug', 'True'),
        ('DEFAULT', 'state_path', state),
        ('DEFAULT', 'host', host),
        ('DEFAULT', 'my_ip', '127.0.0.1'),
        ('DEFAULT', 'transport_url', deployment.transport_url),
        # Cinder's volume.* notifications and the plugin's, on the broker
        ('oslo_messaging_notifications', 'driver', 'messagingv2'),
        ('DEFAULT', 'default_volume_type', MIGRATABLE_TYPE),
        ('DEFAULT', 'scheduler_default_weighers', 'GoodnessWeigher'),
        ('database', 'connection', deployment.database_url),
        ('oslo_concurrency', 'lock_path', os.path.join(state, 'lock')),
        ('coordination', 'backend_url',
         deployment.coordination_url or
         'file://%s' % os.path.join(state, 'coordination')),
    ]
    return common + list(settings.SERVICE_TIMING)


def api_settings(deployment):
    """The cinder-api settings: Keystone, loopback, one worker."""
    service = keystone.SERVICE
    return [
        ('DEFAULT', 'auth_strategy', 'keystone'),
        ('keystone_authtoken', 'www_authenticate_uri', deployment.auth_url),
        ('keystone_authtoken', 'auth_url', deployment.auth_url),
        ('keystone_authtoken', 'auth_type', 'password'),
        ('keystone_authtoken', 'username', service.user),
        ('keystone_authtoken', 'password',
         deployment.identities[service.key]['password']),
        ('keystone_authtoken', 'project_name', service.project),
        ('keystone_authtoken', 'user_domain_id', keystone.DOMAIN),
        ('keystone_authtoken', 'project_domain_id', keystone.DOMAIN),
        ('keystone_authtoken', 'region_name', keystone.REGION),
        ('keystone_authtoken', 'interface', 'public'),
        ('DEFAULT', 'api_paste_config',
         path(deployment, 'etc', 'api-paste.ini')),
        ('DEFAULT', 'resource_query_filters_file',
         path(deployment, 'etc', 'resource_filters.json')),
        ('DEFAULT', 'osapi_volume_listen', '127.0.0.1'),
        ('DEFAULT', 'osapi_volume_listen_port', str(deployment.api_port)),
        ('DEFAULT', 'osapi_volume_workers', '1'),
    ] + settings.api_options()


def backend_settings(deployment, backend, host=HOST):
    """The settings of one backend's section on one host."""
    if backend.ceph_cluster is None:
        return settings.nfs_backend_options(
            backend, NFS_HOST, file_share_dir(deployment),
            nfs_mount_point_base(deployment))
    conf, secret_uuid = deployment.ceph_conf, deployment.rbd_secret_uuid
    if backend.ceph_cluster != settings.CEPH_CLUSTER:
        conf = deployment.xcluster_ceph_conf
        secret_uuid = deployment.xcluster_secret_uuid
    state_dir = None
    if backend.driver == settings.TARGET_DRIVER:
        # what a volume service keeps on its own host
        state_dir = path(deployment, 'state', 'asyncmig-%s' % backend.name +
                         ('' if host == HOST else '-' + host))
    return settings.backend_options(backend, conf, deployment.rbd_user,
                                    secret_uuid, state_dir=state_dir,
                                    peers=backends(deployment))


def volume_settings(deployment, spec):
    """The settings of a cinder-volume serving one backend."""
    backend = spec.backend
    privsep = []
    if deployment.privileged:
        # os-brick and Cinder start their privsep daemons with
        # "sudo cinder-rootwrap", which finds neither in the virtualenv;
        # the sandbox already runs as root
        helper = '%s --config-file %s' % (
            os.path.join(deployment.bin_dir, 'privsep-helper'),
            config_path(deployment, spec))
        privsep = [(section, 'helper_command', helper)
                   for section in ('privsep_osbrick', 'cinder_sys_admin')]
    exporter = []
    if backend == settings.TARGET and deployment.exporter_ports:
        # a block of its own: sandboxes and benchmarks side by side
        exporter = [
            (backend.name, 'async_migration_exporter_bind_address',
             host_address(deployment)),
            (backend.name, 'async_migration_exporter_port_min',
             str(deployment.exporter_ports[0])),
            (backend.name, 'async_migration_exporter_port_max',
             str(deployment.exporter_ports[1]))]
        if deployment.nbd_tls:
            exporter += [
                (backend.name, 'async_migration_exporter_nbd_tls_dir',
                 nbd_server_dir(deployment)),
                (backend.name,
                 'async_migration_exporter_nbd_client_identities',
                 pki.CLIENT_IDENTITY)]
    cluster = []
    if backend == settings.TARGET and deployment.target_cluster:
        cluster = [('DEFAULT', 'cluster', TARGET_CLUSTER)]
    return ([('DEFAULT', 'enabled_backends', backend.name)] + privsep +
            cluster + settings.manager_options(deployment.volume_manager) +
            backend_settings(deployment, backend, spec.host) + exporter +
            [(backend.name, 'goodness_function', GOODNESS[backend.role])])


def _any_of(*backends):
    # the CapabilitiesFilter's syntax: "<or> a <or> b"
    return {'volume_backend_name': ' '.join('<or> %s' % b.name
                                            for b in backends)}


def volume_types(backends=settings.BACKENDS):
    """The sandbox's volume types as ``(name, description, extra_specs)``.

    One per backend, named after it. The source and the target of
    devstack's pair are pinned to their backend, and
    :data:`MIGRATABLE_TYPE` fits both. The type of a source of another
    kind fits its backend and the target: new volumes land on the source
    (:data:`GOODNESS`) and ``cinder migrate``, which keeps the type, can
    move them to the target.

    :param backends: the backends of the deployment.
    """
    target = settings.TARGET
    types = []
    for backend in backends:
        if backend in (settings.SOURCE, target):
            types.append((backend.name,
                          'volumes of the %s backend only' % backend.role,
                          {'volume_backend_name': backend.name}))
        else:
            types.append((backend.name,
                          'volumes of the %s backend, which can migrate '
                          'to %s' % (backend.name, target.name),
                          _any_of(backend, target)))
    types.append((MIGRATABLE_TYPE,
                  'volumes that can migrate between %s and %s' % (
                      settings.SOURCE.name, target.name),
                  _any_of(settings.SOURCE, target)))
    return types


def service_settings(deployment, spec):
    """Every setting of one service's configuration file."""
    result = common_settings(deployment, spec.host)
    if spec.name == API:
        result += api_settings(deployment)
    if spec.backend is not None:
        result += volume_settings(deployment, spec)
    return result


#: Bind-mounts "source target" pairs up to "--", then runs the rest.
MOUNT_SCRIPT = ('while [ "$1" != -- ]; do '
                'mount --bind "$1" "$2" || exit 1; shift 2; done; '
                'shift; exec "$@"')


def service_argv(deployment, spec):
    """The command line of one service.

    With root, a volume service runs in a mount namespace of its own with
    the :func:`bind_mounts` of its host: the sandbox's ``etc/ceph`` is
    ``/etc/ceph``, where os-brick reads the Ceph keyring when it attaches
    an RBD volume (generic migration does), as on a real host, and nothing
    of the sandbox lands in the machine's /etc/ceph. ``exec`` keeps one
    pid from ``unshare`` to cinder-volume.
    """
    argv = [os.path.join(deployment.bin_dir, spec.binary),
            '--config-file', config_path(deployment, spec)]
    if spec.backend is None or not deployment.privileged:
        return argv
    return _in_mounts(bind_mounts(deployment, spec), argv)


def openrc_env(deployment, member=False):
    """The variables of the sandbox's openrc.

    :param member: for the non-admin identity instead of the admin.
    :returns: a dict of variable names to values.
    """
    identity = keystone.MEMBER if member else keystone.ADMIN
    ids = deployment.identities
    source, target = settings.SOURCE, settings.TARGET
    env = {
        'OS_AUTH_URL': deployment.auth_url,
        'OS_IDENTITY_API_VERSION': '3',
        'OS_USERNAME': identity.user,
        'OS_PASSWORD': ids[identity.key]['password'],
        'OS_PROJECT_NAME': identity.project,
        'OS_USER_DOMAIN_ID': keystone.DOMAIN,
        'OS_PROJECT_DOMAIN_ID': keystone.DOMAIN,
        'OS_REGION_NAME': keystone.REGION,
        'OS_INTERFACE': 'public',
        'OS_VOLUME_API_VERSION': API_MICROVERSION,
        'ASYNCMIG_SANDBOX_DIR': deployment.directory,
        'ASYNCMIG_ADMIN_USER_ID': ids[keystone.ADMIN.key]['user_id'],
        'ASYNCMIG_ADMIN_PROJECT_ID': ids[keystone.ADMIN.key]['project_id'],
        'ASYNCMIG_MEMBER_USER_ID': ids[keystone.MEMBER.key]['user_id'],
        'ASYNCMIG_MEMBER_PROJECT_ID': ids[keystone.MEMBER.key]['project_id'],
        'ASYNCMIG_SOURCE_HOST': pool_host(source),
        'ASYNCMIG_TARGET_HOST': pool_host(target),
        'ASYNCMIG_SOURCE_TYPE': source.name,
        'ASYNCMIG_TARGET_TYPE': target.name,
        'ASYNCMIG_MIGRATABLE_TYPE': MIGRATABLE_TYPE,
        'ASYNCMIG_SOURCE_POOL': source.pool,
        'ASYNCMIG_TARGET_POOL': target.pool,
        'CEPH_CONF': deployment.ceph_conf,
        'CEPH_ARGS': '--id %s --keyring %s' % (deployment.rbd_user,
                                               deployment.rbd_keyring),
    }
    served = backends(deployment)
    if settings.XCLUSTER in served:
        env.update({
            'ASYNCMIG_XCLUSTER_HOST': pool_host(settings.XCLUSTER),
            'ASYNCMIG_XCLUSTER_TYPE': settings.XCLUSTER.name,
            'ASYNCMIG_XCLUSTER_POOL': settings.XCLUSTER.pool,
            'ASYNCMIG_XCLUSTER_CEPH_CONF': deployment.xcluster_ceph_conf,
            'ASYNCMIG_XCLUSTER_CEPH_ARGS': '--id %s --keyring %s' % (
                deployment.rbd_user, deployment.xcluster_keyring),
        })
    if settings.FILE in served:
        env.update({
            'ASYNCMIG_FILE_HOST': pool_host(settings.FILE),
            'ASYNCMIG_FILE_TYPE': settings.FILE.name,
            'ASYNCMIG_FILE_DIR': file_share_dir(deployment),
            'ASYNCMIG_FILE_MOUNT_POINT': nfs_mount_point(deployment),
        })
    return env


def render_openrc(deployment, member=False):
    """Return the text of an openrc file for ``.``-sourcing."""
    env = openrc_env(deployment, member=member)
    who = ('non-admin (%s)' % keystone.MEMBER.user if member
           else keystone.ADMIN.user)
    lines = ['# cinder-asyncmig sandbox in %s, as the %s user.' %
             (deployment.directory, who),
             '# Generated by cinder-asyncmig-sandbox; . this file.',
             '# It holds a password: it is readable by its owner only.',
             'export PATH=%s:"$PATH"' % shlex.quote(deployment.bin_dir),
             '# loopback never goes through a proxy of the environment',
             'export no_proxy=127.0.0.1,localhost${no_proxy:+,$no_proxy}',
             'export NO_PROXY=127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}']
    lines += ['export %s=%s' % (key, shlex.quote(value))
              for key, value in sorted(env.items())]
    return '\n'.join(lines) + '\n'
