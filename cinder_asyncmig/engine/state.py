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

"""Migration states and progress, as plain values."""

import dataclasses
import enum
from typing import Optional


class MigrationState(enum.Enum):
    """State of an image's live migration, as librbd records it.

    ``NONE`` is not a librbd state: the image exists and is not (or no
    longer) migrating.
    """
    NONE = 'none'
    UNKNOWN = 'unknown'
    ERROR = 'error'
    PREPARING = 'preparing'
    PREPARED = 'prepared'
    EXECUTING = 'executing'
    EXECUTED = 'executed'
    ABORTING = 'aborting'

    @classmethod
    def from_librbd(cls, rbd_module, value):
        names = {
            rbd_module.RBD_IMAGE_MIGRATION_STATE_UNKNOWN: cls.UNKNOWN,
            rbd_module.RBD_IMAGE_MIGRATION_STATE_ERROR: cls.ERROR,
            rbd_module.RBD_IMAGE_MIGRATION_STATE_PREPARING: cls.PREPARING,
            rbd_module.RBD_IMAGE_MIGRATION_STATE_PREPARED: cls.PREPARED,
            rbd_module.RBD_IMAGE_MIGRATION_STATE_EXECUTING: cls.EXECUTING,
            rbd_module.RBD_IMAGE_MIGRATION_STATE_EXECUTED: cls.EXECUTED,
            rbd_module.RBD_IMAGE_MIGRATION_STATE_ABORTING: cls.ABORTING,
        }
        return names.get(value, cls.UNKNOWN)

    @property
    def copy_pending(self):
        """True while execute still has to run (or finish)."""
        return self in (MigrationState.PREPARED, MigrationState.EXECUTING)


@dataclasses.dataclass(frozen=True)
class MigrationStatus:
    """What librbd reports about a migration, read from its header."""
    state: MigrationState
    description: str = ''
    source_pool_id: Optional[int] = None
    source_namespace: str = ''
    source_image: Optional[str] = None
    dest_namespace: str = ''
    dest_image: Optional[str] = None

    @property
    def import_only(self):
        """True for an import-only migration (the source is a spec).

        librbd keeps no source pool for those; aborting one deletes the
        destination and every write made to it.
        """
        return self.source_pool_id is not None and self.source_pool_id < 0


@dataclasses.dataclass(frozen=True)
class Progress:
    """Background copy progress of one migration."""
    bytes_copied: int
    bytes_total: int
    rate: float = 0.0

    @property
    def percent(self):
        if self.bytes_total <= 0:
            return 100.0
        return round(100.0 * self.bytes_copied / self.bytes_total, 1)

    @classmethod
    def from_objects(cls, done, total, size, rate=0.0):
        """Convert librbd's object counts into bytes of an image of size."""
        if total <= 0:
            return cls(0, size, rate)
        return cls(min(size, size * done // total), size, rate)

    def as_dict(self):
        return {'bytes_copied': self.bytes_copied,
                'bytes_total': self.bytes_total,
                'percent': self.percent,
                'rate_bytes_per_sec': int(self.rate)}
