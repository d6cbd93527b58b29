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

"""What the local librbd can do, detected from its version.

Since Octopus, librbd's minor API version equals the Ceph major release
(1.16 is Pacific 16, 1.20 is Tentacle 20), so the client library's own
version tells which migration features it has. The client library is what
matters: it is the one that parses the source spec and reads the source.
"""

import dataclasses

from cinder.i18n import _

from cinder_asyncmig import exception

CROSS_CLUSTER_NATIVE_RELEASE = 20
NBD_STREAM_RELEASE = 20
MIGRATION_RELEASE = 14


@dataclasses.dataclass(frozen=True)
class CephFeatures:
    release: int

    @classmethod
    def from_librbd_version(cls, version):
        """:param version: ``rbd.RBD().version()``, e.g. ``(1, 16, 0)``."""
        major, minor = version[0], version[1]
        if major != 1:
            raise ValueError('unexpected librbd version %s' % (version,))
        return cls(release=minor)

    @classmethod
    def detect(cls, rbd_module):
        return cls.from_librbd_version(rbd_module.RBD().version())

    @property
    def live_migration(self):
        return self.release >= MIGRATION_RELEASE

    @property
    def import_only(self):
        return self.release >= 16

    @property
    def native_cross_cluster(self):
        return self.release >= CROSS_CLUSTER_NATIVE_RELEASE

    @property
    def native_missing_source_crashes(self):
        """Whether a native spec naming a missing image kills the caller.

        Pacific aborts the process in prepare; Reef and Tentacle raise
        ImageNotFound. The engine checks the source first on every release.
        """
        return self.release < 18

    @property
    def nbd_stream(self):
        return self.release >= NBD_STREAM_RELEASE

    def require(self, feature):
        """Raise MigrationFeatureUnsupported unless ``feature`` is here.

        :param feature: one of the boolean properties of this class.
        """
        needed = {'live_migration': MIGRATION_RELEASE,
                  'import_only': 16,
                  'native_cross_cluster': CROSS_CLUSTER_NATIVE_RELEASE,
                  'nbd_stream': NBD_STREAM_RELEASE}[feature]
        if not getattr(self, feature):
            labels = {'live_migration': _('Live migration'),
                      'import_only': _('Import-only migration'),
                      'native_cross_cluster':
                          _('Importing an RBD image from another cluster'),
                      'nbd_stream': _('The NBD source stream')}
            raise exception.MigrationFeatureUnsupported(
                feature=labels[feature], needed=needed, found=self.release)
