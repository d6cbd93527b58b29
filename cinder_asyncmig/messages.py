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

"""User messages (Cinder's ``/messages`` API) of async migration.

Cinder stores a message as an action id and a detail id, and cinder-api
renders its text from the tables of ``cinder.message.message_field``. The
plugin adds its entries to those tables, with ids that are not numbers so
that they never meet Cinder's own, in each process that creates or renders
one: cinder-volume (the volume manager imports this module) and cinder-api
(the API extension :mod:`cinder_asyncmig.api.async_migration` does). A
cinder-api without the extension lists the messages as "unknown action: An
unknown error occurred."
"""

from cinder.i18n import _
from cinder.message import message_field

from cinder_asyncmig import exception

MIGRATE = ('AM01', _('migrate volume asynchronously'))

SOURCE_IN_USE = ('AM01', _(
    'The target backend did not take the volume over: its source is open '
    'by another client. Detach the volume or stop what maps it, then '
    'migrate again. A client that ended without closing the volume (one '
    'that was killed) keeps it open for up to 30 seconds more (Ceph\'s '
    'osd_client_watch_timeout). The volume stays on its source.'))
SETTING_INVALID = ('AM02', _(
    'The target backend did not take the volume over: a value of the '
    'volume\'s async_migration_* metadata is invalid. Correct or remove '
    'it, then migrate again. The volume stays on its source.'))
SOURCE_NOT_FOUND = ('AM03', _(
    'The target backend did not take the volume over: it did not find the '
    'volume\'s data on the source backend. The volume stays on its '
    'source.'))
SOURCE_REFUSED = ('AM04', _(
    'The target backend refused to take the volume over; the target '
    'service\'s log says why. The volume stays on its source.'))
TAKE_OVER_FAILED = ('AM05', _(
    'The target backend could not take the volume over; the volume stays '
    'on its source. The services\' logs say why.'))
COPY_LOST = ('AM06', _(
    'The background copy of the volume cannot be completed: its migration '
    'was lost on the target backend. The target service\'s log says '
    'why.'))
COPY_FAILED = ('AM07', _(
    'The background copy of the volume stopped on an unexpected error and '
    'is not retried; the target service\'s log says why. The volume stays '
    'usable on its target backend and its data is safe. Once the cause is '
    'fixed, restarting the target volume service resumes the copy.'))
ABORTED = ('AM08', _(
    'An administrator aborted the migration of the volume: it is back on '
    'its source backend, with every write made to it during the '
    'migration.'))
ABORTED_DISCARDING = ('AM09', _(
    'An administrator aborted the migration of the volume with force: it '
    'is back on its source backend as it was when the migration began, '
    'and the writes made to it during the migration were discarded.'))
ABORT_REFUSED = ('AM10', _(
    'The abort of the volume\'s migration was refused once it had begun '
    '(a client opened the volume meanwhile, or its migration ended); the '
    'migration goes on. The target service\'s log says why.'))

_ACTIONS = (MIGRATE,)
_DETAILS = (SOURCE_IN_USE, SETTING_INVALID, SOURCE_NOT_FOUND, SOURCE_REFUSED,
            TAKE_OVER_FAILED, COPY_LOST, COPY_FAILED, ABORTED,
            ABORTED_DISCARDING, ABORT_REFUSED)

# the most specific class first
_DETAIL_OF = (
    (exception.MigrationSourceInUse, SOURCE_IN_USE),
    (exception.MigrationSettingInvalid, SETTING_INVALID),
    (exception.MigrationSourceNotFound, SOURCE_NOT_FOUND),
    (exception.MigrationSourceRefused, SOURCE_REFUSED),
    (exception.MigrationConflict, SOURCE_REFUSED),
    (exception.MigrationFeatureUnsupported, SOURCE_REFUSED),
    (exception.MigrationLost, COPY_LOST),
)


def register():
    """Add the plugin's actions and details to Cinder's tables, once."""
    for table, ours in ((message_field.Action, _ACTIONS),
                        (message_field.Detail, _DETAILS)):
        known = {entry[0] for entry in table.ALL}
        table.ALL = table.ALL + tuple(e for e in ours if e[0] not in known)


def detail_of(exc):
    """The message detail that tells a user of ``exc``."""
    for cls, detail in _DETAIL_OF:
        if isinstance(exc, cls):
            return detail
    return TAKE_OVER_FAILED


register()
