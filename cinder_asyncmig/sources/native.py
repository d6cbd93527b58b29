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

"""An RBD source in another Ceph cluster, read by librbd itself.

librbd (Ceph 20.2 and later, detected from its version) imports an image
of another cluster with a native source spec that names the cluster and
the client, never a key: every librbd client that opens the destination
(this host, the copy worker, hypervisors) connects to that cluster the
way Ceph's tools do, reading ``/etc/ceph/<cluster>.conf`` and the
client's keyring. The cluster is the one the source backend reports in
its ``location_info`` (its ``rbd_cluster_name``), the client its
``rbd_user``. Ceph 20.2.4 has no spec form with monitor addresses and a
key; on older librbd, or when this host does not know the cluster, the
kind declines and the exporter (when enabled) serves the source.

What librbd was seen to do, and what the kind does about it:

- a native spec imports a snapshot, which librbd does not protect: the
  kind creates and protects one before prepare;
- execute copies the source's current data, not the snapshot's: the
  source must not be written, and an image open by a client is refused;
- a native spec naming a missing image crashes Pacific's librbd and is
  an ambiguous ImageNotFound later: the kind opens the cluster, the pool
  and the image first, and says which one is missing;
- execute copies the snapshot to the destination, protected: :meth:`
  NativeKind.stop` removes it there and at the source once the migration
  ends, so that the source's backend can remove the source.
"""

import contextlib

from cinder.i18n import _
from cinder import utils
from cinder.volume.drivers import rbd as cinder_rbd
from oslo_log import log as logging

from cinder_asyncmig.engine import specs
from cinder_asyncmig.engine import state
from cinder_asyncmig import exception
from cinder_asyncmig.sources import base
from cinder_asyncmig.sources import kinds
from cinder_asyncmig.sources import rbd

LOG = logging.getLogger(__name__)

#: the snapshot of the source a native import reads
SNAPSHOT = 'asyncmig-native-import'


