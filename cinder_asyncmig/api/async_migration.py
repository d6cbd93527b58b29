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

"""The cinder-api extension of async migration.

Loaded next to Cinder's standard extensions, with no change to Cinder,
by two values of ``[DEFAULT] osapi_volume_extension``:
``cinder.api.contrib.standard_extensions`` and
``cinder_asyncmig.api.async_migration.Async_migration``.

It adds:

- ``GET /v3/{project_id}/async-migrations``: the asynchronous migrations,
  filterable by ``source_host``, ``target_host`` (backends, pools
  ignored) and ``phase``; ``GET .../async-migrations/{volume_id}``: one;
- ``migration_progress`` in the details of a volume that migrates
  asynchronously, the same for that volume; absent from the others, as
  clients that check a volume's fields strictly (tempest's schemas) know
  no such field;
- the volume actions ``os-async-migration-set`` (the migration's cap,
  ``max_bytes_per_sec``), ``os-async-migration-pause``,
  ``os-async-migration-resume`` and ``os-async-migration-abort``
  (``force`` for an import-only migration), through the target host's
  RPC API;
- the plugin's user messages (:mod:`cinder_asyncmig.messages`), so that
  ``/messages`` renders them.

What they show is the record the target's volume service keeps
(:mod:`cinder_asyncmig.volume.progress`). Every call is admin-only by
default (:mod:`.policies`).
"""

from cinder.api import extensions
from cinder.api.openstack import wsgi
from cinder import db
from cinder import exception as cinder_exception
from cinder.i18n import _
from cinder import objects
from cinder.volume import volume_utils
from oslo_utils import strutils
import webob

from cinder_asyncmig.api import policies
from cinder_asyncmig import messages
from cinder_asyncmig.volume import constants
from cinder_asyncmig.volume import progress
from cinder_asyncmig.volume import rpcapi

# the migration_status of an asynchronous migration: handed over, or
# usable on its target
_MIGRATING = ('starting', 'migrating', constants.ATTACHABLE)
_HOST_FILTERS = ('source_host', 'target_host')


def _visible_volume(context, volume_id):
    """The volume, with its admin metadata, if ``context`` may see it.

    :raises VolumeNotFound: it does not exist, or is another project's and
                            ``context`` is not an admin's.
    """
    volume = objects.Volume.get_by_id(context.elevated(), volume_id)
    if not context.is_admin and volume.project_id != context.project_id:
        raise cinder_exception.VolumeNotFound(volume_id=volume_id)
    return volume


def _admin_view(context, volume):
    """``volume`` with its admin metadata, whoever asks."""
    if not context.is_admin:
        volume.admin_metadata = db.volume_admin_metadata_get(
            context.elevated(), volume.id)
    return volume


class AsyncMigrationsController(wsgi.Controller):
    """The asynchronous migrations, one per volume."""

    def index(self, req):
        """The migrations, filtered by backend and phase."""
        context = req.environ['cinder.context']
        policies.authorize(context, policies.GET_ALL_POLICY)
        filters = dict(req.params)
        unknown = set(filters) - set(_HOST_FILTERS + ('phase',))
        if unknown:
            raise webob.exc.HTTPBadRequest(explanation=_(
                'Unknown filters: %(unknown)s. The filters are '
                'source_host, target_host and phase.') % {
                    'unknown': ', '.join(sorted(unknown))})
        if filters.get('phase', progress.COPYING) not in progress.PHASES:
            raise webob.exc.HTTPBadRequest(explanation=_(
                'Unknown phase %(phase)s; the phases are %(all)s.') % {
                    'phase': filters['phase'],
                    'all': ', '.join(progress.PHASES)})
        query = {'migration_status': list(_MIGRATING)}
        if not context.is_admin:
            query['project_id'] = context.project_id
        found = []
        for volume in objects.VolumeList.get_all(
                context.elevated(), filters=query, sort_keys=['created_at'],
                sort_dirs=['asc']):
            if not progress.is_async(volume):
                continue  # Cinder's own migration
            migration = progress.describe(volume)
            if all(volume_utils.hosts_are_equivalent(migration[key], value)
                   for key, value in filters.items()
                   if key in _HOST_FILTERS) and (
                    filters.get('phase', migration['phase']) ==
                    migration['phase']):
                found.append(migration)
        return {'async_migrations': found}

    def show(self, req, id):
        """The migration of volume ``id``."""
        context = req.environ['cinder.context']
        policies.authorize(context, policies.GET_POLICY)
        volume = _visible_volume(context, id)
        if not progress.is_async(volume):
            raise webob.exc.HTTPNotFound(explanation=_(
                'Volume %(id)s is not migrating asynchronously (its '
                'migration_status is %(status)s).') % {
                    'id': id, 'status': volume.migration_status})
        return {'async_migration': progress.describe(volume)}


class VolumeProgressController(wsgi.Controller):
    """``migration_progress`` in volume details, for those allowed."""

    def _add(self, req, resp_volume):
        context = req.environ['cinder.context']
        volume = req.get_db_volume(resp_volume['id'])
        if volume.migration_status not in _MIGRATING:
            return  # no admin metadata read for the rest
        volume = _admin_view(context, volume)
        if progress.is_async(volume):
            resp_volume['migration_progress'] = progress.describe(volume)

    @wsgi.extends
    def show(self, req, resp_obj, id):
        context = req.environ['cinder.context']
        if policies.authorize(context, policies.PROGRESS_ATTRIBUTE_POLICY,
                              fatal=False):
            self._add(req, resp_obj.obj['volume'])

    @wsgi.extends
    def detail(self, req, resp_obj):
        context = req.environ['cinder.context']
        if policies.authorize(context, policies.PROGRESS_ATTRIBUTE_POLICY,
                              fatal=False):
            for volume in list(resp_obj.obj['volumes']):
                self._add(req, volume)


