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

"""Configuration options of the async migration plugin.

The target driver's options live in the backend's section, registered the
way Cinder's RBD driver registers its own. ``list_opts`` feeds
oslo-config-generator through the ``oslo.config.opts`` entry point.
"""

from oslo_config import cfg
from oslo_config import types
from oslo_utils import units

from cinder.volume import configuration

from cinder_asyncmig.sources import kinds

target_opts = [
    cfg.ListOpt('async_migration_source_kinds',
                item_type=types.String(choices=kinds.ALL),
                # the exporter listens on the network: opt-in
                default=[k for k in kinds.ALL if k != kinds.EXPORTER],
                help='Kinds of source volume this backend takes over as a '
                     'remote parent when it is the target of a migration; '
                     'the best kind a source allows is used. '
                     '"%(linked)s": an RBD volume in the same Ceph '
                     'cluster, taken over with a linked librbd live '
                     'migration. "%(native)s": an RBD volume in another '
                     'Ceph cluster read by librbd itself (needs Ceph 20.2 '
                     'or later on every client, detected, and the other '
                     'cluster\'s /etc/ceph/<rbd_cluster_name>.conf and '
                     'keyring of the source backend\'s rbd_user on every '
                     'host that opens the volume during the copy). '
                     '"%(file)s": '
                     'a volume that is a file at the same path on every '
                     'host (see async_migration_shared_file_backends), '
                     'read as a raw file stream. "%(exported)s": any volume '
                     'os-brick can attach on this host, served read-only '
                     'to librbd as a raw stream by an exporter on this '
                     'host, over HTTP or NBD (see '
                     'async_migration_exporter_transport). An empty list '
                     'turns asynchronous migration to this backend off, '
                     'and Cinder falls back to its generic migration.' % {
                         'linked': kinds.RBD_LINKED,
                         'native': kinds.RBD_NATIVE,
                         'file': kinds.SHARED_FILE,
                         'exported': kinds.EXPORTER}),
    cfg.ListOpt('async_migration_shared_file_backends',
                default=[],
                help='volume_backend_name of the file-based backends '
                     '(for example Cinder\'s NFS driver) whose volume '
                     'files are at the same path on this host and on every '
                     'hypervisor that attaches this backend\'s volumes. '
                     'Their volumes are taken over as "%s" sources, read '
                     'by librbd directly from the file.' % kinds.SHARED_FILE),
    cfg.StrOpt('async_migration_state_dir',
               default='$state_path/asyncmig',
               help='Directory where background copy workers write their '
                    'status files. It must be local to the host and '
                    'writable by cinder-volume.'),
    cfg.FloatOpt('async_migration_poll_interval',
                 default=2.0, min=0.1, max=60,
                 help='Seconds between two reads of the background copy\'s '
                      'progress; each read updates the migration record.'),
    cfg.IntOpt('async_migration_copy_max_bytes_per_sec',
               default=128 * units.Mi, min=0,
               help='Cap, in bytes per second, on the background copy of '
                    'each migration to this backend, whatever its source '
                    'kind. The default, 128 MiB/s, spares the IO of the '
                    'cluster\'s other images while the copy runs; on fast '
                    'flash, raise it. A volume\'s metadata '
                    '"async_migration_max_read_bytes_per_sec" sets a cap '
                    'for its own migration, and can be changed while it '
                    'copies; the lower cap applies. 0 means no cap. It does '
                    'not hold while a client uses the volume: librbd then '
                    'runs the copy in that client (a hypervisor), '
                    'which holds the image\'s exclusive lock; see '
                    'async_migration_lock_holder_copy_ops.'),
    cfg.IntOpt('async_migration_lock_holder_copy_ops',
               default=1, min=0, max=64,
               help='Object copies at once of a capped copy, where librbd '
                    'runs it in the client that holds the volume\'s '
                    'exclusive lock (its hypervisor) and the cap cannot '
                    'hold. Set on the destination image as librbd\'s '
                    'per-image rbd_concurrent_management_ops while the '
                    'copy runs, so that the hypervisor\'s librbd reads it. '
                    'A copy run by the worker is held to the cap anyway. '
                    '0 leaves librbd\'s own setting (10 by default); an '
                    'uncapped copy never gets one.'),
    cfg.IntOpt('async_migration_max_concurrent_copies',
               default=4, min=0,
               help='How many background copies this backend runs at once. '
                    'The migrations beyond it wait in line, first come '
                    'first served: their volumes are usable here meanwhile '
                    '(migrating_attachable), and the admin API shows them '
                    'in phase queued with their place in line, with '
                    'nothing running for them. 0 means no bound. Clients '
                    'that start many migrations (openstack volume '
                    'migration drain) keep within it. Each copy is a '
                    'worker process with its own Ceph '
                    'client, watched from a thread of the volume manager\'s '
                    'pool: keep this below '
                    'backend_native_threads_pool_size.'),
    cfg.IntOpt('async_migration_stall_timeout',
               default=600, min=30,
               help='Seconds the background copy may go without progress '
                    'before its worker is stopped and the migration is '
                    'reported as failed. The migration itself is left '
                    'prepared, so completing it again resumes the copy.'),
    cfg.IntOpt('async_migration_lock_holder_stall_timeout',
               default=90, min=30,
               help='Seconds a copy that librbd runs in the client holding '
                    'the volume\'s exclusive lock (its hypervisor) may go '
                    'without progress before a new copy worker asks that '
                    'client again. A lock holder that lost touch with the '
                    'worker (a network partition) may finish or stop its '
                    'copy without the worker ever hearing of it. Asking '
                    'again is cheap: librbd passes over the objects '
                    'already copied. async_migration_stall_timeout still '
                    'bounds the time without progress in all.'),
    cfg.IntOpt('async_migration_worker_restarts',
               default=3, min=0,
               help='How many times a background copy worker that died '
                    'is restarted within one completion before the '
                    'completion fails.'),
    cfg.IntOpt('async_migration_blocklist_expiry',
               default=3600, min=60,
               help='Seconds a dead copy worker\'s Ceph client stays '
                    'blocklisted. Blocklisting frees the image at once '
                    'instead of after the watch timeout (about 30 s); it '
                    'is only done for workers known to be dead.'),
]

