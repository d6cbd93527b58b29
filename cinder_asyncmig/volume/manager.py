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

"""Volume manager that carries out asynchronous migrations.

Selected with ``[DEFAULT] volume_manager`` on every volume service (source
and target backends alike). On the source host, ``migrate_volume`` asks the
target backend to take the volume over (RPC ``migrate_volume_target``);
when the target does so asynchronously the volume moves to the target host
at once with ``migration_status = migrating_attachable`` and the target's
``complete_migration_target`` copies the data in the background, commits,
and sets ``success``. Everything else is Cinder's own migration.

What a restart finds is resumed in ``init_host``: the target restarts the
background copy of its ``migrating_attachable`` volumes, the source
re-asks the target for volumes it was handing over (taking over is
idempotent).
"""

import contextlib
import functools
import threading
import time

from cinder import context as cinder_context
from cinder import coordination
from cinder import exception as cinder_exception
from cinder.i18n import _
from cinder import objects
from cinder import quota
from cinder import quota_utils
from cinder.volume.drivers import remotefs
from cinder.volume import manager
from cinder.volume import volume_utils
from os_brick import exception as brick_exception
from oslo_concurrency import processutils
from oslo_config import cfg
from oslo_db import exception as db_exc
from oslo_log import log as logging
import oslo_messaging as messaging
from oslo_service import periodic_task
from oslo_utils import excutils
from oslo_utils import timeutils
from oslo_utils import units
import tooz

from cinder_asyncmig import exception
from cinder_asyncmig import messages
from cinder_asyncmig import opts
from cinder_asyncmig.sources import file as file_source
from cinder_asyncmig.volume import constants
from cinder_asyncmig.volume import notifications
from cinder_asyncmig.volume import progress as progress_record
from cinder_asyncmig.volume import rpcapi
from cinder_asyncmig.volume import slots
from cinder_asyncmig.volume import throttle

CONF = cfg.CONF
# seconds a delete waits for the volume's completion to stop: one poll of
# the copy, or a commit that is under way
_STOP_TIMEOUT = 120
# seconds a pause waits for it, within the API's call to this service
_PAUSE_TIMEOUT = 60
LOG = logging.getLogger(__name__)
# a volume's lock, through Cinder's coordination (tooz), so it also holds
# across the hosts of a cluster: its take-over, a copy attempt, the end of
# its migration and the roll-back of a delete never overlap
LOCK = '{volume.id}' + constants.LOCK_SUFFIX
# admin metadata keys of what operators asked of a migration; none
# outlives it
_STEERING_KEYS = (throttle.ADMIN_RATE_KEY, constants.PAUSED_KEY,
                  constants.ABORTING_KEY)
# seconds between two looks for migrations nothing completes; the
# manager's periodic tasks run every [DEFAULT] periodic_interval at most
_ADOPT_SPACING = 10


@contextlib.contextmanager
def _rpc_safe_errors():
    """Re-raise plugin errors as their nearest ``cinder.exception`` type.

    oslo.messaging rebuilds only ``cinder.exception`` types on the caller's
    side; anything else would reach it as an opaque RemoteError.
    """
    try:
        yield
    except cinder_exception.CinderException as exc:
        for cls in type(exc).__mro__:
            if cls.__module__ == cinder_exception.__name__:
                if cls is type(exc):
                    raise
                raise cls(str(exc)) from exc
        raise


def _target_lacks_endpoint(exc):
    """True when the target's RPC server has no async migration endpoint.

    oslo.messaging's dispatcher answers UnsupportedVersion when no endpoint
    serves the namespace; the error reaches the caller as itself or, as
    its module is not an allowed remote one, as a RemoteError naming it.
    """
    missing = (messaging.UnsupportedVersion, messaging.NoSuchMethod)
    if isinstance(exc, missing):
        return True
    return isinstance(exc, messaging.RemoteError) and exc.exc_type in (
        'UnsupportedVersion', 'NoSuchMethod')


# what a target answers when it will not take a volume over (bad input:
# the source is missing, open by a client, set up wrong), as the caller
# receives it: plugin errors are rebuilt as their Cinder base
_REFUSALS = (cinder_exception.Invalid, cinder_exception.NotFound)


def _message_of(exc):
    """The text of ``exc``, without the remote traceback of an RPC error.

    oslo.messaging appends the remote side's traceback to the text of an
    error it rebuilds; Cinder's errors keep the bare text in ``msg``.
    """
    return getattr(exc, 'msg', None) or str(exc)


class _Stopped(Exception):
    """A completion was asked to stop (its volume is being deleted)."""


class _Deleted(_Stopped):
    """The volume is being deleted through another service."""


class _Lost(Exception):
    """Another volume service of the cluster has taken the volume over."""


class _Completion(object):
    """One migration completed here: in line, copying or waiting to retry.

    ``stop`` asks it to end, ``ended`` tells it has.
    """

    def __init__(self):
        self.stop = threading.Event()
        self.ended = threading.Event()
        self.recorder = None
        # failed attempts so far, and the wait before the next one
        self.attempt = 0
        self.delay = 0


# what an attempt answers when it failed on an error that can heal
_RETRY = object()

# errors a later attempt can get past: the cluster's and the engine's (a
# worker that died, an OSD or a pool back), the network's and the
# services' (a database, broker or coordination backend restarted), an
# attached source's (os-brick and the commands it runs), a driver still
# starting
_HEALING = (cinder_exception.VolumeBackendAPIException,
            cinder_exception.DriverNotInitialized,
            cinder_exception.LockCreationFailed, OSError, db_exc.DBError,
            messaging.MessagingException, tooz.ToozError,
            brick_exception.BrickException,
            processutils.ProcessExecutionError)


def _can_heal(exc):
    """Whether another attempt may succeed where ``exc`` stopped one.

    librados and librbd errors belong to the cluster; they are told by
    their module, as the bindings are not imported here.
    """
    return (isinstance(exc, _HEALING) or
            type(exc).__module__ in ('rados', 'rbd'))


