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

"""``openstack volume migration`` commands: asynchronous migrations.

They call the API extension (:mod:`cinder_asyncmig.api.async_migration`)
through the client OpenStackClient gives volume commands, so they work
with every ``--os-*`` option and ``clouds.yaml`` entry it takes. Loaded
from this package's ``openstack.volume.v3`` entry points.
"""

import argparse
import sys
import time
import urllib.parse

from openstack import exceptions as sdk_exceptions
from osc_lib.command import command
from osc_lib import exceptions
from osc_lib import utils
from oslo_utils import strutils

from cinder_asyncmig.volume import progress

_PATH = '/async-migrations'
# what the API shows, in the order shown; the list's short form first
_LIST_COLUMNS = ('volume_id', 'name', 'phase', 'percent',
                 'rate_bytes_per_sec', 'eta_seconds', 'source_host',
                 'target_host')
_LONG_COLUMNS = _LIST_COLUMNS + (
    'source_kind', 'migration_status', 'queue_place', 'bytes_copied',
    'bytes_total', 'max_bytes_per_sec', 'copy_in', 'attempt', 'last_error',
    'next_attempt_at', 'started_at', 'updated_at')
_HEADERS = {'volume_id': 'Volume', 'rate_bytes_per_sec': 'Rate (B/s)',
            'eta_seconds': 'ETA (s)', 'max_bytes_per_sec': 'Max Rate (B/s)'}


def _header(column):
    return _HEADERS.get(column) or column.replace('_', ' ').title()


def _get(volume_client, path):
    """GET ``path`` of the volume API; its JSON body."""
    response = volume_client.get(path)
    sdk_exceptions.raise_from_response(response)
    return response.json()


def _post_action(volume_client, volume_id, action):
    response = volume_client.post('/volumes/%s/action' % volume_id,
                                  json=action)
    sdk_exceptions.raise_from_response(response)


def _rate(value):
    """Bytes per second: a whole number, or one with a unit (64MiB)."""
    try:
        rate = (int(value) if value.isdigit() else
                strutils.string_to_bytes(value, return_int=True))
    except ValueError:
        rate = -1
    if rate < 0:
        raise argparse.ArgumentTypeError(
            'not a rate: %s (bytes per second, e.g. 67108864 or 64MiB)' %
            value)
    return rate


class ListMigration(command.Lister):
    """List asynchronous volume migrations (admin only)."""

    def get_parser(self, prog_name):
        parser = super(ListMigration, self).get_parser(prog_name)
        parser.add_argument(
            '--source-host', metavar='<host@backend>',
            help='Only migrations from this backend (pools ignored).')
        parser.add_argument(
            '--target-host', metavar='<host@backend>',
            help='Only migrations to this backend (pools ignored).')
        parser.add_argument(
            '--phase', choices=progress.PHASES,
            help='Only migrations in this phase.')
        parser.add_argument(
            '--long', action='store_true', default=False,
            help='List every field.')
        return parser

    def take_action(self, parsed_args):
        query = {key: getattr(parsed_args, key) for key in
                 ('source_host', 'target_host', 'phase')
                 if getattr(parsed_args, key)}
        path = _PATH
        if query:
            path += '?' + urllib.parse.urlencode(query)
        found = _get(self.app.client_manager.volume,
                     path)['async_migrations']
        columns = _LONG_COLUMNS if parsed_args.long else _LIST_COLUMNS
        return ([_header(c) for c in columns],
                (utils.get_dict_properties(m, columns) for m in found))


class _OnVolume(object):
    """A command about one volume's migration: its argument and lookup."""

    volume_help = 'Volume that migrates (name or ID).'

    def get_parser(self, prog_name):
        parser = super(_OnVolume, self).get_parser(prog_name)
        parser.add_argument('volume', metavar='<volume>',
                            help=self.volume_help)
        return parser

    def volume(self, parsed_args):
        """The volume client, and the volume the command names."""
        volume_client = self.app.client_manager.volume
        return volume_client, volume_client.find_volume(
            parsed_args.volume, ignore_missing=False)


class ShowMigration(_OnVolume, command.ShowOne):
    """Show the asynchronous migration of a volume (admin only)."""

    def take_action(self, parsed_args):
        volume_client, volume = self.volume(parsed_args)
        migration = _get(volume_client, '%s/%s' % (
            _PATH, volume.id))['async_migration']
        return ([_header(c) for c in _LONG_COLUMNS],
                utils.get_dict_properties(migration, _LONG_COLUMNS))


class SetMigration(_OnVolume, command.Command):
    """Set the cap of a volume's asynchronous migration (admin only)."""

    def get_parser(self, prog_name):
        parser = super(SetMigration, self).get_parser(prog_name)
        rate = parser.add_mutually_exclusive_group(required=True)
        rate.add_argument(
            '--max-rate', metavar='<bytes-per-second>', type=_rate,
            help='Cap its copy at this rate (e.g. 67108864 or 64MiB); 0 '
                 'for no cap of its own (the backend\'s still holds). It '
                 'overrides the volume\'s metadata key '
                 'async_migration_max_read_bytes_per_sec.')
        rate.add_argument(
            '--no-max-rate', action='store_true',
            help='Drop the cap set here: the volume metadata\'s applies '
                 'again.')
        return parser

    def take_action(self, parsed_args):
        volume_client, volume = self.volume(parsed_args)
        cap = None if parsed_args.no_max_rate else parsed_args.max_rate
        _post_action(volume_client, volume.id, {
            'os-async-migration-set': {'max_bytes_per_sec': cap}})


