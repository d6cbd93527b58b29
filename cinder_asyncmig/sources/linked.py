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

"""An RBD source in the target's own Ceph cluster: a linked migration.

librbd links the destination to the source image: an abort copies every
write made to the destination back to the source, and the commit removes
the source.
"""

import time

from cinder.i18n import _
from oslo_log import log as logging
from oslo_utils import excutils

from cinder_asyncmig import exception
from cinder_asyncmig.sources import base
from cinder_asyncmig.sources import kinds
from cinder_asyncmig.sources import rbd

LOG = logging.getLogger(__name__)


class LinkedKind(base.SourceKind):
    """An RBD image in this cluster, taken over with a linked migration."""

    name = kinds.RBD_LINKED

    def __init__(self, driver):
        super(LinkedKind, self).__init__(driver)
        self.rados = driver.rados

    def decline_reason(self, offer):
        return rbd.cluster_reason(rbd.from_offer(offer), offer,
                                  same_cluster=True)

    def prepare(self, offer):
        source = rbd.from_offer(offer)
        volume = offer.volume
        if source.pool == self.configuration.rbd_pool:
            LOG.info('Volume %s is already in this pool; only its host '
                     'changes.', volume.id, resource=volume)
            return True, False, None
        try:
            src_ioctx = offer.client.cluster.open_ioctx(source.pool)
        except self.rados.ObjectNotFound:
            raise exception.MigrationSourceRefused(
                volume_id=volume.id,
                reason=_('its pool %s does not exist in this '
                         'cluster') % source.pool)
        try:
            return self._prepare_linked(offer, src_ioctx, source)
        finally:
            src_ioctx.close()

    def _prepare_linked(self, offer, src_ioctx, source):
        client, volume = offer.client, offer.volume
        name = volume.name
        if self._prepared_already(
                offer, lambda status, _record: (
                    status.source_image == source.image and
                    not status.import_only)):
            return True, True, {}

        info = self.engine.inspect(src_ioctx, source.image)
        if info is None:
            raise exception.MigrationSourceNotFound(image=source.display,
                                                    volume_id=volume.id)
        if info.migrating:
            raise exception.MigrationConflict(
                image=source.display,
                reason=_('the source image is already part of a '
                         'migration'))
        if info.watchers:
            raise exception.MigrationSourceInUse(
                volume_id=volume.id, image=source.display,
                clients=len(info.watchers))

        started = time.monotonic()
        self.engine.prepare_linked(src_ioctx, source.image, client.ioctx,
                                   name, order=info.order)
        try:
            self._write_record(
                client, volume,
                {'pool': source.pool, 'image': source.image}, info.size)
        except Exception:
            with excutils.save_and_reraise_exception():
                # nobody has seen the destination yet: a linked abort
                # puts the source back exactly as it was
                self.engine.abort(client.ioctx, name, exposed=False)
        LOG.info('Volume %(vol)s (%(size)d bytes, %(kind)s source) taken '
                 'over from %(src)s in %(ms).1f ms; it is usable on this '
                 'backend while its data is copied.',
                 {'vol': volume.id, 'size': info.size, 'kind': self.name,
                  'src': source.display,
                  'ms': (time.monotonic() - started) * 1000},
                 resource=volume)
        return True, True, {}

    def source_left(self, client, record):
        """librbd's commit removes the source image; look whether it did.

        See :meth:`base.SourceKind.source_left`.
        """
        source = record.get('source') or {}
        if not source:
            return None
        try:
            src_ioctx = client.cluster.open_ioctx(source['pool'])
        except self.rados.ObjectNotFound:
            return False
        try:
            return self.engine.inspect(src_ioctx, source['image']) is not None
        finally:
            src_ioctx.close()