class VolumeActionsController(wsgi.Controller):
    """The volume actions that steer a migration."""

    _SET_USAGE = _('os-async-migration-set takes max_bytes_per_sec: a '
                   'whole number of bytes per second, 0 for no cap of the '
                   'migration\'s own (its backend\'s still holds), or null '
                   'to drop the cap set here (the volume metadata\'s '
                   'applies again).')

    _ABORT_USAGE = _('os-async-migration-abort takes an optional force: '
                     'true to abort an import-only migration, discarding '
                     'the writes made to the volume since it began.')

    def __init__(self, *args, **kwargs):
        super(VolumeActionsController, self).__init__(*args, **kwargs)
        self._rpcapi = None

    @property
    def rpcapi(self):
        if self._rpcapi is None:
            self._rpcapi = rpcapi.AsyncMigrationAPI()
        return self._rpcapi

    def _steer(self, req, id, rule, call, arguments=tuple, version='1.2'):
        """Ask the volume's target host for ``call`` on its migration.

        :param arguments: returns ``call``'s arguments after the volume,
            once the caller is authorized; raises HTTPBadRequest.
        :param version: the RPC API version ``call`` needs.
        :raises HTTPConflict: the volume does not migrate asynchronously
            (or no longer), the target refuses, or a volume service is too
            old for the request.
        """
        context = req.environ['cinder.context']
        policies.authorize(context, rule)
        args = arguments()
        volume = _visible_volume(context, id)
        if (volume.migration_status != constants.ATTACHABLE or
                not progress.is_async(volume)):
            raise webob.exc.HTTPConflict(explanation=_(
                'Volume %(id)s does not copy in an asynchronous migration '
                '(its migration_status is %(status)s%(handover)s).') % {
                    'id': id, 'status': volume.migration_status,
                    'handover': _(': it is being handed over to its target')
                    if progress.is_async(volume) else ''})
        if not self.rpcapi.can_steer_migrations(version):
            raise webob.exc.HTTPConflict(explanation=_(
                'The volume services do not all take this request yet '
                '([asyncmig] rpc_version_cap); upgrade them first.'))
        try:
            call(context, volume, *args)
        except cinder_exception.InvalidVolume as exc:
            raise webob.exc.HTTPConflict(explanation=exc.msg)

    @wsgi.response(202)
    @wsgi.action('os-async-migration-set')
    def _set(self, req, id, body):
        """Set the cap of the volume's migration, on its target host."""
        def cap():
            params = body.get('os-async-migration-set')
            if not isinstance(params, dict) or set(params) != {
                    'max_bytes_per_sec'}:
                raise webob.exc.HTTPBadRequest(explanation=self._SET_USAGE)
            value = params['max_bytes_per_sec']
            if value is not None and (isinstance(value, bool) or
                                      not isinstance(value, int) or
                                      value < 0):
                raise webob.exc.HTTPBadRequest(explanation=self._SET_USAGE)
            return (value,)
        self._steer(req, id, policies.SET_POLICY,
                    self.rpcapi.set_migration_cap, cap)

    @wsgi.response(202)
    @wsgi.action('os-async-migration-pause')
    def _pause(self, req, id, body):
        """Stop the volume's copy until resumed; it stays usable."""
        self._steer(req, id, policies.PAUSE_POLICY,
                    self.rpcapi.pause_migration)

    @wsgi.response(202)
    @wsgi.action('os-async-migration-resume')
    def _resume(self, req, id, body):
        """Start a paused copy again."""
        self._steer(req, id, policies.RESUME_POLICY,
                    self.rpcapi.resume_migration)

    @wsgi.response(202)
    @wsgi.action('os-async-migration-abort')
    def _abort(self, req, id, body):
        """Roll the volume's migration back; it returns to its source.

        A linked migration loses nothing; an import-only one needs
        ``force``, and discards the writes made since it began.
        """
        def force():
            params = body.get('os-async-migration-abort')
            if params is None:
                params = {}
            value = params.get('force', False) if isinstance(
                params, dict) else None
            if (not isinstance(params, dict) or set(params) - {'force'} or
                    not isinstance(value, (bool, str))):
                raise webob.exc.HTTPBadRequest(explanation=self._ABORT_USAGE)
            try:
                return (strutils.bool_from_string(value, strict=True),)
            except ValueError:
                raise webob.exc.HTTPBadRequest(explanation=self._ABORT_USAGE)
        self._steer(req, id, policies.ABORT_POLICY,
                    self.rpcapi.abort_migration, force, version='1.3')


class Async_migration(extensions.ExtensionDescriptor):
    """Asynchronous volume migration to Ceph RBD target backends."""

    name = 'AsyncMigration'
    alias = 'os-async-migration'
    updated = '2026-12-05T00:00:00+00:00'

    def __init__(self, ext_mgr):
        messages.register()
        super(Async_migration, self).__init__(ext_mgr)

    def get_resources(self):
        return [extensions.ResourceExtension('async-migrations',
                                             AsyncMigrationsController())]

    def get_controller_extensions(self):
        return [extensions.ControllerExtension(self, 'volumes', controller)
                for controller in (VolumeProgressController(),
                                   VolumeActionsController())]