exporter_opts = [
    cfg.HostAddressOpt('async_migration_exporter_bind_address',
                       default='$my_ip',
                       help='IPv4 address or host name the exporter of a '
                            'source volume listens on, over HTTP or NBD. '
                            'librbd clients '
                            'on the destination side (the copy worker and '
                            'the hypervisors the volume is attached to) '
                            'read the source through it, so it must be '
                            'reachable from them. The wildcard address '
                            'and IPv6 literals are refused: the address '
                            'becomes part of the URL or NBD URI librbd '
                            'records, and '
                            'librbd 16.2 cannot parse IPv6 literals.'),
    cfg.PortOpt('async_migration_exporter_port_min',
                default=10800,
                help='Lowest TCP port an exporter may listen on, over HTTP '
                     'or NBD. A new export takes the first free port of the '
                     'range.'),
    cfg.PortOpt('async_migration_exporter_port_max',
                default=10899,
                help='Highest TCP port an exporter may listen on, over '
                     'HTTP or NBD. The range bounds how many volumes this '
                     'host exports at once.'),
    cfg.StrOpt('async_migration_exporter_cert_file',
               help='PEM certificate (chain) the exporter presents with '
                    'the http transport. When set together with '
                    'async_migration_exporter_key_file the exporter '
                    'serves HTTPS with TLS 1.2 or newer; the librbd '
                    'clients must trust the certificate. The nbd transport '
                    'takes its certificates from '
                    'async_migration_exporter_nbd_tls_dir instead.'),
    cfg.StrOpt('async_migration_exporter_key_file',
               help='PEM private key of '
                    'async_migration_exporter_cert_file.'),
    cfg.IntOpt('async_migration_exporter_max_bytes_per_sec',
               default=0, min=0,
               help='Cap, in bytes per second, on what one exporter reads '
                    'from its source volume, summed over all its '
                    'connections; with the nbd transport, a qemu throttle '
                    'group. 0 means no cap.'),
    cfg.IntOpt('async_migration_exporter_max_connections',
               default=16, min=1, max=1024,
               help='With the http transport: requests one exporter '
                    'answers at once (its worker threads). While every '
                    'worker is busy, further requests wait; idle '
                    'keep-alive connections hold no worker and close after '
                    'async_migration_exporter_timeout. With the nbd '
                    'transport: clients qemu-nbd serves at once.'),
    cfg.IntOpt('async_migration_exporter_timeout',
               default=30, min=1, max=3600,
               help='With the http transport: seconds the exporter waits '
                    'for a whole request head, keeps an idle connection '
                    'open and waits for one read or write of a client, '
                    'before it closes the connection. With the nbd '
                    'transport: seconds qemu-nbd has to start serving.'),
    cfg.StrOpt('async_migration_exporter_transport',
               default='auto', choices=('auto', 'http', 'nbd'),
               help='How the exporter serves a source LUN. "nbd": '
                    'qemu-nbd with TLS and x509 client certificates, read '
                    'by librbd\'s nbd stream (librbd 20.2 or later here and '
                    'on every hypervisor; needs '
                    'async_migration_exporter_nbd_tls_dir). "http": the '
                    'built-in HTTP exporter, secured by an unguessable URL '
                    '(and HTTPS with a certificate). "auto": nbd where '
                    'librbd has the nbd stream and the TLS directory is '
                    'set, http otherwise. An RBD image of another cluster '
                    'is always served over http.'),
    cfg.StrOpt('async_migration_exporter_nbd_tls_dir',
               help='Directory with the x509 files qemu-nbd serves with: '
                    'ca-cert.pem (the CA of the client certificates), '
                    'server-cert.pem (valid for '
                    'async_migration_exporter_bind_address) and '
                    'server-key.pem. Every librbd client of the destination '
                    'must hold a certificate of that CA in '
                    '/etc/pki/libnbd (ca-cert.pem, client-cert.pem, '
                    'client-key.pem), libnbd\'s default for root.'),
    cfg.ListOpt('async_migration_exporter_nbd_client_identities',
                default=[],
                help='Distinguished names of the client certificates '
                     'allowed to read an NBD export, e.g. CN=compute-1. '
                     'Empty: any certificate of the CA.'),
]

