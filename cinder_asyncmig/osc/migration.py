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
import datetime
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
    'next_attempt_at', 'started_at', 'updated_at', 'new_volume_type_id')
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
            '--source-host', metavar='<backend>',
            help='Only migrations from this backend, host@backend (pools '
                 'ignored).')
        parser.add_argument(
            '--target-host', metavar='<backend>',
            help='Only migrations to this backend, host@backend (pools '
                 'ignored).')
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


def progress_line(migration, status):
    """One line of a migration's progress: bar, percent, rate, ETA."""
    if not migration:
        return 'migration_status %s' % status
    if migration['phase'] == 'aborting':
        return ('aborting: librbd rolls the migration back (it tells no '
                'progress)')
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


class _WaitingAction(_OnVolume, command.ShowOne):
    """A volume action, then with ``--wait`` a wait for its end.

    Shows where the volume is once the action is taken, or once the wait
    ends, and how long it took.
    """

    wait_help = None

    def get_parser(self, prog_name):
        parser = super(_WaitingAction, self).get_parser(prog_name)
        parser.add_argument(
            '--wait', action='store_true', default=False,
            help=self.wait_help)
        return parser

    def action(self, parsed_args):
        """The action's body: ``{name: arguments}``."""
        raise NotImplementedError()

    def wait(self, volume_client, volume_id):
        """Poll until the action has ended; the volume then."""
        raise NotImplementedError()

    def take_action(self, parsed_args):
        volume_client, volume = self.volume(parsed_args)
        started = time.monotonic()
        _post_action(volume_client, volume.id, self.action(parsed_args))
        shown = self.wait(volume_client, volume.id) if (
            parsed_args.wait) else volume_client.get_volume(volume.id)
        result = {'id': shown.id, 'host': shown.host,
                  'migration_status': shown.migration_status,
                  'seconds': round(time.monotonic() - started, 1)}
        return zip(*sorted(result.items()))


class StartMigration(_WaitingAction):
    """Migrate a volume to another backend (admin only)."""

    volume_help = 'Volume to migrate (name or ID).'
    wait_help = ('Show the progress until the migration ends (Ctrl-C stops '
                 'the waiting, not the migration).')

    def get_parser(self, prog_name):
        parser = super(StartMigration, self).get_parser(prog_name)
        parser.add_argument(
            '--host', metavar='<pool>', required=True,
            help='Destination, host@backend#pool. To an async target the '
                 'volume is usable there at once, while its data is '
                 'copied.')
        parser.add_argument(
            '--force-host-copy', action='store_true', default=False,
            help='Cinder\'s own generic copy, never the async one.')
        return parser

    def action(self, parsed_args):
        return {'os-migrate_volume': {
            'host': parsed_args.host,
            'force_host_copy': parsed_args.force_host_copy}}

    def wait(self, volume_client, volume_id):
        """:raises CommandError: the migration ended in error."""
        volume = _watch(volume_client, volume_id)
        if volume.migration_status == 'error':
            raise exceptions.CommandError(
                'The migration of volume %s ended in error; see its user '
                'messages (openstack volume message list) and the target '
                'volume service\'s log.' % volume_id)
        return volume


class AbortMigration(_WaitingAction):
    """Abort a volume's asynchronous migration (admin only).

    The volume goes back to its source backend and its migration_status
    becomes error, with a user message saying it was aborted.
    """

    volume_help = 'Volume that migrates, detached (name or ID).'
    wait_help = 'Wait until the volume is back on its source.'

    def get_parser(self, prog_name):
        parser = super(AbortMigration, self).get_parser(prog_name)
        parser.add_argument(
            '--force', action='store_true', default=False,
            help='Abort an import-only migration (a source in another '
                 'cluster, a file or an exporter): its target copy is '
                 'deleted, and every write made to the volume since the '
                 'migration began is lost. A linked migration (a source '
                 'in the same cluster) loses nothing and needs no force.')
        return parser

    def action(self, parsed_args):
        return {'os-async-migration-abort': {'force': parsed_args.force}}

    def wait(self, volume_client, volume_id):
        """Poll while the abort runs.

        :raises CommandError: the migration was not aborted (it had
            committed, or a client opened the volume meanwhile) and goes
            on.
        """
        def ended(volume, migration):
            if volume.migration_status == 'error':
                return True
            phase = migration['phase'] if migration and (
                volume.migration_status == 'migrating_attachable') else None
            if phase != 'aborting':
                raise exceptions.CommandError(
                    'The migration of volume %(id)s was not aborted (its '
                    'migration_status is %(status)s, its phase %(phase)s); '
                    'see its user messages (openstack volume message '
                    'list).' % {'id': volume_id, 'phase': phase,
                                'status': volume.migration_status})
            return False

        return _watch(volume_client, volume_id, ended)