class _VolumeAction(_OnVolume, command.Command):
    """A volume action without arguments (:attr:`action`)."""

    action = None

    def take_action(self, parsed_args):
        volume_client, volume = self.volume(parsed_args)
        _post_action(volume_client, volume.id, {self.action: None})


class PauseMigration(_VolumeAction):
    """Pause the copy of a volume's asynchronous migration (admin only)."""

    action = 'os-async-migration-pause'
    volume_help = ('Volume that migrates (name or ID). It stays usable, and '
                   'restarts leave it paused.')


class ResumeMigration(_VolumeAction):
    """Resume the paused copy of a volume's migration (admin only)."""

    action = 'os-async-migration-resume'
    volume_help = 'Volume whose migration is paused (name or ID).'


# migration_status values a migration ends with ('deleting': migrated, its
# source not removed yet)
_ENDED = ('success', 'error', 'deleting')
_POLL = 2.0
_BAR = 30


def _progress_line(migration, status):
    """One line of a migration's progress: bar, percent, rate, ETA."""
    if not migration:
        return 'migration_status %s' % status
    percent = migration.get('percent') or 0.0
    filled = int(_BAR * percent / 100)
    line = '[%s%s] %5.1f%%  %s' % ('#' * filled, '.' * (_BAR - filled),
                                   percent, migration['phase'])
    if migration.get('rate_bytes_per_sec'):
        line += '  %d MiB/s' % (migration['rate_bytes_per_sec'] // 2 ** 20)
    if migration.get('eta_seconds') is not None:
        line += '  ETA %d s' % migration['eta_seconds']
    if migration.get('last_error'):
        line += '  (%s; attempt %s)' % (migration['last_error'],
                                        migration.get('attempt'))
    return line


class StartMigration(_OnVolume, command.ShowOne):
    """Migrate a volume to another backend (admin only)."""

    volume_help = 'Volume to migrate (name or ID).'

    def get_parser(self, prog_name):
        parser = super(StartMigration, self).get_parser(prog_name)
        parser.add_argument(
            '--host', metavar='<host@backend#pool>', required=True,
            help='Destination backend. To an async target the volume is '
                 'usable there at once, while its data is copied.')
        parser.add_argument(
            '--force-host-copy', action='store_true', default=False,
            help='Cinder\'s own generic copy, never the async one.')
        parser.add_argument(
            '--wait', action='store_true', default=False,
            help='Show the progress until the migration ends (Ctrl-C stops '
                 'the waiting, not the migration).')
        return parser

    def take_action(self, parsed_args):
        volume_client, volume = self.volume(parsed_args)
        started = time.monotonic()
        _post_action(volume_client, volume.id, {'os-migrate_volume': {
            'host': parsed_args.host,
            'force_host_copy': parsed_args.force_host_copy}})
        shown = _watch(volume_client, volume.id) if (
            parsed_args.wait) else volume_client.get_volume(volume.id)
        if parsed_args.wait and shown.migration_status == 'error':
            raise exceptions.CommandError(
                'The migration of volume %s ended in error; see its user '
                'messages (openstack volume message list) and the target '
                'volume service\'s log.' % volume.id)
        return _outcome(shown, started)


class AbortMigration(_OnVolume, command.ShowOne):
    """Abort a volume's asynchronous migration (admin only).

    The volume goes back to its source backend and its migration_status
    becomes error, with a user message saying it was aborted.
    """

    volume_help = 'Volume that migrates, detached (name or ID).'

    def get_parser(self, prog_name):
        parser = super(AbortMigration, self).get_parser(prog_name)
        parser.add_argument(
            '--force', action='store_true', default=False,
            help='Abort an import-only migration (a source in another '
                 'cluster, a file or an exporter): its target copy is '
                 'deleted, and every write made to the volume since the '
                 'migration began is lost. A linked migration (a source '
                 'in the same cluster) loses nothing and needs no force.')
        parser.add_argument(
            '--wait', action='store_true', default=False,
            help='Wait until the volume is back on its source.')
        return parser

    def take_action(self, parsed_args):
        volume_client, volume = self.volume(parsed_args)
        started = time.monotonic()
        _post_action(volume_client, volume.id, {'os-async-migration-abort': {
            'force': parsed_args.force}})
        shown = _watch(volume_client, volume.id) if (
            parsed_args.wait) else volume_client.get_volume(volume.id)
        if parsed_args.wait and shown.migration_status != 'error':
            raise exceptions.CommandError(
                'The migration of volume %(id)s was not aborted: it ended '
                'in %(status)s; see its user messages (openstack volume '
                'message list).' % {'id': volume.id,
                                    'status': shown.migration_status})
        return _outcome(shown, started)


def _watch(volume_client, volume_id):
    """Poll until the migration ends; a line of progress on stderr."""
    tty = sys.stderr.isatty()
    last = None
    while True:
        volume = volume_client.get_volume(volume_id)
        status = volume.migration_status
        try:
            migration = _get(volume_client, '%s/%s' % (
                _PATH, volume_id))['async_migration']
        except sdk_exceptions.NotFoundException:
            migration = None  # Cinder's own migration, or ended
        line = _progress_line(migration, status)
        if tty:
            sys.stderr.write('\r\033[K' + line)
        elif line != last:
            sys.stderr.write(line + '\n')
        sys.stderr.flush()
        last = line
        if status in _ENDED:
            if tty:
                sys.stderr.write('\n')
            return volume
        time.sleep(_POLL)


def _outcome(volume, started):
    """What a command that waited shows: where the volume ended."""
    result = {'id': volume.id, 'migration_status': volume.migration_status,
              'host': volume.host,
              'seconds': round(time.monotonic() - started, 1)}
    return zip(*sorted(result.items()))