manager_opts = [
    cfg.StrOpt('rpc_version_cap',
               help='Highest version of the async migration RPC API this '
                    'service sends, e.g. "1.0". Set it to the version of '
                    'the oldest cinder-volume during a rolling upgrade, '
                    'unset it once every volume service runs the new '
                    'release.'),
    cfg.FloatOpt('progress_interval',
                 default=2.0, min=0.5, max=5.0,
                 help='Seconds between two updates of a migrating '
                      'volume\'s progress in its metadata '
                      '("async_migration_progress").'),
    cfg.IntOpt('notification_interval',
               default=60, min=1,
               help='Seconds between two volume.async_migration.progress '
                    'notifications of a migration in the same phase; a '
                    'change of phase is notified at once. Notifications go '
                    'out only where [oslo_messaging_notifications] driver '
                    'is set.'),
    cfg.IntOpt('target_call_timeout',
               default=120, min=10,
               help='Seconds the source volume service waits for the '
                    'target to take a volume over. Taking over is fast; '
                    'this only bounds a target that does not answer.'),
    cfg.IntOpt('source_cleanup_timeout',
               default=120, min=10,
               help='Seconds the target volume service waits for the '
                    'source volume service to remove a migrated volume\'s '
                    'source. When it does not answer in time the volume '
                    'gets migration_status "deleting" and the clean-up is '
                    'retried when the target service restarts.'),
    cfg.IntOpt('retry_interval',
               default=10, min=1,
               help='Seconds before the first retry of a background copy '
                    'or commit that failed. The volume stays '
                    'migrating_attachable and usable; the interval doubles '
                    'with every failure up to retry_max_interval.'),
    cfg.IntOpt('retry_max_interval',
               default=600, min=1,
               help='Longest wait, in seconds, between two retries of a '
                    'failed background copy or commit.'),
]

GROUP = 'asyncmig'

CONF = cfg.CONF
CONF.register_opts(target_opts, group=configuration.SHARED_CONF_GROUP)
CONF.register_opts(exporter_opts, group=configuration.SHARED_CONF_GROUP)
CONF.register_opts(manager_opts, group=GROUP)


def list_opts():
    """Return the plugin's options for oslo-config-generator.

    :returns: a list of (group, options) pairs.
    """
    return [(configuration.SHARED_CONF_GROUP, target_opts + exporter_opts),
            (GROUP, manager_opts)]


def target_default(name):
    """The default of one of a target backend's options."""
    for opt in target_opts:
        if opt.name == name:
            return opt.default
    raise LookupError(name)