class NativeKind(base.ImportKind):
    """An RBD image in another cluster, imported by librbd."""

    name = kinds.RBD_NATIVE

    def __init__(self, driver):
        super(NativeKind, self).__init__(driver)
        self.rados = driver.rados
        self._driver = driver

    @contextlib.contextmanager
    def _remote(self, cluster_name, user):
        """A connection to another cluster, made as librbd will make it.

        Ceph's default search finds the conf (``/etc/ceph/<cluster>.conf``
        unless ``CEPH_CONF`` is set) and the keyring; timeouts are the
        backend's ``rados_connect_timeout``, as Cinder sets them.
        """
        client = utils.tpool_wrap(self.rados.Rados(
            rados_id=user, clustername=cluster_name, conffile=''))
        try:
            timeout = self.configuration.rados_connect_timeout
            if timeout >= 0:
                for option in ('rados_osd_op_timeout', 'rados_mon_op_timeout',
                               'client_mount_timeout'):
                    client.conf_set(option, str(timeout))
            client.connect()
            yield client
        finally:
            client.shutdown()

    def decline_reason(self, offer):
        source = rbd.from_offer(offer)
        reason = rbd.cluster_reason(source, offer, same_cluster=False)
        if reason:
            return reason
        features = self.engine.features
        if not features.native_cross_cluster:
            return _('its RBD source is in another Ceph cluster (fsid '
                     '%(fsid)s) and librbd here is Ceph %(found)s; native '
                     'cross-cluster import needs 20.2') % {
                'fsid': source.fsid, 'found': features.release}
        try:
            with self._remote(source.cluster_name, source.user) as client:
                fsid = client.get_fsid()
        except self.rados.Error as exc:
            return _('this host cannot connect to the Ceph cluster '
                     '%(cluster)s as client.%(user)s the way librbd would '
                     '(/etc/ceph/%(cluster)s.conf and the client\'s keyring): '
                     '%(err)s') % {'cluster': source.cluster_name,
                                   'user': source.user,
                                   'err': type(exc).__name__}
        if fsid != source.fsid:
            return _('the Ceph cluster this host knows as %(cluster)s has '
                     'the fsid %(found)s, not the source\'s %(fsid)s') % {
                'cluster': source.cluster_name, 'found': fsid,
                'fsid': source.fsid}
        return None

    def _identity(self, offer):
        source = rbd.from_offer(offer)
        return {'fsid': source.fsid, 'pool': source.pool,
                'image': source.image}

    def _open_stream(self, offer):
        """Check the source and freeze it with a protected snapshot."""
        source = rbd.from_offer(offer)
        volume = offer.volume
        with self._remote(source.cluster_name, source.user) as client:
            try:
                ioctx = client.open_ioctx(source.pool)
            except self.rados.ObjectNotFound:
                raise exception.MigrationSourceRefused(
                    volume_id=volume.id,
                    reason=_('its pool %(pool)s does not exist in the Ceph '
                             'cluster %(cluster)s') % {
                        'pool': source.pool,
                        'cluster': source.cluster_name})
            try:
                self._freeze(ioctx, source, volume)
            finally:
                ioctx.close()
        spec = specs.native(source.pool, source.image, SNAPSHOT,
                            cluster_name=source.cluster_name,
                            client_name='client.%s' % source.user)
        return spec, {'cluster_name': source.cluster_name,
                      'user': source.user, 'snapshot': SNAPSHOT}

    def _freeze(self, ioctx, source, volume):
        info = self.engine.inspect(ioctx, source.image)
        if info is None:
            raise exception.MigrationSourceNotFound(image=source.display,
                                                    volume_id=volume.id)
        if info.migrating:
            raise exception.MigrationConflict(
                image=source.display,
                reason=_('the source image is part of a migration in its '
                         'own cluster'))
        if info.watchers:
            # execute copies the image's current data, not the snapshot's
            raise exception.MigrationSourceInUse(
                volume_id=volume.id, image=source.display,
                clients=len(info.watchers))
        self.engine.freeze(ioctx, source.image, SNAPSHOT)

    def stop(self, context, volume, record=None):
        """Remove the import's snapshot at the source and the destination.

        The destination's copy (execute copies the snapshot) goes once the
        migration is committed; at the source, the snapshot goes once no
        migration reads it, so that its backend can remove the source.
        See :meth:`base.SourceKind.stop`.
        """
        source = (record or {}).get('source') or {}
        snapshot = source.get('snapshot')
        if not snapshot:
            return
        with cinder_rbd.RADOSClient(self._driver) as client:
            status = self.engine.status(client.ioctx, volume.name)
            if status is not None and (
                    status.state is not state.MigrationState.NONE):
                LOG.warning('Volume %s is still being migrated; its source '
                            'snapshot stays.', volume.id, resource=volume)
                return
            if status is not None:
                self.engine.thaw(client.ioctx, volume.name, snapshot)
        try:
            with self._remote(source['cluster_name'],
                              source['user']) as remote:
                try:
                    ioctx = remote.open_ioctx(source['pool'])
                except self.rados.ObjectNotFound:
                    return
                try:
                    removed = self.engine.thaw(ioctx, source['image'],
                                               snapshot)
                finally:
                    ioctx.close()
        except self.rados.Error as exc:
            raise exception.MigrationEngineError(
                image=volume.name, step='source snapshot removal',
                reason=_('cannot reach the Ceph cluster %(cluster)s: '
                         '%(err)s') % {'cluster': source['cluster_name'],
                                       'err': type(exc).__name__})
        if removed:
            LOG.info('Removed the snapshot %(snap)s of the source of volume '
                     '%(vol)s in the Ceph cluster %(cluster)s.',
                     {'snap': snapshot, 'vol': volume.id,
                      'cluster': source['cluster_name']}, resource=volume)
