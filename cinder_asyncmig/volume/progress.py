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

"""A migration's progress as operators read it.

The target's volume service keeps it in the volume's admin metadata
(:data:`KEY`), where no project member reads or changes it, each time it
records the copy's progress: a cache of the migration's record (in the
destination image) and of the service's own state (queued, retrying),
rebuilt by the next write. The API extension
(:mod:`cinder_asyncmig.api.async_migration`) reads it and
:func:`describe` turns it into what the API shows.
"""

import datetime
import json

from cinder_asyncmig.volume import constants

# admin metadata key of the record: compact JSON, times in epoch seconds
KEY = 'asyncmig_progress'

# the phases the API shows
TAKING_OVER = 'taking-over'
QUEUED = 'queued'
COPYING = 'copying'
COMMITTING = 'committing'
CLEANING_SOURCE = 'cleaning-source'
RETRYING = 'retrying'
PAUSED = 'paused'
ABORTING = 'aborting'
PHASES = (TAKING_OVER, QUEUED, COPYING, COMMITTING, CLEANING_SOURCE,
          RETRYING, PAUSED, ABORTING)

# the driver's phases (``complete_migration_target``'s progress), as shown:
# a migration the driver calls a success still has its source to remove
_OF_DRIVER = {'prepared': COPYING, 'copying': COPYING,
              'committing': COMMITTING, 'success': CLEANING_SOURCE}
# Cinder's admin metadata values hold 255 characters; the fields that may
# go, in the order they go, when a record is longer
_MAX = 255
_DROPPABLE = ('copy_in', 'error', 'kind')


def of_driver(phase):
    """The phase the API shows for the driver's ``phase``."""
    return _OF_DRIVER.get(phase, COPYING)


def encode(record):
    """``record`` as the admin metadata value: None fields left out.

    Fields that would not fit are dropped (:data:`_DROPPABLE`): the
    record is for reading, and the service log keeps them.
    """
    record = {k: v for k, v in record.items() if v is not None}
    text = json.dumps(record, separators=(',', ':'), sort_keys=True)
    for field in _DROPPABLE:
        if len(text) <= _MAX:
            break
        record.pop(field, None)
        text = json.dumps(record, separators=(',', ':'), sort_keys=True)
    return text


def decode(text):
    """The record in ``text``; empty when there is none or it is not one."""
    try:
        record = json.loads(text) if text else {}
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _iso(epoch):
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(
        epoch, datetime.timezone.utc).isoformat()


def is_async(volume):
    """Whether ``volume`` migrates asynchronously, or is handed over."""
    admin = volume.admin_metadata or {}
    return ((volume.migration_status == constants.ATTACHABLE and
             constants.SOURCE_KEY in admin) or
            (volume.migration_status in ('starting', 'migrating') and
             constants.TARGET_KEY in admin))


def describe(volume, admin=None):
    """What the API shows of the asynchronous migration of ``volume``.

    :param volume: a volume object, with its admin metadata
                   (:func:`is_async` is true of it).
    :param admin: its admin metadata, if not the volume's own.
    """
    if admin is None:
        admin = volume.admin_metadata or {}
    record = decode(admin.get(KEY))
    if volume.migration_status in ('starting', 'migrating'):
        # the source's volume service hands it over
        source_host = volume.host
        target_host = admin.get(constants.TARGET_KEY)
        phase = TAKING_OVER
        record = {}
    else:
        source_host = admin.get(constants.SOURCE_KEY)
        target_host = volume.host
        phase = record.get('phase', COPYING)
    copied, total = record.get('copied'), record.get('total')
    rate = record.get('rate')
    if admin.get(constants.ABORTING_KEY) and phase != TAKING_OVER:
        # from the moment an operator's abort is accepted: a progress
        # record the copy wrote just before it stopped says otherwise
        phase, rate = ABORTING, 0
    percent = eta = None
    if total:
        percent = round(100.0 * (copied or 0) / total, 1)
    if phase == COPYING and rate and total is not None:
        eta = int(max(total - (copied or 0), 0) / rate)
    return {
        'volume_id': volume.id,
        'project_id': volume.project_id,
        'name': volume.display_name,
        'migration_status': volume.migration_status,
        'source_host': source_host,
        'target_host': target_host,
        'source_kind': record.get('kind'),
        'phase': phase,
        'queue_place': record.get('place'),
        'bytes_copied': copied,
        'bytes_total': total,
        'percent': percent,
        'rate_bytes_per_sec': rate,
        'eta_seconds': eta,
        'max_bytes_per_sec': record.get('cap'),
        # a retype's: the type the volume takes with success
        'new_volume_type_id': admin.get(constants.NEW_TYPE_KEY),
        'copy_in': record.get('copy_in'),
        'attempt': record.get('attempt'),
        'last_error': record.get('error'),
        'next_attempt_at': _iso(record.get('retry_at')),
        'started_at': _iso(record.get('started')),
        'updated_at': _iso(record.get('updated')),
    }
