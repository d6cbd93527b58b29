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

"""What an exporter reads: a block device or file, or an RBD image.

Both are opened read-only and read with ``pread``-like calls from many
threads at once.
"""

import errno
import os
import stat

from oslo_log import log as logging


LOG = logging.getLogger(__name__)


class Lun(object):
    """One LUN, opened read-only."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        mode = os.fstat(self.fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
            os.close(self.fd)
            raise IsADirectoryError(
                'not a block device or regular file: %s' % path)

    def size(self):
        # works for block devices, where st_size is 0
        return os.lseek(self.fd, 0, os.SEEK_END)

    def read(self, offset, length):
        """Read up to ``length`` bytes at ``offset``; short only at EOF."""
        parts = []
        while length > 0:
            data = os.pread(self.fd, length, offset)
            if not data:
                break
            parts.append(data)
            offset += len(data)
            length -= len(data)
        return b''.join(parts)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class RBDLun(object):
    """One RBD image, opened read-only with librbd.

    For a source in another Ceph cluster that this host reaches as a
    client (a hypervisor of that cluster would): the configuration file
    names its monitors and the keyring of ``user``.
    """

    def __init__(self, conf, pool, image, user, cluster=None):
        # only the bindings, and only in the child that serves the image
        import rados
        import rbd
        self.path = '%s/%s' % (pool, image)
        self._client = rados.Rados(rados_id=user, clustername=cluster,
                                   conffile=conf)
        try:
            self._client.connect(timeout=30)
            self._ioctx = self._client.open_ioctx(pool)
            try:
                self._image = rbd.Image(self._ioctx, image, read_only=True)
            except Exception:
                self._ioctx.close()
                raise
        except (rados.Error, rbd.Error) as exc:
            self._client.shutdown()
            raise OSError(errno.EIO, 'cannot open RBD image %s: %s' % (
                self.path, type(exc).__name__))
        except Exception:
            self._client.shutdown()
            raise
        self._size = self._image.size()
        # librbd copies the source's current data: a client that has it
        # open may write it (a read-only open, as this one, watches not)
        watchers = list(self._image.watchers_list())
        if watchers:
            self.close()
            raise OSError(errno.EBUSY,
                          'RBD image %s is open by %d client(s); detach it '
                          'first' % (self.path, len(watchers)))

    def size(self):
        return self._size

    def read(self, offset, length):
        length = max(0, min(length, self._size - offset))
        return self._image.read(offset, length) if length else b''

    def close(self):
        if self._client is not None:
            self._image.close()
            self._ioctx.close()
            self._client.shutdown()
            self._client = None


def open_lun(path, rbd=None):
    """Open the LUN of an export: a file or device, or an RBD image."""
    if rbd:
        return RBDLun(path, **rbd)
    return Lun(path)
