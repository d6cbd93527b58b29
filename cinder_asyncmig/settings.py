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

"""The backends and volume manager of a deployment, in one place.

Both the sandbox (``cinder-asyncmig-sandbox up``) and the devstack plugin
(``devstack/plugin.sh``, through ``cinder-asyncmig-sandbox print-settings``)
write cinder.conf from the functions below, so what is tested is what is
deployed. A setting is a ``(section, key, value)`` triple, the arguments of
devstack's ``iniset``.

Two RBD backends on one Ceph cluster (:data:`SOURCE`, :data:`TARGET`) are
what devstack deploys. The sandbox adds sources of other kinds for the
target to take over: :data:`XCLUSTER` on a second Ceph cluster and
:data:`FILE` on an NFS share (``sandbox_only``).
"""

import collections

from cinder_asyncmig.sources import kinds

STOCK_VOLUME_MANAGER = 'cinder.volume.manager.VolumeManager'
VOLUME_MANAGER = 'cinder_asyncmig.volume.manager.AsyncMigrationVolumeManager'

STOCK_RBD_DRIVER = 'cinder.volume.drivers.rbd.RBDDriver'
STOCK_NFS_DRIVER = 'cinder.volume.drivers.nfs.NfsDriver'
TARGET_DRIVER = 'cinder_asyncmig.volume.drivers.rbd.AsyncMigrationRBDDriver'

#: Ceph's default cluster name: ``/etc/ceph/ceph.conf`` and
#: ``/etc/ceph/ceph.client.<user>.keyring`` on every host.
CEPH_CLUSTER = 'ceph'
#: The name of a second cluster, as the hosts of a cloud with two
#: clusters know it: ``/etc/ceph/xcluster.conf`` and
#: ``/etc/ceph/xcluster.client.<user>.keyring``.
SECOND_CEPH_CLUSTER = 'xcluster'

#: One Cinder backend: its section (also its ``volume_backend_name`` and
#: the name of its volume type), its role in a migration, its Ceph pool,
#: its driver, options beyond the driver's usual ones as ``(key, value)``
#: pairs, the name of its Ceph cluster (None: not an RBD backend) and
#: whether only the sandbox has it (devstack does not).
Backend = collections.namedtuple(
    'Backend', 'name role pool driver options ceph_cluster sandbox_only',
    defaults=(CEPH_CLUSTER, False))

SOURCE = Backend(name='rbd-src', role='source', pool='volumes-src',
                 driver=STOCK_RBD_DRIVER, options=())
TARGET = Backend(name='rbd-async', role='target', pool='volumes-async',
                 driver=TARGET_DRIVER,
                 options=(('async_migration_source_kinds',
                           ','.join(kinds.ALL)),))
#: Cinder's RBD driver on another Ceph cluster: a source the target can
#: only read through that cluster's client configuration.
XCLUSTER = Backend(name='rbd-xcluster', role='xcluster',
                   pool='volumes-xcluster', driver=STOCK_RBD_DRIVER,
                   options=(), ceph_cluster=SECOND_CEPH_CLUSTER,
                   sandbox_only=True)
#: Cinder's NFS driver with sparse raw files and no snapshots: a source
#: whose volumes are files at the same path on the target's host.
FILE = Backend(name='nfs-src', role='file', pool=None,
               driver=STOCK_NFS_DRIVER,
               options=(('nfs_sparsed_volumes', 'True'),
                        ('nfs_qcow2_volumes', 'False'),
                        ('nfs_snapshot_support', 'False'),
                        ('nas_secure_file_operations', 'false'),
                        ('nas_secure_file_permissions', 'false')),
               ceph_cluster=None, sandbox_only=True)
BACKENDS = (SOURCE, TARGET, XCLUSTER, FILE)
#: The backends the devstack plugin configures (on devstack-plugin-ceph).
DEVSTACK_BACKENDS = tuple(b for b in BACKENDS if not b.sandbox_only)

#: Sandbox only: quick heartbeats so that a killed cinder-volume shows
#: ``down`` within seconds, and no start-up delays meant for big clouds.
SERVICE_TIMING = (
    ('DEFAULT', 'report_interval', '2'),
    ('DEFAULT', 'service_down_time', '8'),
    ('DEFAULT', 'periodic_interval', '5'),
    ('DEFAULT', 'periodic_fuzzy_delay', '0'),
    ('DEFAULT', 'scheduler_driver_init_wait_time', '10'),
    # a source service that is down is given up on sooner
    ('DEFAULT', 'rpc_response_timeout', '20'),
    ('asyncmig', 'source_cleanup_timeout', '15'),
)


def backend(name):
    """Return the backend called ``name`` (``KeyError`` if none)."""
    for candidate in BACKENDS:
        if name in (candidate.name, candidate.role):
            return candidate
    raise KeyError(name)


