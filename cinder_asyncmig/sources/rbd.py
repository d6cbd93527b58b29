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

"""An RBD source volume, described from the source backend's capabilities.

Cinder's RBD driver reports ``location_info`` as
``cluster_name:ceph_conf:fsid:user:pool``; the same string is what its own
``migrate_volume`` compares. The RBD kinds (:mod:`linked
<cinder_asyncmig.sources.linked>` and :mod:`native
<cinder_asyncmig.sources.native>`) take such a source over.
"""

import dataclasses
from typing import Optional

from cinder.i18n import _
from cinder import utils


@dataclasses.dataclass(frozen=True)
class RBDSource:
    cluster_name: str
    ceph_conf: str
    fsid: str
    user: str
    pool: str
    image: str
    namespace: str = ''

    @property
    def display(self):
        return '%s/%s' % (self.pool, self.image)


def from_host(volume, src_host) -> Optional[RBDSource]:
    """Describe the volume's source if its backend is RBD.

    :param volume: the volume, still on its source backend.
    :param src_host: ``{'host': ..., 'capabilities': {...}}`` of the
                     source backend, the shape ``migrate_volume`` gets.
    :returns: an :class:`RBDSource`, or None if the source is not RBD or
              does not say where it is.
    """
    caps = (src_host or {}).get('capabilities') or {}
    if caps.get('storage_protocol') != 'ceph':
        return None
    location = caps.get('location_info')
    if not location:
        return None
    try:
        cluster_name, conf, fsid, user, pool = (
            utils.convert_str(location).split(':'))
    except ValueError:
        return None
    return RBDSource(cluster_name=cluster_name, ceph_conf=conf, fsid=fsid,
                     user=user, pool=pool, image=volume.name)


def from_offer(offer) -> Optional[RBDSource]:
    """Describe the offered source if its backend is RBD.

    :param offer: a :class:`~cinder_asyncmig.sources.base.Offer`.
    """
    return from_host(offer.volume, offer.src_host)


def cluster_reason(source, offer, same_cluster):
    """Why an RBD kind declines the source for its cluster, or None.

    :param source: the source described by :func:`from_offer`.
    :param offer: the :class:`~cinder_asyncmig.sources.base.Offer`.
    :param same_cluster: whether the kind takes sources in the target's
                         own cluster (True) or in another one (False).
    """
    if source is None:
        return _('the source backend reports no RBD location')
    if (source.fsid == offer.local_fsid) == same_cluster:
        return None
    if same_cluster:
        return _('its RBD source is in another Ceph cluster (fsid '
                 '%s)') % source.fsid
    return _('its RBD source is in this Ceph cluster')