def _watch(volume_client, volume_id, ended=None):
    """Poll until the migration ends; a line of progress on stderr.

    :param ended: ``ended(volume, migration)``, whether to stop waiting
        (it may raise instead); by default once the migration_status is
        one a migration ends with.
    :returns: the volume then.
    """
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
        line = progress_line(migration, status)
        if tty:
            sys.stderr.write('\r\033[K' + line)
        elif line != last:
            sys.stderr.write(line + '\n')
        sys.stderr.flush()
        last = line
        try:
            done = ended(volume, migration) if ended else status in _ENDED
        except exceptions.CommandError:
            if tty:
                sys.stderr.write('\n')
            raise
        if done:
            if tty:
                sys.stderr.write('\n')
            return volume
        time.sleep(_POLL)


def _backend(host):
    """The ``host@backend`` of ``host``, pools ignored."""
    return host.split('#', 1)[0] if host else host


def _epoch(iso):
    return datetime.datetime.fromisoformat(iso).timestamp() if iso else None


class DrainMigration(command.Lister):
    """Migrate every available volume of a backend to another (admin only).

    The volumes move a few at a time, each usable on the destination at
    once. Ctrl-C stops starting new ones: the ones under way finish on
    their own, and running the same command again carries on.
    """

    # a volume's outcome while the drain runs, then at its end
    _COLUMNS = ('ID', 'Name', 'Size', 'Result', 'Seconds')

    def get_parser(self, prog_name):
        parser = super(DrainMigration, self).get_parser(prog_name)
        parser.add_argument(
            '--from', dest='source', metavar='<backend>', required=True,
            help='Backend to empty, host@backend (pools ignored).')
        parser.add_argument(
            '--to', dest='target', metavar='<pool>', required=True,
            help='Destination, host@backend#pool: a pool of an async '
                 'migration target.')
        parser.add_argument(
            '--parallel', metavar='<count>', type=int,
            help='Migrations under way at once (default, and at most: the '
                 'destination\'s async_migration_max_concurrent_copies, or '
                 '4 when it has no bound).')
        parser.add_argument(
            '--max-rate', metavar='<bytes-per-second>', type=_rate,
            help='Cap each copy at this rate (e.g. 64MiB), as '
                 '"openstack volume migration set --max-rate" does.')
        return parser

    def run(self, parsed_args):
        status = super(DrainMigration, self).run(parsed_args)
        if self._interrupted:
            return 130
        return 1 if self._failed else status

    def take_action(self, parsed_args):
        self._interrupted = self._failed = False
        volume_client = self.app.client_manager.volume
        parallel = self._parallel(volume_client, parsed_args)
        fleet, pending = self._survey(volume_client, parsed_args.source)
        started = {}    # volume id -> when this run started it
        capped = set()
        try:
            while True:
                under_way = self._under_way(volume_client, parsed_args)
                for migration in under_way.values():
                    self._follow(volume_client, fleet, migration,
                                 parsed_args.max_rate, capped)
                for volume_id, row in fleet.items():
                    if 'migration' in row and volume_id not in under_way:
                        self._ended(volume_client, row, started)
                # those just asked for, too, before they show in the list
                busy = {i for i, r in fleet.items() if 'migration' in r}
                while pending and len(busy) < parallel:
                    volume_id = pending.pop(0)
                    if self._start(volume_client, fleet[volume_id],
                                   parsed_args.target):
                        started[volume_id] = time.time()
                        busy.add(volume_id)
                self._draw(fleet)
                if not pending and not busy:
                    break
                time.sleep(_POLL)
        except KeyboardInterrupt:
            self._interrupted = True
            self._leave(fleet, pending)
        return self._COLUMNS, [tuple(r[c] for c in self._COLUMNS)
                               for r in fleet.values()]

    def _survey(self, volume_client, source):
        """The source's volumes as rows, by id; those to migrate."""
        fleet = {}      # in the order found
        pending = []
        for volume in volume_client.volumes(details=True, all_projects=True):
            if _backend(volume.host) != _backend(source):
                continue
            reason = self._skipped(volume)
            fleet[volume.id] = {'ID': volume.id, 'Name': volume.name,
                                'Size': volume.size, 'Result': reason,
                                'Seconds': None}
            if reason is None:
                pending.append(volume.id)
        return fleet, pending

    @staticmethod
    def _follow(volume_client, fleet, migration, max_rate, capped):
        """Update the row of a migration under way; cap it once."""
        volume_id = migration['volume_id']
        row = fleet.setdefault(volume_id, {
            'ID': volume_id, 'Name': migration['name'],
            'Size': (migration['bytes_total'] or 0) // 2 ** 30,
            'Seconds': None})
        row['Result'] = migration['phase']
        row['migration'] = migration
        if (max_rate is not None and volume_id not in capped and
                migration['phase'] != 'taking-over'):
            capped.add(volume_id)
            try:
                _post_action(volume_client, volume_id, {
                    'os-async-migration-set': {'max_bytes_per_sec':
                                               max_rate}})
            except sdk_exceptions.ConflictException:
                pass  # it ended meanwhile

    @staticmethod
    def _leave(fleet, pending):
        """Mark what an interrupted drain leaves, and say so."""
        for volume_id in pending:
            fleet[volume_id]['Result'] = 'not started'
        for row in fleet.values():
            if row['Result'] is None:
                # interrupted while asking Cinder to migrate it
                row['Result'] = 'asked, unknown (see its migration_status)'
        going = [r for r in fleet.values() if 'migration' in r]
        for row in going:
            row['Result'] += ' (goes on)'
        sys.stderr.write(
            '\nInterrupted: %d migration(s) under way go on and end on '
            'their own; %d volume(s) not started. Run the same command '
            'again to carry on.\n' % (len(going), len(pending)))

    def _parallel(self, volume_client, parsed_args):
        """Migrations at once, within the destination's bound."""
        if parsed_args.parallel is not None and parsed_args.parallel < 1:
            raise exceptions.CommandError('--parallel must be at least 1.')
        pools = {pool['name']: pool.get('capabilities') or {}
                 for pool in _get(volume_client, '/scheduler-stats/get_pools'
                                  '?detail=True')['pools']}
        if parsed_args.target not in pools:
            raise exceptions.CommandError(
                'The scheduler knows no pool %s; the pools are: %s.' % (
                    parsed_args.target, ', '.join(sorted(pools))))
        capabilities = pools[parsed_args.target]
        if not capabilities.get('async_migration_target'):
            raise exceptions.CommandError(
                '%s is not an async migration target.' % parsed_args.target)
        bound = capabilities.get('async_migration_max_concurrent_copies')
        wanted = parsed_args.parallel or bound or 4
        if bound and wanted > bound:
            sys.stderr.write('--parallel %d is above the destination\'s '
                             'bound of %d copies at once; using %d.\n' %
                             (wanted, bound, bound))
            wanted = bound
        return wanted

    @staticmethod
    def _skipped(volume):
        """Why the drain leaves ``volume`` where it is, or None."""
        if volume.status == 'in-use' or volume.attachments:
            return ('skipped: attached; Cinder migrates attached volumes '
                    'with Nova (openstack server migrate, or detach first)')
        if volume.status != 'available':
            return 'skipped: its status is %s' % volume.status
        if volume.migration_status not in (None, 'success', 'error'):
            return 'skipped: migrating already (%s)' % (
                volume.migration_status)
        return None

    @staticmethod
    def _under_way(volume_client, parsed_args):
        """The migrations from the source to the destination, by volume."""
        query = urllib.parse.urlencode({
            'source_host': _backend(parsed_args.source),
            'target_host': _backend(parsed_args.target)})
        return {m['volume_id']: m for m in _get(
            volume_client, '%s?%s' % (_PATH, query))['async_migrations']}

    def _start(self, volume_client, row, target):
        try:
            _post_action(volume_client, row['ID'], {'os-migrate_volume': {
                'host': target, 'force_host_copy': False}})
        except sdk_exceptions.HttpException as exc:
            row['Result'] = 'refused: %s' % (exc.details or exc)
            self._failed = True
            return False
        row['Result'] = 'taking-over'
        row['migration'] = None
        return True

    def _ended(self, volume_client, row, started):
        """Record how the migration of ``row``'s volume ended."""
        volume = volume_client.get_volume(row['ID'])
        if volume.migration_status not in _ENDED:
            return  # between the hand-over and the list, or Cinder's own
        migration = row.pop('migration') or {}
        began = started.get(row['ID']) or _epoch(migration.get('started_at'))
        row['Result'] = volume.migration_status
        row['Size'] = volume.size
        if began:
            row['Seconds'] = round(time.time() - began, 1)
        if volume.migration_status == 'error':
            self._failed = True

    def _draw(self, fleet):
        """The fleet's progress: a line per migration under way, a total."""
        rows = list(fleet.values())
        moving = [r for r in rows if 'migration' in r]
        done = [r for r in rows if r['Result'] in ('success', 'deleting')]
        total = sum(r['Size'] or 0 for r in rows
                    if not str(r['Result']).startswith('skipped'))
        copied = sum(r['Size'] or 0 for r in done) + sum(
            ((r['migration'] or {}).get('bytes_copied') or 0) / 2 ** 30
            for r in moving)
        percent = 100.0 * copied / total if total else 100.0
        filled = int(_BAR * percent / 100)
        lines = ['%-36s %s' % (r['ID'], progress_line(
            r['migration'], r['Result'])) for r in moving]
        lines.append('[%s%s] %5.1f%%  %d of %d volumes migrated, %d under '
                     'way' % ('#' * filled, '.' * (_BAR - filled), percent,
                              len(done), len([
                                  r for r in rows if not str(
                                      r['Result']).startswith('skipped')]),
                              len(moving)))
        text = '\n'.join(lines)
        if sys.stderr.isatty():
            drawn = getattr(self, '_drawn', 0)
            sys.stderr.write('\033[%dA\033[J' % drawn if drawn else '')
            sys.stderr.write(text + '\n')
            self._drawn = len(lines)
        elif text != getattr(self, '_last', None):
            sys.stderr.write(text + '\n')
        sys.stderr.flush()
        self._last = text