class _ProgressRecorder(object):
    """Writes copy progress into the volume's metadata, throttled.

    At the same pace it reads the cap the metadata asks for
    (:data:`~cinder_asyncmig.volume.throttle.RATE_KEY`) and hands it to
    ``on_cap``: a user can change it while the volume copies, and a copy
    worker started again mid-copy gets it back. Once the event ``stop`` is
    set, the next call raises :class:`_Stopped`. With ``owner``, a
    callable, each write asks it first whether this service still owns the
    migration, and raises :class:`_Lost` once it does not; before the
    commit, a database error asking it is raised too. With
    ``notify``, a callable, it calls it at each change of phase and at
    most every ``[asyncmig] notification_interval`` seconds meanwhile.
    """

    def __init__(self, db, ctxt, volume_id, interval, on_cap=None,
                 stop=None, owner=None, notify=None):
        self._db = db
        self._notify = notify
        self._notified = (None, 0.0)
        self._stop = stop
        self._owner = owner
        self._ctxt = ctxt
        self._volume_id = volume_id
        self._interval = interval
        self._on_cap = on_cap
        self._last = 0.0
        self._refused = None
        self._db_lost = False
        # the last copying progress, kept in the text of a retry
        self._copied = None
        # the cap the copy last got, and when the migration started (the
        # record's, once read)
        self._cap = None
        self._started = None

    @staticmethod
    def render(progress):
        text = '%.1f%% (%d of %d MiB, %d MiB/s)' % (
            progress.get('percent', 0.0),
            progress.get('bytes_copied', 0) // units.Mi,
            progress.get('bytes_total', 0) // units.Mi,
            progress.get('rate_bytes_per_sec', 0) // units.Mi)
        if progress.get('kind'):
            text += ' from %s source' % progress['kind']
        if progress.get('copy_in'):
            text += ('; copying in the client that holds the volume\'s lock '
                     '(its hypervisor), where the cap does not apply')
        return text

    def __call__(self, progress):
        if self._stop is not None and self._stop.is_set():
            # out of the driver's copy loop; the worker goes on until
            # whoever asked stops it
            raise _Stopped()
        now = time.monotonic()
        if progress.get('phase') == 'copying':
            self._copied = progress
            if now - self._last < self._interval:
                return
        self._last = now
        if self._owner is not None:
            if progress.get('phase') == 'committing':
                # only the owner commits: a database that cannot say who
                # owns the migration holds the commit back (the error
                # ends the attempt, which is retried)
                if not self._owner():
                    raise _Lost()
            else:
                with self._database():
                    if not self._owner():
                        raise _Lost()
        if self._on_cap is not None and progress.get('phase') == 'copying':
            with self._database():
                self._follow_cap()
        self._write(self.render(progress), self._copying(
            progress, phase=progress_record.of_driver(progress.get('phase')),
            copy_in=progress.get('copy_in')))

    def _follow_cap(self):
        metadata = self._db.volume_metadata_get(self._ctxt, self._volume_id)
        try:
            cap = throttle.requested(metadata,
                                     self._db.volume_admin_metadata_get(
                                         self._ctxt, self._volume_id))
        except ValueError:
            value = metadata.get(throttle.RATE_KEY)
            if value != self._refused:
                self._refused = value
                LOG.warning('Volume %(vol)s: %(key)s must be a number of '
                            'bytes per second; the copy keeps its cap.',
                            {'vol': self._volume_id,
                             'key': throttle.RATE_KEY})
            return
        self._cap = self._on_cap(cap)

    def _copying(self, progress, **fields):
        """The record's fields of a copy's ``progress`` and ``fields``.

        What the copy last reported and its cap stay in view while it
        waits in line or for a retry.
        """
        record = dict(cap=self._cap)
        if progress is not None:
            record.update(copied=progress.get('bytes_copied'),
                          total=progress.get('bytes_total'),
                          rate=progress.get('rate_bytes_per_sec'),
                          kind=progress.get('kind'))
        record.update(fields)
        return record

    def queued(self, place):
        self._write('queued for a copy slot: %s in line' % (
            'next' if place == 1 else 'place %d' % place),
            self._copying(self._copied, phase=progress_record.QUEUED,
                          place=place))

    def retrying(self, attempt, delay, exc):
        text = 'interrupted by %(err)s; retry %(n)d in %(delay)d s' % {
            'err': type(exc).__name__, 'n': attempt, 'delay': delay}
        if self._copied is not None:
            text = '%.1f%% (%d of %d MiB) copied; %s' % (
                self._copied.get('percent', 0.0),
                self._copied.get('bytes_copied', 0) // units.Mi,
                self._copied.get('bytes_total', 0) // units.Mi, text)
        self._write(text, self._copying(
            self._copied, phase=progress_record.RETRYING, attempt=attempt,
            error=type(exc).__name__, retry_at=int(time.time() + delay),
            rate=0))

    def _write(self, text, record):
        """Write the user's text and the operators' record.

        :param record: the :mod:`progress_record` fields of now.
        """
        with self._database():
            if self._started is None:
                admin = self._db.volume_admin_metadata_get(
                    self._ctxt, self._volume_id)
                self._started = progress_record.decode(
                    admin.get(progress_record.KEY)).get(
                        'started', int(time.time()))
            self._db.volume_metadata_update(
                self._ctxt, self._volume_id, {constants.PROGRESS_KEY: text},
                False)
            self._db.volume_admin_metadata_update(
                self._ctxt, self._volume_id, {
                    progress_record.KEY: progress_record.encode(dict(
                        record, started=self._started,
                        updated=int(time.time())))}, False)
        if self._notify is None:
            return
        phase, now = record.get('phase'), time.monotonic()
        last_phase, last = self._notified
        if phase != last_phase or now - last >= CONF[
                opts.GROUP].notification_interval:
            self._notified = (phase, now)
            self._notify()

    @contextlib.contextmanager
    def _database(self):
        """Skip a progress write or cap read the database cannot take.

        The progress is for people to read and the cap stays as it was:
        neither is a reason to stop a copy. The next write tries again.
        """
        try:
            yield
        except db_exc.DBError as exc:
            if not self._db_lost:
                LOG.warning('Volume %(vol)s: its progress cannot be '
                            'recorded (%(err)s); the copy goes on.',
                            {'vol': self._volume_id, 'err': exc})
            self._db_lost = True
        else:
            if self._db_lost:
                LOG.info('Volume %s: its progress is recorded again.',
                         self._volume_id)
            self._db_lost = False


def retry_delay(attempt, first, longest):
    """Seconds before retry number ``attempt``: doubling, capped."""
    return min(first * 2 ** min(attempt - 1, 30), longest)


class AsyncMigrationEndpoint(object):
    """Server side of :class:`rpcapi.AsyncMigrationAPI` (own namespace)."""

    target = messaging.Target(namespace=rpcapi.NAMESPACE,
                              version=rpcapi.AsyncMigrationAPI.RPC_API_VERSION)

    def __init__(self, volume_manager):
        self.manager = volume_manager

    # a refusal is an answer, not a server error: no traceback
    @messaging.expected_exceptions(*_REFUSALS)
    def migrate_volume_target(self, context, volume, src_host):
        """Take ``volume`` over from its source (called on the target).

        :returns: ``(moved, migration_async, model_update)``.
        """
        return self.manager.take_over(context, volume, src_host)

    def complete_migration_target(self, context, volume):
        """Copy, commit and set ``success`` (cast to the target).

        Returns at once: a copy may wait in line for a slot and run for
        hours, and must not hold one of the RPC server's executor threads
        meanwhile (a few dozen migrations would hold them all).
        """
        self.manager.complete_migration(context, volume)

    def cleanup_migration_source(self, context, volume, src_host):
        """Remove a migrated volume's source (called on the source)."""
        with _rpc_safe_errors():
            self.manager.clean_up_source(context, volume, src_host)

    @messaging.expected_exceptions(*_REFUSALS)
    def set_migration_cap(self, context, volume, max_bytes_per_sec):
        """Set the cap of the volume's migration (called on the target)."""
        self.manager.set_migration_cap(context, volume, max_bytes_per_sec)

    @messaging.expected_exceptions(*_REFUSALS)
    def pause_migration(self, context, volume):
        """Stop the volume's copy until resumed (called on the target)."""
        self.manager.pause_migration(context, volume)

    @messaging.expected_exceptions(*_REFUSALS)
    def resume_migration(self, context, volume):
        """Start a paused copy again (called on the target)."""
        self.manager.resume_migration(context, volume)

    @messaging.expected_exceptions(*_REFUSALS)
    def abort_migration(self, context, volume, force=False):
        """Roll the volume's migration back (called on the target)."""
        self.manager.abort_migration(context, volume, force=force)


class AsyncMigrationVolumeManager(manager.VolumeManager):
    """Cinder's volume manager with asynchronous migration to RBD targets."""

    def __init__(self, *args, **kwargs):
        super(AsyncMigrationVolumeManager, self).__init__(*args, **kwargs)
        self.additional_endpoints.append(AsyncMigrationEndpoint(self))
        self._asyncmig_rpcapi = None
        # volume id -> its running _Completion
        self._completing = {}
        # the volumes whose abort runs here
        self._aborting = set()
        self._completing_lock = threading.Lock()
        # volumes whose copy only their (dead) host can resume, told once
        self._left_to_host = set()
        self.copy_slots = slots.CopySlots(self.driver.configuration.safe_get(
            'async_migration_max_concurrent_copies') or 0)
        pool = self.configuration.backend_native_threads_pool_size
        if not self.copy_slots.limit or self.copy_slots.limit >= pool:
            # each running copy holds a thread of the manager's pool
            LOG.warning('async_migration_max_concurrent_copies (%(copies)s) '
                        'is not below backend_native_threads_pool_size '
                        '(%(pool)d): copies may take every thread of the '
                        'volume manager\'s pool, and Cinder\'s own tasks '
                        'that run there wait for them.',
                        {'copies': self.copy_slots.limit or 'no bound',
                         'pool': pool})

    @property
    def asyncmig_rpcapi(self):
        # built on first use: the client reads service versions from the DB
        if self._asyncmig_rpcapi is None:
            self._asyncmig_rpcapi = rpcapi.AsyncMigrationAPI()
        return self._asyncmig_rpcapi

    # -- source side: blueprint steps 1-3 -----------------------------------

    def migrate_volume(self, ctxt, volume, host, force_host_copy=False,
                       new_type_id=None, diff=None):
        """Migrate the volume to ``host`` (called on the source host).

        When the destination advertises ``async_migration_target`` it is
        asked to take the volume over first; a target that declines, and
        every other case, gets Cinder's own migration.

        :param volume: the volume to migrate.
        :param host: the destination, ``{'host', 'capabilities', ...}``.
        :param force_host_copy: skip driver-assisted and async migration.
        :param new_type_id: set by a retype; the volume takes the type
            when its migration ends in success, as Cinder's own
            migrations do.
        :param diff: the type difference of a retype.
        """
        reason = self._stock_migration_reason(volume, host, force_host_copy,
                                              new_type_id, diff)
        if reason:
            LOG.info('Migrating volume %(vol)s the stock way: %(reason)s',
                     {'vol': volume.id, 'reason': reason}, resource=volume)
            return super(AsyncMigrationVolumeManager, self).migrate_volume(
                ctxt, volume, host, force_host_copy=force_host_copy,
                new_type_id=new_type_id, diff=diff)

        try:
            volume_utils.require_driver_initialized(self.driver)
        except cinder_exception.DriverNotInitialized:
            with excutils.save_and_reraise_exception():
                volume.migration_status = 'error'
                volume.save()
        status_update = {}
        if volume.status in ('retyping', 'maintenance'):
            status_update = {'status': volume.previous_status}
        volume.migration_status = 'migrating'
        volume.save()
        self._set_marker(ctxt, volume, host['host'], new_type_id)
        self._hand_over(ctxt, volume, host, status_update, new_type_id, diff)

    def _stock_migration_reason(self, volume, host, force_host_copy,
                                new_type_id, diff=None):
        if volume.volume_attachment:
            return _('it has attachments, and Cinder migrates attached '
                     'volumes itself, with Nova.')
        if force_host_copy:
            return _('force_host_copy was requested.')
        if new_type_id and not self._can_use_driver_migration(diff):
            return _('the retype changes more than the backend (QoS, '
                     'encryption or other extra specs), which only '
                     'Cinder\'s migration applies.')
        if not (host.get('capabilities') or {}).get(
                'async_migration_target'):
            return _('the destination %s is not an async migration '
                     'target.') % host.get('host')
        return None

    def _source_description(self, volume):
        """What the target needs to know of this backend and volume.

        The scheduler's shape (``host``, ``capabilities``) and, when the
        driver keeps the volume in a file (Cinder's NFS driver and the
        other RemoteFS drivers), the file's path on this host.
        """
        stats = self.driver.get_volume_stats(refresh=False)
        if not stats:
            stats = self.driver.get_volume_stats(refresh=True)
        description = {'host': volume.host, 'capabilities': stats}
        if isinstance(self.driver, remotefs.RemoteFSDriver):
            description[file_source.PATH_KEY] = self.driver.local_path(volume)
        return description

    def _hand_over(self, ctxt, volume, host, status_update, new_type_id=None,
                   diff=None):
        try:
            moved, is_async, model_update = (
                self.asyncmig_rpcapi.migrate_volume_target(
                    ctxt, volume, host.get('cluster_name') or host['host'],
                    self._source_description(volume)))
        except _REFUSALS as exc:
            # the target said why, in its log and in a user message
            LOG.error('Target %(host)s refused to take volume %(vol)s over; '
                      'the volume stays on its source: %(err)s',
                      {'host': host['host'], 'vol': volume.id,
                       'err': _message_of(exc)}, resource=volume)
            self._end_hand_over(ctxt, volume, status_update)
            if new_type_id:
                # Cinder's retype then rolls back the quota it reserved
                raise
            return
        except Exception as exc:
            if not _target_lacks_endpoint(exc):
                with excutils.save_and_reraise_exception():
                    LOG.error('Target %(host)s could not take volume '
                              '%(vol)s over; the volume stays on its '
                              'source.', {'host': host['host'],
                                          'vol': volume.id},
                              resource=volume)
                    if not isinstance(exc, (cinder_exception.CinderException,
                                            messaging.RemoteError)):
                        # the target never answered, so told nobody
                        self._tell_user(ctxt, volume, exc)
                    self._end_hand_over(ctxt, volume, status_update)
            # a target still on the stock volume manager (rolling
            # upgrade): nothing was prepared there
            LOG.warning('Target %(host)s does not serve the async migration '
                        'RPC API (is its volume_manager set?).',
                        {'host': host['host']}, resource=volume)
            moved, is_async, model_update = False, False, None
        if not moved:
            LOG.info('Target %(host)s declined to take volume %(vol)s over '
                     'asynchronously; using Cinder\'s migration.',
                     {'host': host['host'], 'vol': volume.id},
                     resource=volume)
            self._clear_marker(ctxt, volume)
            self._clear_marker(ctxt, volume, constants.NEW_TYPE_KEY)
            if status_update:
                volume.update(status_update)
                volume.save()
            return super(AsyncMigrationVolumeManager, self).migrate_volume(
                ctxt, volume, host, new_type_id=new_type_id, diff=diff)

        dst_service = self._get_service(host['host'])
        updates = {
            'host': host['host'],
            'cluster_name': host.get('cluster_name'),
            'availability_zone': dst_service.availability_zone,
            'service_uuid': dst_service.uuid,
            'previous_status': volume.status,
            'migration_status': (constants.ATTACHABLE if is_async
                                 else 'success'),
        }
        updates.update(status_update)
        updates.update(model_update or {})
        if new_type_id and not is_async:
            updates['volume_type_id'] = new_type_id
            self._clear_marker(ctxt, volume, constants.NEW_TYPE_KEY)
        if is_async:
            # the target cleans the source up after the commit
            self._set_source_marker(ctxt, volume, volume.host)
        volume.update(updates)
        volume.save()
        self._clear_marker(ctxt, volume)
        if is_async:
            LOG.info('Volume %(vol)s is usable on %(host)s while its data '
                     'is copied.', {'vol': volume.id, 'host': host['host']},
                     resource=volume)
            self._notify(ctxt, volume, notifications.START)
            self.asyncmig_rpcapi.complete_migration_target(ctxt, volume)

    def _tell_user(self, ctxt, volume, exc, detail=None):
        """Leave a user message (``/messages``) on ``volume`` about ``exc``.

        Cinder logs a message it cannot store and carries on, so the
        message never hides the error it reports.

        The message is the volume's project's, whoever asked: its owner
        reads why its migration_status is error, and admins see every
        project's messages.

        :param detail: the message's detail; by default the one that
                       tells of ``exc``.
        """
        owners = ctxt.elevated()
        owners.project_id = volume.project_id
        self.message_api.create(owners, messages.MIGRATE,
                                resource_uuid=volume.id,
                                detail=detail or messages.detail_of(exc))

    def _end_hand_over(self, ctxt, volume, status_update):
        """The volume stays on its source: its migration ended in error."""
        self._clear_marker(ctxt, volume)
        self._clear_marker(ctxt, volume, constants.NEW_TYPE_KEY)
        volume.update(dict(status_update, migration_status='error'))
        volume.save()

    def _set_marker(self, ctxt, volume, target_host, new_type_id=None):
        marker = {constants.TARGET_KEY: target_host}
        if new_type_id:
            marker[constants.NEW_TYPE_KEY] = new_type_id
        self.db.volume_admin_metadata_update(ctxt.elevated(), volume.id,
                                             marker, False)

    def _clear_marker(self, ctxt, volume, key=constants.TARGET_KEY):
        self.db.volume_admin_metadata_delete(ctxt.elevated(), volume.id, key)

    def _set_source_marker(self, ctxt, volume, source_host):
        left = self._admin_metadata(ctxt, volume).get(constants.SOURCE_KEY)
        if left and left != source_host:
            LOG.warning('Volume %(vol)s is migrated again before the source '
                        'of its previous migration, on %(left)s, was '
                        'removed; remove that backend\'s volume-%(vol)s '
                        'by hand.', {'vol': volume.id, 'left': left},
                        resource=volume)
        now = int(time.time())
        # a new record: none of an earlier migration's times or errors
        for key in _STEERING_KEYS:
            self.db.volume_admin_metadata_delete(ctxt.elevated(), volume.id,
                                                 key)
        self.db.volume_admin_metadata_update(
            ctxt.elevated(), volume.id, {
                constants.SOURCE_KEY: source_host,
                progress_record.KEY: progress_record.encode({
                    'phase': progress_record.COPYING, 'started': now,
                    'updated': now})}, False)

    def _admin_metadata(self, ctxt, volume):
        return self.db.volume_admin_metadata_get(ctxt.elevated(), volume.id)

    def _payload(self, ctxt, volume, admin=None, **changes):
        """A notification's payload of now, or None if it cannot be read."""
        try:
            if admin is None:
                admin = self._admin_metadata(ctxt, volume)
            return notifications.payload(volume, admin, **changes)
        except Exception:
            LOG.exception('Volume %s: cannot read what to notify.',
                          volume.id, resource=volume)
            return None

    def _notify(self, ctxt, volume, event, body=None, **changes):
        """Send ``event``, of ``body`` or of now; never raises."""
        if body is None:
            body = self._payload(ctxt, volume, **changes)
        if body is not None:
            notifications.send(ctxt, self.host, event, body)

    # -- target side: blueprint steps 2 and 4-5 ------------------------------

    @coordination.synchronized(LOCK)
    def take_over(self, ctxt, volume, src_host):
        """Have the driver take ``volume`` over (RPC, on the target).

        :returns: ``(moved, migration_async, model_update)``; drivers
                  without async support decline.
        """
        volume_utils.require_driver_initialized(self.driver)
        if not hasattr(self.driver, 'migrate_volume_target'):
            return False, False, None
        with _rpc_safe_errors():
            try:
                return tuple(self.driver.migrate_volume_target(
                    ctxt, volume, src_host))
            except _REFUSALS as exc:
                LOG.warning('Volume %(vol)s was not taken over: %(err)s',
                            {'vol': volume.id, 'err': exc}, resource=volume)
                self._tell_user(ctxt, volume, exc)
                self._notify(ctxt, volume, notifications.ERROR,
                             last_error=type(exc).__name__,
                             migration_status='error')
                raise
            except Exception as exc:
                self._tell_user(ctxt, volume, exc)
                self._notify(ctxt, volume, notifications.ERROR,
                             last_error=type(exc).__name__,
                             migration_status='error')
                raise

    def complete_migration(self, ctxt, volume):
        """Copy, commit and clean up in the background (on the target).

        Returns at once. The volume waits in line for a copy slot
        (``async_migration_max_concurrent_copies``) with nothing running
        for it; each attempt then runs on the manager's pool. An attempt
        that fails on an error that can heal (the cluster's, the network's,
        a service's) is retried with a growing interval
        (``[asyncmig] retry_interval`` doubling up to
        ``retry_max_interval``) while the volume stays
        ``migrating_attachable`` and usable; the progress key says so. A
        migration that cannot go on (its destination image is gone) or an
        error no retry gets past (a defect) ends in ``error``, with a user
        message.

        One completion per volume at a time: a resume at start-up and a
        cast for the same volume do not race. None for a migration an
        operator paused (:meth:`pause_migration`); one an operator is
        aborting (:meth:`abort_migration`) finishes its abort instead.
        """
        admin = self._admin_metadata(ctxt, volume)
        if admin.get(constants.ABORTING_KEY):
            LOG.info('The migration of volume %s is being aborted; '
                     'finishing the abort.', volume.id, resource=volume)
            self._add_to_threadpool(self._abort, ctxt, volume)
            return
        if admin.get(constants.PAUSED_KEY):
            LOG.info('The migration of volume %s is paused; its copy '
                     'starts once it is resumed.', volume.id,
                     resource=volume)
            return
        with self._completing_lock:
            if volume.id in self._completing:
                LOG.info('Volume %s is already being completed.', volume.id)
                return
            completion = self._completing[volume.id] = _Completion()
        completion.recorder = self._recorder(ctxt, volume, completion.stop)
        self._queue(ctxt, volume, completion)

    def _migrating_here(self, volume, what):
        """Refuse a request about a migration that is not this host's.

        :raises InvalidVolume: it is not ``migrating_attachable`` here.
        """
        volume.refresh()
        if (volume.migration_status != constants.ATTACHABLE or
                not volume_utils.hosts_are_equivalent(volume.host,
                                                      self.host)):
            raise cinder_exception.InvalidVolume(reason=_(
                'cannot %(what)s: volume %(vol)s does not migrate to '
                '%(host)s (its migration_status is %(status)s)') % {
                    'what': what, 'vol': volume.id, 'host': self.host,
                    'status': volume.migration_status})

    def _write_record(self, ctxt, volume, text, **changes):
        """Write the user's text and the record, with ``changes``."""
        admin = self._admin_metadata(ctxt, volume)
        record = dict(progress_record.decode(admin.get(progress_record.KEY)),
                      updated=int(time.time()), **changes)
        self.db.volume_metadata_update(ctxt.elevated(), volume.id,
                                       {constants.PROGRESS_KEY: text}, False)
        self.db.volume_admin_metadata_update(
            ctxt.elevated(), volume.id,
            {progress_record.KEY: progress_record.encode(record)}, False)
        self._notify(ctxt, volume, notifications.PROGRESS)

    def _steerable(self, ctxt, volume, what, refuse):
        """Check that an operator may ``what`` the volume's migration now.

        Not while it is being aborted, nor once its copy is done.

        :param refuse: ``refuse(admin_metadata, record)``, why ``what`` is
            refused otherwise, or None.
        :returns: the volume's admin metadata and progress record.
        :raises InvalidVolume: it does not migrate here, or is refused.
        """
        self._migrating_here(volume, what)
        admin = self._admin_metadata(ctxt, volume)
        record = progress_record.decode(admin.get(progress_record.KEY))
        if admin.get(constants.ABORTING_KEY):
            why = _('it is being aborted')
        elif record.get('phase') in (progress_record.COMMITTING,
                                     progress_record.CLEANING_SOURCE):
            why = _('its copy is done and it is %s; it ends in success on '
                    'its own') % record['phase']
        else:
            why = refuse(admin, record)
        if why:
            raise cinder_exception.InvalidVolume(reason=_(
                'cannot %(what)s the migration of volume %(vol)s: '
                '%(why)s') % {'what': what, 'vol': volume.id, 'why': why})
        return admin, record

    def pause_migration(self, ctxt, volume):
        """Stop the volume's copy until :meth:`resume_migration`.

        The volume stays usable here, reads of what is not copied yet
        going to its source as before; restarts and the other services of
        a cluster leave it paused.

        :raises InvalidVolume: it does not migrate here, is paused already,
            commits, or its copy runs in the client that holds the
            volume's exclusive lock, where librbd cannot stop it.
        """
        def refuse(admin, record):
            if admin.get(constants.PAUSED_KEY):
                return _('its migration is paused already')
            if record.get('copy_in'):
                return _('its copy runs in %s, the client that holds the '
                         'volume\'s exclusive lock (its hypervisor), and '
                         'librbd cannot stop it there; it ends on its own, '
                         'or once that client closes the volume') % (
                             record['copy_in'].split()[0])

        _admin, record = self._steerable(ctxt, volume, _('pause'), refuse)
        # first: nothing starts the copy again once it is set
        self.db.volume_admin_metadata_update(
            ctxt.elevated(), volume.id,
            {constants.PAUSED_KEY: str(int(time.time()))}, False)
        try:
            self._stop_completion(volume, _PAUSE_TIMEOUT)
        except exception.MigrationEngineError:
            raise cinder_exception.InvalidVolume(reason=_(
                'the migration of volume %(vol)s is paused, but its copy '
                'did not stop within %(n)d s (a cluster that does not '
                'answer holds it); it stops at its next step') % {
                    'vol': volume.id, 'n': _PAUSE_TIMEOUT})
        if hasattr(self.driver, 'stop_copy'):
            self.driver.stop_copy(volume)
        copied, total = record.get('copied'), record.get('total')
        # as the other progress texts: not translated
        text = 'paused by an operator'
        if total:
            text += ' at %.1f%% (%d of %d MiB)' % (
                100.0 * (copied or 0) / total, (copied or 0) // units.Mi,
                total // units.Mi)
        self._write_record(ctxt, volume, text, phase=progress_record.PAUSED,
                           rate=0, copy_in=None)
        LOG.info('The migration of volume %s is paused.', volume.id,
                 resource=volume)

    def resume_migration(self, ctxt, volume):
        """Start the copy of a paused migration again.

        :raises InvalidVolume: it does not migrate here or is not paused.
        """
        self._steerable(ctxt, volume, _('resume'), lambda admin, _record: (
            None if admin.get(constants.PAUSED_KEY)
            else _('it is not paused')))
        self._write_record(ctxt, volume, 'resumed by an operator',
                           phase=progress_record.COPYING)
        self.db.volume_admin_metadata_delete(ctxt.elevated(), volume.id,
                                             constants.PAUSED_KEY)
        LOG.info('The migration of volume %s is resumed.', volume.id,
                 resource=volume)
        self.complete_migration(ctxt, volume)

    def set_migration_cap(self, ctxt, volume, max_bytes_per_sec):
        """Set the cap of the volume's migration: an operator's.

        It overrides the volume metadata's
        (:data:`~cinder_asyncmig.volume.throttle.RATE_KEY`) and holds for
        the rest of the migration, retries and restarts included: the
        running copy takes it at its next progress record
        (``[asyncmig] progress_interval``).

        :param max_bytes_per_sec: bytes per second, 0 for no cap of the
            migration's own (the backend's still holds); None drops it.
        :raises InvalidVolume: the volume does not migrate to this host.
        """
        self._migrating_here(volume, _('set its cap'))
        if max_bytes_per_sec is None:
            self.db.volume_admin_metadata_delete(
                ctxt.elevated(), volume.id, throttle.ADMIN_RATE_KEY)
        else:
            self.db.volume_admin_metadata_update(
                ctxt.elevated(), volume.id,
                {throttle.ADMIN_RATE_KEY: str(max_bytes_per_sec)}, False)
        LOG.info('The migration of volume %(vol)s is capped at %(cap)s by '
                 'an operator.', {'vol': volume.id, 'cap': (
                     'the volume metadata\'s cap' if max_bytes_per_sec is None
                     else '%d bytes/s' % max_bytes_per_sec
                     if max_bytes_per_sec else 'nothing of its own')},
                 resource=volume)

    def abort_migration(self, ctxt, volume, force=False):
        """Roll the volume's migration back; it goes back to its source.

        Checks what it can at once, then rolls back on the manager's pool,
        as librbd may take a while to copy a linked migration's writes
        back to its source. Meanwhile the phase is ``aborting``; then the
        volume is on its source host, ``migration_status`` is ``error``
        and a user message says it was aborted. A restart of this service
        before the end finishes the abort.

        :param force: abort an import-only migration, discarding the
            writes made here since it began (a linked one loses nothing).
        :raises InvalidVolume: it does not migrate here, is being aborted
            already, commits, is attached, or is import-only and not
            ``force``.
        """
        def refuse(_admin, _record):
            if volume.volume_attachment:
                return _('it is attached, and librbd rolls a migration back '
                         'only once no client has the volume open; detach '
                         'it first')
            if hasattr(self.driver, 'check_abort_migration_target'):
                volume_utils.require_driver_initialized(self.driver)
                try:
                    self.driver.check_abort_migration_target(ctxt, volume,
                                                             force=force)
                except exception.MigrationAbortRefused as exc:
                    return exc.kwargs['reason']

        self._steerable(ctxt, volume, _('abort'), refuse)
        # first: nothing starts the copy again once it is set
        self.db.volume_admin_metadata_update(
            ctxt.elevated(), volume.id,
            {constants.ABORTING_KEY: 'force' if force else 'safe'}, False)
        self._write_record(ctxt, volume, 'aborting',
                           phase=progress_record.ABORTING, rate=0)
        LOG.info('Aborting the migration of volume %(vol)s%(force)s.',
                 {'vol': volume.id,
                  'force': ' with force' if force else ''}, resource=volume)
        self._add_to_threadpool(self._abort, ctxt, volume)

    def _abort(self, ctxt, volume):
        """Finish an operator's abort (on the manager's pool).

        Tried again while it fails on an error that can heal, as a copy
        is; a client that opened the volume meanwhile ends it, and the
        migration goes on.
        """
        with self._completing_lock:
            if volume.id in self._aborting:
                return
            self._aborting.add(volume.id)
        try:
            try:
                self._stop_completion(volume, _STOP_TIMEOUT)
            except exception.MigrationEngineError as exc:
                # it stops at its next step; the lock waits for it
                LOG.warning('Volume %(vol)s: %(err)s; the abort waits for '
                            'it.', {'vol': volume.id, 'err': exc},
                            resource=volume)
            self._abort_until_done(ctxt, volume)
        finally:
            with self._completing_lock:
                self._aborting.discard(volume.id)

    def _abort_until_done(self, ctxt, volume):
        group = CONF[opts.GROUP]
        attempt = 0
        while True:
            try:
                return self._roll_back_to_source(ctxt, volume)
            except exception.MigrationConflict as exc:
                self._abort_refused(ctxt, volume, exc)
                return
            except Exception as exc:
                if not _can_heal(exc):
                    # as a copy's: error, and a restart of this service
                    # finishes the abort
                    self._fail(ctxt, volume, exc)
                    return
                attempt += 1
                delay = retry_delay(attempt, group.retry_interval,
                                    group.retry_max_interval)
                LOG.warning('The abort of the migration of volume %(vol)s '
                            'failed (attempt %(n)d): %(err)s; retrying in '
                            '%(delay)d s.', {'vol': volume.id, 'n': attempt,
                                             'err': exc, 'delay': delay},
                            resource=volume)
                time.sleep(delay)

    @coordination.synchronized(LOCK)
    def _roll_back_to_source(self, ctxt, volume):
        volume.refresh()
        admin = self._admin_metadata(ctxt, volume)
        mode = admin.get(constants.ABORTING_KEY)
        if volume.migration_status != constants.ATTACHABLE or not mode:
            LOG.info('Volume %(vol)s no longer migrates (its '
                     'migration_status is %(status)s): nothing to abort.',
                     {'vol': volume.id, 'status': volume.migration_status},
                     resource=volume)
            self._clear_marker(ctxt, volume, constants.ABORTING_KEY)
            return
        source_host = admin[constants.SOURCE_KEY]
        force = mode == 'force'
        volume_utils.require_driver_initialized(self.driver)
        if self.driver.migration_committed(ctxt, volume):
            # its copy committed before it stopped: too late, and its
            # completion ends it
            raise exception.MigrationConflict(
                image=volume.name, reason=_('its copy committed before the '
                                            'abort could stop it'))
        self._write_record(ctxt, volume, 'aborting',
                           phase=progress_record.ABORTING, rate=0,
                           copy_in=None)
        # stops the copy worker and what serves the source here
        self.driver.abort_migration_target(ctxt, volume, force=force)
        service = self._get_service(source_host)
        if admin.get(constants.NEW_TYPE_KEY):
            self._undo_retype_quota(ctxt, volume,
                                    admin[constants.NEW_TYPE_KEY])
        end = self._payload(ctxt, volume, migration_status='error',
                            result='aborted')
        self._forget_progress(ctxt, volume)
        volume.update({'host': source_host,
                       'cluster_name': service.cluster_name,
                       'availability_zone': service.availability_zone,
                       'service_uuid': service.uuid,
                       'migration_status': 'error'})
        volume.save()
        self._clear_marker(ctxt, volume, constants.SOURCE_KEY)
        self._tell_user(ctxt, volume, None, detail=(
            messages.ABORTED_DISCARDING if force else messages.ABORTED))
        self._notify(ctxt, volume, notifications.END, end)
        LOG.info('The migration of volume %(vol)s is aborted; the volume '
                 'is back on %(src)s.', {'vol': volume.id,
                                         'src': source_host},
                 resource=volume)

    def _undo_retype_quota(self, ctxt, volume, new_type_id):
        """Count the volume under its own type again, not the new one.

        A retype moves the volume's usage of the per-type quotas to the
        new type as soon as the target takes it over; an aborted one never
        gives it that type.
        """
        try:
            reservations = [quota_utils.get_volume_type_reservation(
                ctxt, volume, type_id, reserve_vol_type_only=True,
                negative=negative) for type_id, negative in (
                    (volume.volume_type_id, False), (new_type_id, True))]
        except cinder_exception.OverQuota as exc:
            LOG.warning('Volume %(vol)s: its per-type quota usage stays '
                        'with the type its aborted retype would have given '
                        'it (%(err)s); correct it with "cinder '
                        'quota-update" if needed.',
                        {'vol': volume.id, 'err': exc}, resource=volume)
            reservations = []
        # at most once: an abort tried again finds no new type
        self._clear_marker(ctxt, volume, constants.NEW_TYPE_KEY)
        for reservation in reservations:
            quota.QUOTAS.commit(ctxt, reservation,
                                project_id=volume.project_id)

    def _abort_refused(self, ctxt, volume, exc):
        LOG.warning('The abort of the migration of volume %(vol)s was '
                    'refused: %(err)s. The migration goes on.',
                    {'vol': volume.id, 'err': exc}, resource=volume)
        self._tell_user(ctxt, volume, exc, messages.ABORT_REFUSED)
        self._clear_marker(ctxt, volume, constants.ABORTING_KEY)
        paused = self._admin_metadata(ctxt, volume).get(constants.PAUSED_KEY)
        self._write_record(ctxt, volume, 'abort refused',
                           phase=(progress_record.PAUSED if paused
                                  else progress_record.COPYING))
        self.complete_migration(ctxt, volume)

    def _recorder(self, ctxt, volume, stop):
        on_cap = None
        if hasattr(self.driver, 'set_copy_rate'):
            on_cap = functools.partial(self.driver.set_copy_rate, volume)
        owner = None
        if self.cluster:
            owner = functools.partial(self._owns, ctxt.elevated(), volume.id)
        notify = functools.partial(self._notify, ctxt, volume,
                                   notifications.PROGRESS)
        return _ProgressRecorder(self.db, ctxt.elevated(), volume.id,
                                 CONF[opts.GROUP].progress_interval, on_cap,
                                 stop, owner, notify)

    def _owns(self, ctxt, volume_id):
        """Whether the volume's host is still this service.

        The service whose completion holds the volume's lock makes it its
        host (:meth:`_copy`). A lock can lapse under a holder that lives
        (a coordination backend it lost for longer than the lock's
        timeout); a peer then takes the migration over, and this tells
        the old holder to stop before it writes or commits anything.

        :raises _Deleted: the volume is being deleted, or an admin reset
                          its migration status: a peer that took the
                          delete waits for this completion's lock to roll
                          the migration back.
        """
        volume = self.db.volume_get(ctxt, volume_id)
        if (volume.status == 'deleting' or
                volume.migration_status != constants.ATTACHABLE):
            raise _Deleted()
        return volume_utils.hosts_are_equivalent(volume.host, self.host)

    def _queue(self, ctxt, volume, completion):
        """Put the completion in line for a copy slot."""
        self.copy_slots.request(
            volume.id,
            functools.partial(self._add_to_threadpool, self._attempt, ctxt,
                              volume, completion),
            completion.recorder.queued)
        # a stop asked meanwhile found nothing in line to take out
        if completion.stop.is_set() and self.copy_slots.leave(volume.id):
            self._ended(volume, completion)

    def _attempt(self, ctxt, volume, completion):
        """One copy and commit, holding a copy slot (on the manager's pool).

        It holds the volume's lock in Cinder's coordination from start to
        end, the wait before a retry included: the lock tells the other
        services of a cluster that a live one completes the volume
        (:meth:`_adopt_orphans`). A lock held already means that another
        completion runs, and this one ends. Then the migration ends, or
        after a wait it is in line again.
        """
        again = False
        try:
            lock = self._own(volume)
            if lock is None:
                LOG.info('Volume %s is being completed by another volume '
                         'service of the cluster, or by another completion '
                         'here; not by this one.', volume.id,
                         resource=volume)
            try:
                try:
                    final = None if lock is None else self._until_db_answers(
                        self._copy, ctxt, volume, completion)
                finally:
                    self.copy_slots.release(volume.id)
                if final is _RETRY:
                    if completion.stop.wait(completion.delay):
                        raise _Stopped()
                    again = not self._no_longer_attachable(volume)
                elif final:
                    self._until_db_answers(self._finish, ctxt, volume,
                                           final.get('source_left'))
            finally:
                self._disown(volume, lock)
        except _Deleted:
            LOG.info('Volume %s is being deleted by another volume service '
                     'of the cluster: its background copy stops here.',
                     volume.id, resource=volume)
            self.driver.stop_copy(volume)
        except _Stopped:
            LOG.info('The background copy of volume %s stopped, as asked.',
                     volume.id, resource=volume)
        except _Lost:
            LOG.warning('Volume %s was taken over by another volume service '
                        'of the cluster while its copy ran here (this '
                        'service lost Cinder\'s coordination backend for '
                        'longer than its locks last); it stops here.',
                        volume.id, resource=volume)
        except Exception as exc:
            self._fail(ctxt, volume, exc)
        finally:
            if again:
                self._queue(ctxt, volume, completion)
            else:
                self._ended(volume, completion)

    def _own(self, volume):
        """Take the volume's lock if nobody holds it; None otherwise."""
        lock = coordination.COORDINATOR.get_lock(LOCK.format(volume=volume))
        try:
            # not coordination.synchronized: it runs the function whether
            # or not a non-blocking acquire succeeded
            return lock if lock.acquire(blocking=False) else None
        except tooz.ToozError as exc:
            LOG.warning('Volume %(vol)s: Cinder\'s coordination backend '
                        'does not answer (%(err)s); its copy is tried again '
                        'once it does.', {'vol': volume.id, 'err': exc},
                        resource=volume)
            return None

    @staticmethod
    def _disown(volume, lock):
        if lock is None:
            return
        try:
            # False, and nothing done, when the lock lapsed and is another's
            lock.release()
        except tooz.ToozError as exc:
            LOG.warning('Volume %(vol)s: its lock could not be released '
                        '(%(err)s); it lapses on its own.',
                        {'vol': volume.id, 'err': exc}, resource=volume)

    def _copy(self, ctxt, volume, completion):
        """One attempt at the copy and commit.

        :returns: the driver's final progress; ``_RETRY`` after an error
                  that can heal; None when the migration does not go on.
        :raises _Stopped: the completion was asked to stop.
        """
        if completion.stop.is_set():
            raise _Stopped()
        if self._no_longer_attachable(volume):
            return None
        # in a cluster, the volume's host is the service completing it
        self._set_resource_host(volume)
        try:
            return self._run_copy(ctxt, volume, completion)
        except exception.MigrationLost as exc:
            LOG.exception('The migration of volume %s cannot be '
                          'completed.', volume.id, resource=volume)
            self._tell_user(ctxt, volume, exc)
            self._notify(ctxt, volume, notifications.ERROR,
                         last_error=type(exc).__name__,
                         migration_status='error')
            volume.refresh()
            volume.migration_status = 'error'
            volume.save()
            return None
        except Exception as exc:
            if not _can_heal(exc):
                raise
            completion.attempt += 1
            group = CONF[opts.GROUP]
            completion.delay = retry_delay(completion.attempt,
                                           group.retry_interval,
                                           group.retry_max_interval)
            LOG.warning('Background copy or commit of volume %(vol)s '
                        'failed (attempt %(n)d): %(err)s. Its data is '
                        'safe and it stays usable here; retrying in '
                        '%(delay)d s.',
                        {'vol': volume.id, 'n': completion.attempt,
                         'err': exc, 'delay': completion.delay},
                        resource=volume)
            completion.recorder.retrying(completion.attempt,
                                         completion.delay, exc)
            return _RETRY

    def _run_copy(self, ctxt, volume, completion):
        volume_utils.require_driver_initialized(self.driver)
        return self.driver.complete_migration_target(
            ctxt, volume, progress_callback=completion.recorder)

    def _fail(self, ctxt, volume, exc):
        """End a completion on an error no retry gets past (a defect).

        The volume stays usable here, its data in the migration librbd
        keeps; ``init_host`` resumes it once the service restarts.
        """
        LOG.error('The background copy of volume %(vol)s stopped on an '
                  'unexpected error and is not retried. The volume stays '
                  'usable here and its data is safe; its migration_status '
                  'is "error", and restarting this volume service resumes '
                  'the copy.', {'vol': volume.id}, exc_info=exc,
                  resource=volume)
        try:
            self._tell_user(ctxt, volume, exc, messages.COPY_FAILED)
            self._notify(ctxt, volume, notifications.ERROR,
                         last_error=type(exc).__name__,
                         migration_status='error')
            self.db.volume_admin_metadata_update(
                ctxt.elevated(), volume.id,
                {constants.FAILED_KEY: type(exc).__name__}, False)
            volume.refresh()
            volume.migration_status = 'error'
            volume.save()
        except Exception:
            LOG.exception('Volume %s: its state could not be recorded.',
                          volume.id, resource=volume)

    def _ended(self, volume, completion):
        with self._completing_lock:
            if self._completing.get(volume.id) is completion:
                del self._completing[volume.id]
        completion.ended.set()

    def _stop_completion(self, volume, timeout):
        """Stop the completion of ``volume`` here and wait until it has.

        Its copy worker may still run: whoever asked stops it, and no
        completion starts another meanwhile.

        :raises MigrationEngineError: it did not stop within ``timeout``.
        """
        with self._completing_lock:
            completion = self._completing.get(volume.id)
        if completion is None:
            return
        completion.stop.set()
        if self.copy_slots.leave(volume.id):
            # it was in line: nothing runs for it
            self._ended(volume, completion)
        if not completion.ended.wait(timeout):
            raise exception.MigrationEngineError(
                image=volume.name, step='stop',
                reason=_('its background copy did not stop within %d s') %
                timeout)

    @staticmethod
    def _until_db_answers(func, ctxt, volume, *args):
        """Call ``func`` again while it fails on a lost database.

        Every step of a completion can run again, so a database restart
        or a lost connection only delays it ([asyncmig] retry_interval
        doubling up to retry_max_interval); the volume stays
        migrating_attachable meanwhile, with nothing else to resume it.
        """
        group = CONF[opts.GROUP]
        attempt = 0
        while True:
            try:
                return func(ctxt, volume, *args)
            except db_exc.DBError as exc:
                attempt += 1
                delay = retry_delay(attempt, group.retry_interval,
                                    group.retry_max_interval)
                LOG.warning('The migration of volume %(vol)s lost the '
                            'database (%(err)s); it carries on in %(delay)d '
                            's.', {'vol': volume.id, 'err': exc,
                                   'delay': delay}, resource=volume)
                time.sleep(delay)

    @staticmethod
    def _no_longer_attachable(volume):
        try:
            volume.refresh()
        except db_exc.DBError as exc:
            # nothing says it changed: the copy goes on, and the next
            # check asks again
            LOG.warning('Volume %(vol)s: cannot read its state (%(err)s); '
                        'its background copy goes on.',
                        {'vol': volume.id, 'err': exc}, resource=volume)
            return False
        if volume.migration_status == constants.ATTACHABLE:
            return False
        LOG.info('Volume %(vol)s is no longer %(state)s; its background '
                 'copy does not go on.',
                 {'vol': volume.id, 'state': constants.ATTACHABLE},
                 resource=volume)
        return True

    def _finish(self, ctxt, volume, source_left):
        volume.refresh()
        admin = self._admin_metadata(ctxt, volume)
        source_host = admin.get(constants.SOURCE_KEY)
        to_remove = bool(source_host) and source_left is not False
        cleaned = (not to_remove or
                   self._clean_up_source(ctxt, volume, source_host))
        updates = {'migration_status': ('success' if cleaned
                                        else constants.SOURCE_LEFT)}
        if admin.get(constants.NEW_TYPE_KEY):
            # a retype's: the type comes with the end of the migration
            updates['volume_type_id'] = admin[constants.NEW_TYPE_KEY]
        if cleaned and to_remove:
            # the source backend's (e.g. an NFS share); kept until the
            # source is removed, as its driver finds the source with it
            updates['provider_location'] = None
        if volume.status == 'in-use' and not volume.volume_attachment:
            updates['status'] = 'available'
        # of the migration that ends, with its final state
        end = self._payload(
            ctxt, volume, admin, migration_status=updates['migration_status'],
            result='success' if cleaned else 'source-left')
        # gone before the final state shows, so nobody sees both
        self._forget_progress(ctxt, volume)
        volume.update(updates)
        volume.save()
        self._notify(ctxt, volume, notifications.END, end)
        if cleaned:
            self._clear_marker(ctxt, volume, constants.SOURCE_KEY)
            LOG.info('Migration of volume %s completed.', volume.id,
                     resource=volume)

    def _forget_progress(self, ctxt, volume):
        """Remove the migration's progress, record and operators' keys."""
        self.db.volume_metadata_delete(ctxt.elevated(), volume.id,
                                       constants.PROGRESS_KEY)
        for key in (progress_record.KEY, constants.NEW_TYPE_KEY) + (
                _STEERING_KEYS):
            self.db.volume_admin_metadata_delete(ctxt.elevated(), volume.id,
                                                 key)

    def _remove_source(self, ctxt, volume, source_host):
        """Have the source backend remove the source."""
        if not self.asyncmig_rpcapi.can_clean_up_source():
            raise cinder_exception.ServiceTooOld(
                _('the async migration RPC API is capped below 1.1'))
        self.asyncmig_rpcapi.cleanup_migration_source(ctxt, volume,
                                                      source_host)

    def _clean_up_source(self, ctxt, volume, source_host):
        """Have the source backend remove the source; True when done."""
        try:
            self._remove_source(ctxt, volume, source_host)
            return True
        except Exception as exc:
            LOG.error('Volume %(vol)s is migrated and its data is safe, '
                      'but its source on %(src)s could not be removed: '
                      '%(err)s. Its migration_status is "%(state)s"; '
                      'restarting this volume service retries the '
                      'clean-up.', {'vol': volume.id, 'src': source_host,
                                    'err': exc,
                                    'state': constants.SOURCE_LEFT},
                      resource=volume)
            return False

    def _retry_source_cleanup(self, ctxt, volume):
        source_host = self._admin_metadata(ctxt, volume).get(
            constants.SOURCE_KEY)
        if self._clean_up_source(ctxt, volume, source_host):
            volume.refresh()
            volume.update({'migration_status': 'success',
                           'provider_location': None})
            volume.save()
            self._notify(ctxt, volume, notifications.END,
                         phase=progress_record.CLEANING_SOURCE,
                         result='success')
            self._clear_marker(ctxt, volume, constants.SOURCE_KEY)
            LOG.info('The source of volume %(vol)s on %(src)s is removed.',
                     {'vol': volume.id, 'src': source_host},
                     resource=volume)

    # -- source side: clean-up after the commit -------------------------------

    def clean_up_source(self, ctxt, volume, src_host):
        """Remove the source of a volume migrated away (on the source).

        The volume's database record already belongs to the target; the
        driver removes the source backend's copy of it. A source already
        gone (librbd removes a linked source at commit) is fine.

        :param volume: the migrated volume.
        :param src_host: this backend's ``host@backend#pool`` as the
                         volume had it before the migration.
        :raises InvalidVolume: the volume lives on this backend again.
        """
        volume.refresh()
        if (volume_utils.extract_host(volume.host) ==
                volume_utils.extract_host(src_host)):
            raise cinder_exception.InvalidVolume(
                reason=_('volume %(vol)s is on %(host)s again; the source '
                         'of its earlier migration is not removed') % {
                    'vol': volume.id, 'host': src_host})
        volume_utils.require_driver_initialized(self.driver)
        source = objects.Volume.get_by_id(ctxt, volume.id)
        # the driver's view of the old volume; never saved
        source.host = src_host
        source.obj_reset_changes(['host'])
        self.driver.delete_volume(source)
        LOG.info('Removed the source of migrated volume %(vol)s from '
                 '%(host)s.', {'vol': volume.id, 'host': src_host},
                 resource=volume)

    # -- delete ------------------------------------------------------------

    def delete_volume(self, context, volume, unmanage_only=False,
                      cascade=False):
        """Delete a volume, and the source of its migration to here.

        A volume still migrating here, or migrated with its source not
        removed yet, has data in two places. First its completion stops,
        its migration is rolled back (an import-only one is discarded: the
        volume goes anyway), and the source's host removes the source;
        then Cinder deletes the volume here. When that fails the volume
        ends in ``error_deleting`` and deleting it again retries.
        """
        admin = {}
        if not unmanage_only:
            admin = self._admin_metadata(context, volume)
        source_host = admin.get(constants.SOURCE_KEY)
        if source_host:
            try:
                self._drop_migration(context, volume, source_host)
            except Exception:
                with excutils.save_and_reraise_exception():
                    LOG.exception('Volume %(vol)s is not deleted: the '
                                  'source of its migration on %(src)s could '
                                  'not be removed. Deleting it again '
                                  'retries.', {'vol': volume.id,
                                               'src': source_host},
                                  resource=volume)
                    volume.update({'status': 'error_deleting'})
                    volume.save()
        if admin.get(constants.NEW_TYPE_KEY):
            # a retype's: its quota usage is the new type's since the
            # hand-over, and Cinder releases the volume's type's
            volume.volume_type_id = admin[constants.NEW_TYPE_KEY]
            volume.save()
        return super(AsyncMigrationVolumeManager, self).delete_volume(
            context, volume, unmanage_only=unmanage_only, cascade=cascade)

    def _drop_migration(self, ctxt, volume, source_host):
        volume_utils.require_driver_initialized(self.driver)
        # first, outside the lock its copy attempt holds
        self._stop_completion(volume, _STOP_TIMEOUT)
        self._roll_back(ctxt, volume, source_host)

    @coordination.synchronized(LOCK)
    def _roll_back(self, ctxt, volume, source_host):
        if hasattr(self.driver, 'abort_migration_target'):
            # stops the copy worker; a linked source then holds the data
            if self.driver.abort_migration_target(ctxt, volume, force=True):
                LOG.info('The migration of volume %s, being deleted, is '
                         'rolled back.', volume.id, resource=volume)
        self._remove_source(ctxt, volume, source_host)
        self._clear_marker(ctxt, volume, constants.SOURCE_KEY)

    # -- restarts ------------------------------------------------------------

    def init_host(self, added_to_cluster=None, **kwargs):
        """Start as Cinder does, then resume interrupted migrations."""
        super(AsyncMigrationVolumeManager, self).init_host(
            added_to_cluster=added_to_cluster, **kwargs)
        ctxt = cinder_context.get_admin_context()
        resumed = set()
        for volume in objects.VolumeList.get_all_by_host(ctxt, self.host):
            if (volume.migration_status == 'error' and
                    volume.admin_metadata.get(constants.FAILED_KEY)):
                self._clear_failure(ctxt, volume)
            if volume.migration_status == constants.ATTACHABLE:
                if not (volume.admin_metadata.get(constants.PAUSED_KEY) or
                        volume.admin_metadata.get(constants.ABORTING_KEY)):
                    LOG.info('Resuming the background copy of volume %s.',
                             volume.id, resource=volume)
                # paused too: hypervisors read through the source
                self._ensure_migration_source(ctxt, volume)
                self.complete_migration(ctxt, volume)
                resumed.add(volume.name)
            elif (volume.migration_status == 'migrating' and
                    volume.admin_metadata.get(constants.TARGET_KEY)):
                LOG.info('Resuming the hand-over of volume %(vol)s to '
                         '%(host)s.',
                         {'vol': volume.id,
                          'host': volume.admin_metadata[constants.TARGET_KEY]},
                         resource=volume)
                self._add_to_threadpool(self._resume_hand_over, ctxt,
                                        volume)
            elif (volume.migration_status == constants.SOURCE_LEFT and
                    self._admin_metadata(ctxt, volume).get(
                        constants.SOURCE_KEY)):
                LOG.info('Retrying the removal of the source of migrated '
                         'volume %s.', volume.id, resource=volume)
                self._add_to_threadpool(self._retry_source_cleanup, ctxt,
                                        volume)
        if hasattr(self.driver, 'forget_copies'):
            try:
                # those another service of the cluster took over and ended
                # while this one was down
                self.driver.forget_copies(resumed)
            except Exception:
                LOG.exception('Could not remove what the copy workers of '
                              'migrations that ended elsewhere left here.')

    @periodic_task.periodic_task(spacing=_ADOPT_SPACING)
    def _adopt_orphans(self, ctxt):
        """Complete the migrations here that no live completion holds.

        A completion holds its volume's lock from start to end (see
        :meth:`_attempt`); the lock of a service that died lapses once
        Cinder's coordination backend stops hearing from it (tooz's
        ``lock_timeout``). In a cluster, that is how a peer of a volume
        service that died, and stays down, takes its migrations over: the
        copy resumes here from the state librbd keeps, after the dead
        service's copy worker is blocklisted. Alone, a service picks up
        what a completion left when the coordination backend did not
        answer. Within a period of the manager's periodic tasks.
        """
        if not self.driver.initialized:
            return
        filters = dict(self._get_cluster_or_host_filters(),
                       migration_status=constants.ATTACHABLE)
        for volume in objects.VolumeList.get_all(ctxt, filters=filters):
            if (volume.status in ('deleting', 'error_deleting') or
                    # an operator's: nothing completes it meanwhile
                    volume.admin_metadata.get(constants.PAUSED_KEY) or
                    # just handed over: its completion is on its way here
                    not timeutils.is_older_than(volume.updated_at,
                                                _ADOPT_SPACING)):
                continue
            with self._completing_lock:
                if volume.id in self._completing:
                    continue
            lock = self._own(volume)
            if lock is None:
                continue
            self._disown(volume, lock)
            if not self._can_take_over(ctxt, volume):
                continue
            LOG.warning('Volume %(vol)s is %(state)s and no volume service '
                        'completes its migration (its host was %(host)s); '
                        'completing it here.',
                        {'vol': volume.id, 'state': constants.ATTACHABLE,
                         'host': volume.host}, resource=volume)
            self._add_to_threadpool(self._adopt, ctxt, volume)

    def _can_take_over(self, ctxt, volume):
        """Whether this service can resume a copy another host began."""
        if volume_utils.hosts_are_equivalent(volume.host, self.host):
            return True
        if not hasattr(self.driver, 'host_bound_reason'):
            return True
        try:
            reason = self.driver.host_bound_reason(ctxt, volume)
        except Exception as exc:
            LOG.warning('Volume %(vol)s: cannot tell whether its copy can '
                        'resume here (%(err)s).',
                        {'vol': volume.id, 'err': exc}, resource=volume)
            return False
        if reason is None:
            return True
        if volume.id not in self._left_to_host:
            self._left_to_host.add(volume.id)
            LOG.warning('Volume %(vol)s is %(state)s and no volume service '
                        'completes its migration, but %(reason)s, '
                        '%(host)s: its copy resumes once the volume service '
                        'there runs again. Meanwhile the volume stays '
                        'usable, and reads of what is not copied yet fail.',
                        {'vol': volume.id, 'state': constants.ATTACHABLE,
                         'reason': reason, 'host': volume.host},
                        resource=volume)
        return False

    def _adopt(self, ctxt, volume):
        self._ensure_migration_source(ctxt, volume)
        self.complete_migration(ctxt, volume)

    def _ensure_migration_source(self, ctxt, volume):
        # at once, not in the background: hypervisors may read through
        # the source before the copy resumes
        if not hasattr(self.driver, 'ensure_migration_source'):
            return
        try:
            volume_utils.require_driver_initialized(self.driver)
            self.driver.ensure_migration_source(ctxt, volume)
        except Exception:
            LOG.exception('Could not serve the source of volume %s again; '
                          'its background copy retries.', volume.id,
                          resource=volume)

    def _clear_failure(self, ctxt, volume):
        """Make a copy stopped by an unexpected error resumable again."""
        LOG.info('Volume %(vol)s: its background copy stopped on %(err)s '
                 'before this restart; trying again.',
                 {'vol': volume.id,
                  'err': volume.admin_metadata[constants.FAILED_KEY]},
                 resource=volume)
        volume.migration_status = constants.ATTACHABLE
        volume.save()
        self._clear_marker(ctxt, volume, constants.FAILED_KEY)

    def _resume_hand_over(self, ctxt, volume):
        target = volume.admin_metadata[constants.TARGET_KEY]
        status_update = {}
        if volume.status in ('retyping', 'maintenance'):
            status_update = {'status': volume.previous_status}
        try:
            service = self._get_service(target)
            self._hand_over(ctxt, volume, {
                'host': target, 'cluster_name': service.cluster_name,
                'capabilities': {'async_migration_target': True}},
                status_update,
                volume.admin_metadata.get(constants.NEW_TYPE_KEY))
        except Exception:
            LOG.exception('Could not resume the hand-over of volume %s.',
                          volume.id, resource=volume)

    # -- what users see during a migration ------------------------------------

    def attachment_update(self, context, vref, connector, attachment_id):
        """Refuse to attach while the volume's data is being moved.

        The API has already reserved the attachment: it is removed again
        and the volume given back its status, so a refused attach leaves
        the volume as it was.
        """
        if vref.migration_status == 'migrating':
            attachment = objects.VolumeAttachment.get_by_id(context,
                                                            attachment_id)
            attachment.destroy()
            vref.refresh()
            vref.status = 'in-use' if vref.volume_attachment else 'available'
            vref.save()
            raise cinder_exception.InvalidVolume(
                reason=_('volume %s is being migrated and cannot be '
                         'attached until its migration_status is '
                         'migrating_attachable or success') % vref.id)
        return super(AsyncMigrationVolumeManager, self).attachment_update(
            context, vref, connector, attachment_id)

    def attachment_delete(self, context, attachment_id, vref):
        """Detach; the last detach during a migration frees the volume.

        Cinder keeps a migrating volume ``in-use`` after its last detach,
        expecting the migration to set the status; an async migration
        leaves it usable all along, so it is made ``available`` here.
        """
        super(AsyncMigrationVolumeManager, self).attachment_delete(
            context, attachment_id, vref)
        vref.refresh()
        others = [a for a in vref.volume_attachment
                  if a.id != attachment_id]
        if vref.migration_status == constants.ATTACHABLE and not others and (
                vref.status == 'in-use'):
            vref.status = 'available'
            vref.save()
