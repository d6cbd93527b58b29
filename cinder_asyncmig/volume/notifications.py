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

"""The notifications of asynchronous migrations.

Sent through Cinder's notifier (``[oslo_messaging_notifications]``, as
Cinder's own ``volume.*`` notifications are), with the publisher
``volume.HOST``:

- ``volume.async_migration.start``: the target took the volume over
  (sent by the source's volume service, which hands it over);
- ``volume.async_migration.progress``: at each change of phase, and at
  most every ``[asyncmig] notification_interval`` seconds meanwhile;
- ``volume.async_migration.end``: it ended; ``result`` is ``success``,
  ``source-left`` (the source is not removed yet) or ``aborted``;
- ``volume.async_migration.error`` (priority ERROR): a take-over failed,
  or a copy stopped on an error no retry gets past.

The payload is what the list API shows of the migration
(:func:`cinder_asyncmig.volume.progress.describe`); ``end`` adds
``result``, and ``error`` gives the error's class in ``last_error`` and
the state the migration is left in (``migration_status`` ``error``). A
notification that cannot be sent is logged and the migration goes on.
"""

from cinder import rpc
from oslo_log import log as logging

from cinder_asyncmig.volume import progress

LOG = logging.getLogger(__name__)

START = 'start'
PROGRESS = 'progress'
END = 'end'
ERROR = 'error'
EVENT_TYPE = 'volume.async_migration.%s'


def payload(volume, admin, **changes):
    """The payload of ``volume``'s migration, with ``changes``.

    :param admin: the volume's admin metadata.
    """
    described = progress.describe(volume, admin)
    described.update(changes)
    return described


def send(ctxt, host, event, body):
    """Send ``event`` with ``body``; log, never raise, if it fails.

    :param host: the sending volume service's host.
    """
    event_type = EVENT_TYPE % event
    try:
        notifier = rpc.get_notifier('volume', host)
        if event == ERROR:
            notifier.error(ctxt, event_type, body)
        else:
            notifier.info(ctxt, event_type, body)
    except Exception:
        LOG.exception('Could not send the notification %(event)s of volume '
                      '%(vol)s.', {'event': event_type,
                                   'vol': body.get('volume_id')})
