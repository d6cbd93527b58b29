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

"""The shared-file kind: a volume file at the same path on every host.

Cinder's NFS driver (and the other RemoteFS drivers) keep each volume in a
file under a share mounted at the same place on every host. When the
operator declares such a backend shared (``async_migration_shared_file_
backends``) librbd reads the volume straight from that file, with a raw
file stream: every client that opens the destination, hypervisors
included, reads the blocks not yet copied from the same path.

The source volume service tells where the file is (its driver's
``local_path``) in the description it sends with the hand-over.
"""

import dataclasses
import os
import stat
from typing import Optional

from cinder.i18n import _
from oslo_utils import units

from cinder_asyncmig.engine import specs
from cinder_asyncmig.sources import base
from cinder_asyncmig.sources import kinds

# what the source volume service adds to its description of a volume
PATH_KEY = 'volume_path'
_QCOW_MAGIC = b'QFI\xfb'


@dataclasses.dataclass(frozen=True)
class FileSource:
    backend: str
    path: str

    @property
    def display(self):
        return self.path


def from_host(src_host, shared_backends) -> Optional[FileSource]:
    """Describe the source if it is a file of a backend declared shared.

    :param src_host: the source backend's description (``host``,
                     ``capabilities``, and ``volume_path`` when its driver
                     keeps volumes in files).
    :param shared_backends: ``volume_backend_name`` of the backends
                            declared shared on this host.
    :returns: a :class:`FileSource` or None.
    """
    src_host = src_host or {}
    caps = src_host.get('capabilities') or {}
    backend = caps.get('volume_backend_name')
    path = src_host.get(PATH_KEY)
    if not path or backend not in (shared_backends or ()):
        return None
    return FileSource(backend=backend, path=path)


def refusal(source, size):
    """Why this host cannot read ``source`` as a raw file, or None.

    :param size: the volume's size in bytes.
    """
    try:
        info = os.stat(source.path)
    except OSError as exc:
        return _('its file %(path)s is not readable on this host (%(err)s); '
                 'is the share mounted at the same path here?') % {
            'path': source.path, 'err': exc.strerror}
    if not stat.S_ISREG(info.st_mode):
        return _('%s is not a regular file') % source.path
    if info.st_size != size:
        return _('its file %(path)s holds %(have)d bytes, not the '
                 'volume\'s %(size)d') % {'path': source.path,
                                          'have': info.st_size, 'size': size}
    with open(source.path, 'rb') as f:
        if f.read(len(_QCOW_MAGIC)) == _QCOW_MAGIC:
            return _('its file %s is a qcow2 image, not raw') % source.path
    return None


class SharedFileKind(base.ImportKind):
    """A volume file of a backend declared shared, read as a raw file."""

    name = kinds.SHARED_FILE

    def _source(self, offer):
        return from_host(
            offer.src_host,
            self.configuration.async_migration_shared_file_backends)

    def decline_reason(self, offer):
        source = self._source(offer)
        if source is None:
            return _('the source backend is not a file backend listed in '
                     'async_migration_shared_file_backends')
        return refusal(source, offer.volume.size * units.Gi)

    def _identity(self, offer):
        source = self._source(offer)
        return {'backend': source.backend, 'path': source.path}

    def _open_stream(self, offer):
        return specs.raw_file(self._source(offer).path), {}
