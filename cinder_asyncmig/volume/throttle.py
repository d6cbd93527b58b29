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

"""The cap on a migration's copy: where it is set and how caps combine.

A backend sets one in its options; one migration sets its own: an
operator's through the API (``os-async-migration-set``), kept in the
volume's admin metadata (:data:`ADMIN_RATE_KEY`), or else the volume
metadata's (:data:`RATE_KEY`). The lower of the backend's and the
migration's applies. How the cap is held is the copy worker's
(:class:`~cinder_asyncmig.engine.worker.Pacer`) and the exporter's
business, not this module's.
"""

from cinder.i18n import _

from cinder_asyncmig import exception

# volume metadata key a user or operator sets to cap what one migration
# reads from its source, in bytes per second
RATE_KEY = 'async_migration_max_read_bytes_per_sec'
# admin metadata key of the cap an operator set through the API; it
# overrides RATE_KEY
ADMIN_RATE_KEY = 'asyncmig_max_bytes_per_sec'


def requested(metadata, admin_metadata=None):
    """The cap asked for, in bytes per second; 0 for none.

    :param metadata: the volume's metadata.
    :param admin_metadata: its admin metadata: an operator's cap there
                           overrides the metadata's.
    :raises ValueError: the value is not a whole number >= 0.
    """
    wanted = (admin_metadata or {}).get(ADMIN_RATE_KEY)
    if wanted in (None, ''):
        wanted = (metadata or {}).get(RATE_KEY)
    if wanted in (None, ''):
        return 0
    wanted = int(wanted)
    if wanted < 0:
        raise ValueError(wanted)
    return wanted


def lowest(*caps):
    """The lowest of the caps that are set (0: none is)."""
    caps = [c for c in caps if c]
    return min(caps) if caps else 0


def _admin_metadata(volume):
    """The volume's admin metadata if loaded with it, never loading it.

    The progress recorder reads it anew (manager) and hands the cap on.
    """
    loaded = getattr(volume, 'obj_attr_is_set', None)
    if loaded is not None and not loaded('admin_metadata'):
        return None
    return getattr(volume, 'admin_metadata', None)


def cap(volume, backend_cap):
    """The cap of one migration: the lower of volume and backend.

    :param backend_cap: bytes per second, 0 for none.
    :raises MigrationSettingInvalid: the volume's value is not a number.
    """
    try:
        wanted = requested(volume.metadata, _admin_metadata(volume))
    except ValueError:
        raise exception.MigrationSettingInvalid(
            volume_id=volume.id, key=RATE_KEY,
            expected=_('a whole number of bytes per second'))
    return lowest(wanted, backend_cap)
