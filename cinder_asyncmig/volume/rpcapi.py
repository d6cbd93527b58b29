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

"""Client side of the async migration RPC API.

The API has its own namespace and version history on the volume service's
topic, so it never changes (or is capped by) Cinder's own volume RPC
version. The server side is :class:`cinder_asyncmig.volume.manager.
AsyncMigrationEndpoint`, added to the volume service's endpoints by the
manager.
"""

from cinder.common import constants
from cinder import rpc
from cinder.volume import volume_utils
from oslo_config import cfg

from cinder_asyncmig import opts

CONF = cfg.CONF
NAMESPACE = 'asyncmig'


class AsyncMigrationAPI(rpc.RPCAPI):
    """Client side of the async migration RPC API.

    API version history:

    .. code-block:: none

        1.0 - Initial version: migrate_volume_target,
              complete_migration_target.
        1.1 - Adds cleanup_migration_source.
        1.2 - Adds set_migration_cap, pause_migration and
              resume_migration.
        1.3 - Adds abort_migration.
    """

    RPC_API_VERSION = '1.3'
    RPC_DEFAULT_VERSION = '1.0'
    TOPIC = constants.VOLUME_TOPIC
    BINARY = constants.VOLUME_BINARY

    @classmethod
    def determine_rpc_version_cap(cls):
        # Cinder derives its cap from the services table, which records
        # Cinder's own volume API version: ours is capped by configuration.
        return CONF[opts.GROUP].rpc_version_cap or cls.RPC_API_VERSION

    def _get_cctxt(self, host, version=None, **kwargs):
        return super(AsyncMigrationAPI, self)._get_cctxt(
            version=version, server=volume_utils.extract_host(host),
            namespace=NAMESPACE, **kwargs)

    def migrate_volume_target(self, ctxt, volume, dest_host, src_host):
        """Ask the target backend to take the volume over.

        :param volume: the volume, still on its source host.
        :param dest_host: the target's ``host@backend#pool``, or its
                          cluster's: any live member answers then.
        :param src_host: the source backend, ``{'host', 'capabilities'}``.
        :returns: ``(moved, migration_async, model_update)``.
        """
        cctxt = self._get_cctxt(dest_host,
                                timeout=CONF[opts.GROUP].target_call_timeout)
        return tuple(cctxt.call(ctxt, 'migrate_volume_target',
                                volume=volume, src_host=src_host))

    def complete_migration_target(self, ctxt, volume):
        """Have the volume's (target) host copy the data and commit.

        :param volume: the volume, already on the target host.
        """
        cctxt = self._get_cctxt(volume.service_topic_queue)
        cctxt.cast(ctxt, 'complete_migration_target', volume=volume)

    def can_clean_up_source(self):
        return self.client.can_send_version('1.1')

    def cleanup_migration_source(self, ctxt, volume, src_host):
        """Have the source backend remove a migrated volume's source.

        :param volume: the volume, already on the target host.
        :param src_host: the source's ``host@backend#pool``.
        """
        cctxt = self._get_cctxt(
            src_host, version='1.1',
            timeout=CONF[opts.GROUP].source_cleanup_timeout)
        cctxt.call(ctxt, 'cleanup_migration_source', volume=volume,
                   src_host=src_host)

    def can_steer_migrations(self, version='1.2'):
        """Whether the target hosts take the operators' requests.

        :param version: the request's: 1.2, or 1.3 for an abort.
        """
        return self.client.can_send_version(version)

    def _steer(self, ctxt, volume, method, version='1.2', **kwargs):
        # the host the migration runs on, a member of a cluster too
        cctxt = self._get_cctxt(volume.host, version=version,
                                timeout=CONF[opts.GROUP].target_call_timeout)
        cctxt.call(ctxt, method, volume=volume, **kwargs)

    def set_migration_cap(self, ctxt, volume, max_bytes_per_sec):
        """Have the volume's (target) host set its migration's cap.

        :param volume: the volume, migrating asynchronously.
        :param max_bytes_per_sec: bytes per second, 0 for no cap of the
            migration's own; None drops the operator's cap, and the
            volume metadata's applies again.
        """
        self._steer(ctxt, volume, 'set_migration_cap',
                    max_bytes_per_sec=max_bytes_per_sec)

    def pause_migration(self, ctxt, volume):
        """Have the volume's (target) host stop its copy until resumed."""
        self._steer(ctxt, volume, 'pause_migration')

    def resume_migration(self, ctxt, volume):
        """Have the volume's (target) host start a paused copy again."""
        self._steer(ctxt, volume, 'resume_migration')

    def abort_migration(self, ctxt, volume, force=False):
        """Have the volume's (target) host roll its migration back.

        Returns once the target has checked and begun the abort.

        :param force: abort an import-only migration, discarding the
                      writes made to the volume since it began.
        """
        self._steer(ctxt, volume, 'abort_migration', version='1.3',
                    force=force)