def backend_options(spec, ceph_conf, rbd_user, secret_uuid, pool=None,
                    name=None, state_dir=None, peers=()):
    """Return the settings of one RBD backend's section.

    :param spec: a :class:`Backend` with a Ceph cluster.
    :param ceph_conf: ceph.conf of the cluster (``rbd_ceph_conf``).
    :param rbd_user: Ceph client name without ``client.``; it needs
                     ``profile rbd`` on every pool of the deployment.
    :param secret_uuid: libvirt secret of that client (``rbd_secret_uuid``).
    :param pool: Ceph pool, if not the spec's.
    :param name: section and backend name, if not the spec's.
    :param state_dir: the target driver's ``async_migration_state_dir``
                      (its default, under ``state_path``, when None).
    :param peers: the other backends of the deployment; the target names
                  the file-based ones among them as shared-file sources.
    :returns: a list of ``(section, key, value)``.
    :raises ValueError: for a backend that is not RBD.
    """
    if spec.ceph_cluster is None:
        raise ValueError('%s is not an RBD backend; its settings come from '
                         'nfs_backend_options' % spec.name)
    section = name or spec.name
    values = [
        ('volume_driver', spec.driver),
        ('volume_backend_name', section),
        ('rbd_pool', pool or spec.pool),
        ('rbd_ceph_conf', ceph_conf),
        ('rbd_user', rbd_user),
        ('rbd_secret_uuid', secret_uuid),
    ]
    if spec.ceph_cluster != CEPH_CLUSTER:
        # os-brick reads /etc/ceph/<cluster>.client.<user>.keyring
        values.append(('rbd_cluster_name', spec.ceph_cluster))
    values.extend(spec.options)
    if spec.driver == TARGET_DRIVER:
        if state_dir:
            values.append(('async_migration_state_dir', state_dir))
        shared = shared_file_backends(peers)
        if shared:
            values.append(('async_migration_shared_file_backends',
                           ','.join(shared)))
    return [(section, key, value) for key, value in values]


def nfs_backend_options(spec, nas_host, share_path, mount_point_base,
                        name=None):
    """Return the settings of one NFS backend's section.

    :param spec: a :class:`Backend` with Cinder's NFS driver.
    :param nas_host: the NFS server (``nas_host``).
    :param share_path: the export on that server (``nas_share_path``).
    :param mount_point_base: where the share is mounted, under a
                             directory named by the hash of
                             ``nas_host:share_path`` (os-brick's
                             ``RemoteFsClient.get_mount_point``).
    :param name: section and backend name, if not the spec's.
    :returns: a list of ``(section, key, value)``.
    """
    section = name or spec.name
    values = [
        ('volume_driver', spec.driver),
        ('volume_backend_name', section),
        ('nas_host', nas_host),
        ('nas_share_path', share_path),
        ('nfs_mount_point_base', mount_point_base),
    ]
    values.extend(spec.options)
    return [(section, key, value) for key, value in values]


def shared_file_backends(backends):
    """Names of the backends whose volumes are files on a shared mount."""
    return [b.name for b in backends if b.driver == STOCK_NFS_DRIVER]


def manager_options(volume_manager=VOLUME_MANAGER):
    """Return the settings that select the volume manager."""
    return [('DEFAULT', 'volume_manager', volume_manager)]


def api_options():
    """Return the cinder-api settings: Cinder's extensions and ours."""
    return [('DEFAULT', 'osapi_volume_extension',
             ['cinder.api.contrib.standard_extensions',
              'cinder_asyncmig.api.async_migration.Async_migration'])]


def iniset_lines(settings):
    """Render settings as ``section key value`` lines for ``iniset``.

    The value is last, so ``read -r section key value`` keeps its spaces.
    A list value (a multi-valued option) gives one line per item.
    """
    lines = []
    for section, key, value in settings:
        for part in (section, key):
            if not part or any(c.isspace() for c in part):
                raise ValueError('section and key must be single words: '
                                 '%r %r' % (section, key))
        for item in value if isinstance(value, list) else [value]:
            if '\n' in str(item):
                raise ValueError('value of %s.%s spans lines' % (section,
                                                                 key))
            lines.append('%s %s %s\n' % (section, key, item))
    return ''.join(lines)


def render_ini(settings):
    """Render settings as an ini file, sections in order of appearance.

    ``DEFAULT`` comes first; a key set twice in a section keeps its last
    value, the way repeated ``iniset`` calls behave. A list value is one
    line per item (a multi-valued option).
    """
    sections = {'DEFAULT': {}}
    for section, key, value in settings:
        sections.setdefault(section, {})[key] = value
    chunks = []
    for section, values in sections.items():
        if values or section != 'DEFAULT':
            chunks.append('[%s]\n%s' % (section, ''.join(
                '%s = %s\n' % (key, item) for key, value in values.items()
                for item in (value if isinstance(value, list) else [value]))))
    return '\n'.join(chunks)
