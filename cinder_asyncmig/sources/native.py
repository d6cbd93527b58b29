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

librbd imports an image of another cluster with a native source spec
naming that cluster (Ceph 20.2 and later, detected from librbd's version).
This driver version does not take such sources over yet: the kind always
declines, and the exporter (when enabled) serves them instead.

Taking them over needs, from what librbd was seen to do: a snapshot of
the source, protected by the driver (a native spec imports a snapshot and
librbd does not protect it); a source nobody writes, as execute copies the
source's current data, not the snapshot's; the source image checked to
exist before prepare, since a native spec naming a missing image crashes
the calling process; and :meth:`NativeKind.stop` removing the snapshot
again.
"""

from cinder.i18n import _

from cinder_asyncmig.sources import base
from cinder_asyncmig.sources import kinds
from cinder_asyncmig.sources import rbd


class NativeKind(base.ImportKind):
    """An RBD image in another cluster, imported by librbd (not yet)."""

    name = kinds.RBD_NATIVE

    def decline_reason(self, offer):
        source = rbd.from_offer(offer)
        reason = rbd.cluster_reason(source, offer, same_cluster=False)
        if reason:
            return reason
        features = self.engine.features
        if features.native_cross_cluster:
            return _('native cross-cluster import is not supported by this '
                     'driver version yet')
        return _('its RBD source is in another Ceph cluster (fsid '
                 '%(fsid)s) and librbd here is Ceph %(found)s; native '
                 'cross-cluster import needs 20.2') % {
            'fsid': source.fsid, 'found': features.release}

    def _identity(self, offer):
        source = rbd.from_offer(offer)
        return {'fsid': source.fsid, 'pool': source.pool,
                'image': source.image}

    def _open_stream(self, offer):
        # never called while decline_reason declines every source
        raise NotImplementedError(self.name)
