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

"""RBD driver that can be the target of an asynchronous migration.

The target backend takes over the source volume as a *remote parent* with
librbd live migration: :meth:`AsyncMigrationRBDDriver.migrate_volume_target`
prepares the destination image in milliseconds, whatever the volume's
size, and from then on the volume is usable here while reads of blocks
not yet copied go to the source. :meth:`complete_migration_target` runs
the background copy and commits.

The plugin's record of a migration (source, phase, progress, copy worker)
lives in the destination image's metadata under ``asyncmig.migration``,
beside librbd's own migration header, so it survives any restart.
"""

import os
import socket
import time

from cinder import coordination
from cinder.i18n import _
from cinder.volume.drivers import rbd as cinder_rbd
from oslo_log import log as logging
from oslo_utils import timeutils

from cinder_asyncmig.engine import migration
from cinder_asyncmig.engine import state
from cinder_asyncmig.engine import worker as copy_worker
from cinder_asyncmig import exception
from cinder_asyncmig import opts
from cinder_asyncmig.sources import base as source_base
from cinder_asyncmig.sources import kinds as source_kinds
from cinder_asyncmig.sources import registry
from cinder_asyncmig.volume import constants
from cinder_asyncmig.volume import throttle

LOG = logging.getLogger(__name__)

NOT_MOVED = (False, False, None)
# consecutive engine states one completion may step through before it
# concludes something outside it keeps changing the migration
_MAX_COMPLETION_STEPS = 8
# seconds between two writes of a running copy's progress into the
# destination's metadata (and reads of its size): each write notifies every
# client of the image, the copying one included, which then refreshes
_RECORD_INTERVAL = 10.0


def _tell(callback, record):
    """Hand the progress of a migration's record to ``callback``."""
    if callback:
        callback(dict(record.get('progress', {}),
                      phase=record.get('phase'), kind=record.get('kind'),
                      copy_in=record.get('copy_in')))


class _RateMeter(object):
    """Bytes per second of the copy, smoothed over the last reads."""

    def __init__(self, smoothing=0.3):
        self._smoothing = smoothing
        self._last = None
        self.rate = 0.0

    def update(self, copied):
        now = time.monotonic()
        if self._last is not None:
            then, before = self._last
            if now > then and copied >= before:
                sample = (copied - before) / (now - then)
                self.rate = (self._smoothing * sample +
                             (1 - self._smoothing) * self.rate)
        self._last = (now, copied)
        return self.rate


class AsyncMigrationRBDDriver(cinder_rbd.RBDDriver):
    """Cinder's RBD driver, able to take over a volume being migrated here.

    Version history:

    .. code-block:: none

        1.0.0 - Linked live migration of RBD volumes in the same cluster
    """

    VERSION = '1.0.0'

    def __init__(self, *args, **kwargs):
        super(AsyncMigrationRBDDriver, self).__init__(*args, **kwargs)
        self.configuration.append_config_values(opts.target_opts)
        self.configuration.append_config_values(opts.exporter_opts)
        self.engine = migration.Engine(self.rbd)
        self._kinds = registry.load(self)

    # -- setup and stats -------------------------------------------------

    def check_for_setup_error(self):
        super(AsyncMigrationRBDDriver, self).check_for_setup_error()
        if self._source_kinds():
            self.engine.features.require('live_migration')
            os.makedirs(self._state_dir(), mode=0o700, exist_ok=True)

    def _update_volume_stats(self):
        super(AsyncMigrationRBDDriver, self)._update_volume_stats()
        kinds = self._source_kinds()
        self._stats['async_migration_target'] = bool(kinds)
        self._stats['async_migration_source_kinds'] = kinds
        # clients that start many (a drain) keep within it
        self._stats['async_migration_max_concurrent_copies'] = (
            self.configuration.safe_get(
                'async_migration_max_concurrent_copies') or 0)
        # what another service of a cluster can take over from one that
        # died ([DEFAULT] cluster): not a source served from its host
        self._stats['async_migration_failover_kinds'] = [
            k.name for k in self._kinds
            if k.name in kinds and not k.host_bound]

    @classmethod
    def clean_volume_file_locks(cls, volume_id):
        """Remove the volume's migration lock once the volume is gone.

        The manager takes it through Cinder's coordination; tooz's file
        backend leaves a file per lock.
        """
        super(AsyncMigrationRBDDriver, cls).clean_volume_file_locks(
            volume_id)
        coordination.synchronized_remove(volume_id + constants.LOCK_SUFFIX)

    def _source_kinds(self):
        return list(self.configuration.async_migration_source_kinds or [])

    def _state_dir(self):
        return self.configuration.async_migration_state_dir

    # -- blueprint: migrate_volume_target ----------------------------------

    def migrate_volume_target(self, context, volume, src_host):
        """Take the volume over from its source as a remote parent.

        Called on the target backend while the volume still belongs to
        its source host. The source kinds are asked best first
        (:mod:`cinder_asyncmig.sources.registry`); the first one enabled
        here that can take the source takes it over. Sources no kind can
        take are declined (not moved, every kind's reason logged) so that
        Cinder falls back to its generic migration; sources a kind can
        take but must refuse (missing, open by a client, already
        migrating) raise a clear error and leave the source as it was.

        :param context: the request context.
        :param volume: the volume object, still on its source host.
        :param src_host: the source backend as the scheduler knows it:
                         ``{'host': 'host@backend#pool', 'capabilities':
                         {...}}`` (the shape ``migrate_volume`` gets for
                         its destination).
        :returns: ``(moved, migration_async, model_update)``. ``moved``
                  False means "not handled here, use another way";
                  ``migration_async`` True means the volume is usable here
                  now and :meth:`complete_migration_target` must run.
        :raises MigrationSourceNotFound: the source image does not exist.
        :raises MigrationSourceRefused: the source is open by a client.
        :raises MigrationConflict: the source or destination is already
                                   part of another migration.
        """
        reason = self._decline_reason(volume)
        if reason:
            return self._decline(volume, reason)
        throttle.cap(volume, 0)  # refuses a malformed cap up front
        with source_base.Offer(context, volume, src_host, self) as offer:
            kind, reasons = registry.choose(self._kinds,
                                            self._source_kinds(), offer)
            if kind is None:
                return self._decline(volume, '; '.join(reasons) + '.')
            if reasons:
                LOG.info('Taking volume %(vol)s over with source kind '
                         '%(kind)s; the better kinds cannot: %(reasons)s.',
                         {'vol': volume.id, 'kind': kind.name,
                          'reasons': '; '.join(reasons)}, resource=volume)
            return kind.prepare(offer)

    def _decline(self, volume, reason):
        LOG.info('Not taking over volume %(vol)s asynchronously: '
                 '%(reason)s Cinder falls back to another migration.',
                 {'vol': volume.id, 'reason': reason}, resource=volume)
        return NOT_MOVED

    def _decline_reason(self, volume):
        if not self._source_kinds():
            return _('async_migration_source_kinds is empty on this '
                     'backend.')
        if volume.volume_type and (
                self._is_multiattach_type(volume.volume_type) or
                self._is_replicated_type(volume.volume_type)):
            return _('multiattach and replicated volume types are not '
                     'taken over asynchronously.')
        return None

    # -- the kind of a migration's source ------------------------------------

    def _kind_of(self, name, record):
        """The source kind the migration's record names.

        A record without a kind (not written yet, or cleared after the
        commit) is taken as linked, whose steps then find nothing to do.

        :raises MigrationLost: the record names a kind unknown here.
        """
        wanted = record.get('kind') or source_kinds.RBD_LINKED
        for kind in self._kinds:
            if kind.name == wanted:
                return kind
        raise exception.MigrationLost(
            image=name,
            reason=_('its record names the source kind %s, unknown to '
                     'this driver version') % wanted)

    def _holding(self, volume):
        """The kinds that keep state of the volume's source on this host.

        Known while librbd cannot open the destination, whose source may
        not be served yet.
        """
        return [kind for kind in self._kinds
                if kind.holds_local_state(volume)]

    def _stop_source(self, context, volume, kind, record):
        """Stop the recorded kind, and any kind still holding state here.

        :param record: the migration's record, read before the step that
                       ends the migration (an abort removes it).
        """
        for holding in [kind] + [k for k in self._holding(volume)
                                 if k is not kind]:
            holding.stop(context, volume, record)

    # -- blueprint: complete_migration_target -------------------------------

    def complete_migration_target(self, context, volume,
                                  progress_callback=None):
        """Copy the remaining data in the background and commit.

        Safe to call again after any crash, at any point: it reads the
        migration's state from librbd first, adopts a copy worker that is
        still running, blocklists one that died so the copy resumes at
        once, and treats an already committed migration as done.

        :param context: the request context.
        :param volume: the volume, already on this backend.
        :param progress_callback: called with the progress dict
                                  (``bytes_copied``, ``bytes_total``,
                                  ``percent``, ``rate_bytes_per_sec``,
                                  ``phase``) at every poll.
        :returns: the final progress dict; its ``source_left`` is False
                  when the source is known to be gone (a linked source is
                  removed by librbd's commit), True when the source's
                  backend must still remove it, None when unknown.
        :raises MigrationLost: the destination image is gone.
        :raises MigrationEngineError: the copy or commit failed; the
                                      migration is left as librbd has it
                                      and calling again resumes it.
        """
        name = volume.name
        # librbd opens the source with the destination image
        self._ensure_source(volume)
        record = None  # as last written by this completion
        with cinder_rbd.RADOSClient(self) as client:
            for _step in range(_MAX_COMPLETION_STEPS):
                status = self.engine.status(client.ioctx, name)
                if status is None:
                    raise exception.MigrationLost(
                        image=name,
                        reason=_('the destination image does not exist'))
                if status.state is state.MigrationState.NONE:
                    return self._finish(context, client, volume,
                                        progress_callback)
                if status.state.copy_pending:
                    record = self._run_copy(client, volume,
                                            progress_callback)
                elif status.state is state.MigrationState.EXECUTED:
                    record = self._record(client, name, phase='committing',
                                          callback=progress_callback,
                                          record=record)
                    self.engine.commit(client.ioctx, name)
                    LOG.info('Migration of volume %s committed; the source '
                             'image is removed.', volume.id, resource=volume)
                else:
                    raise exception.MigrationEngineError(
                        image=name, step='complete',
                        reason=_('librbd reports the migration as '
                                 '%(state)s %(desc)s') % {
                            'state': status.state.value,
                            'desc': status.description})
            raise exception.MigrationEngineError(
                image=name, step='complete',
                reason=_('the migration state kept changing under this '
                         'completion'))

    def _finish(self, context, client, volume, callback):
        size = self.engine.inspect(client.ioctx, volume.name).size
        record = self.engine.read_record(client.ioctx, volume.name)
        kind = self._kind_of(volume.name, record)
        # before its host deletes the source: nothing reads it now
        self._stop_source(context, volume, kind, record)
        final = dict(state.Progress(size, size).as_dict(), phase='success',
                     kind=record.get('kind'),
                     source_left=kind.source_left(client, record))
        self.engine.clear_record(client.ioctx, volume.name)
        copy_worker.remove_files(self._status_path(volume.name))
        if callback:
            callback(final)
        return final

    def _record(self, client, name, callback=None, record=None, **changes):
        """Write the record with ``changes``; returns the new record.

        :param record: the record as last written, when the caller has it
                       (one image open less); read from the image if None.
        """
        record = dict(self.engine.read_record(client.ioctx, name)
                      if record is None else record)
        record.update(changes)
        record['updated_at'] = timeutils.utcnow().isoformat()
        self.engine.write_record(client.ioctx, name, record)
        _tell(callback, record)
        return record

    def _ensure_source(self, volume):
        """Serve the source again if what served it here is gone."""
        for kind in self._holding(volume):
            kind.ensure_served(volume)

    def host_bound_reason(self, context, volume):
        """Why only the volume's own host can resume its copy, or None.

        The kinds whose source is served from the host that took it over
        (:attr:`SourceKind.host_bound`): another volume service of the
        cluster cannot serve it, nor point librbd elsewhere.

        :param volume: a volume being migrated to this backend.
        """
        with cinder_rbd.RADOSClient(self) as client:
            record = self.engine.read_record(client.ioctx, volume.name)
        kind = self._kind_of(volume.name, record)
        if not kind.host_bound:
            return None
        return _('its %(kind)s source is served from its host only') % {
            'kind': kind.name}

    def ensure_migration_source(self, context, volume):
        """Make the source of a migration here readable again.

        Called when the volume service starts, before anything else: an
        exported source is attached and served again, so that librbd
        clients (hypervisors included) can open the volume and read what
        is not copied yet.

        :param volume: a volume being migrated to this backend.
        """
        self._ensure_source(volume)

    def forget_copies(self, keep):
        """Remove what the copy workers of other migrations left here.

        A worker's status, cap and log are this host's. When another
        volume service of a cluster took a migration over from this one
        and ended it, nothing else removes them. A worker still running
        keeps its files.

        :param keep: names of the images whose migration goes on here.
        """
        state_dir = self._state_dir()
        prefix = '%s.' % self.configuration.rbd_pool
        try:
            entries = os.listdir(state_dir)
        except FileNotFoundError:
            return
        for entry in entries:
            if not (entry.startswith(prefix) and entry.endswith('.json')):
                continue
            name = entry[len(prefix):-len('.json')]
            status_path = os.path.join(state_dir, entry)
            if (name in keep or
                    copy_worker.ExecuteWorker.adopt(status_path, name)):
                continue
            LOG.info('Removing the files of the copy worker of %(img)s: its '
                     'migration does not go on here.', {'img': name})
            copy_worker.remove_files(status_path)

    def stop_copy(self, volume):
        """Stop the volume's copy worker on this host, remove its files.

        For a migration another volume service of the cluster ends: one
        that took the volume's delete rolls it back.
        """
        status_path = self._status_path(volume.name)
        worker = copy_worker.ExecuteWorker.adopt(status_path, volume.name)
        if worker is not None:
            worker.stop()
        copy_worker.remove_files(status_path)

    def _status_path(self, name):
        return os.path.join(self._state_dir(), '%s.%s.json' % (
            self.configuration.rbd_pool, name))

    def _start_worker(self, client, volume, record):
        name = volume.name
        status_path = self._status_path(name)
        worker = copy_worker.ExecuteWorker.adopt(status_path, name)
        if worker is not None:
            return worker
        self._release_dead_worker(client, name, record, status_path)
        os.makedirs(self._state_dir(), mode=0o700, exist_ok=True)
        cluster, conf, user, _secret = self._get_config_tuple()
        cap = throttle.cap(
            volume, self.configuration.async_migration_copy_max_bytes_per_sec)
        ops = self.configuration.async_migration_lock_holder_copy_ops
        if cap and ops:
            # for a hypervisor that runs the copy, where the cap cannot
            # hold; the record's removal removes it
            self.engine.set_copy_ops(client.ioctx, name, ops)
        return copy_worker.ExecuteWorker.start(
            name, self.configuration.rbd_pool, status_path, conf=conf,
            user=user, cluster=cluster, max_bytes_per_sec=cap)

    def set_copy_rate(self, volume, max_bytes_per_sec):
        """Change the cap of the volume's copy while it runs.

        The backend's cap (``async_migration_copy_max_bytes_per_sec``)
        still applies; the lower one holds. The copy worker takes the new
        cap within a second. Setting the same cap again changes nothing.

        :param max_bytes_per_sec: the migration's own cap, 0 for none.
        :returns: the cap that holds, in bytes per second (0: none).
        """
        rate = throttle.lowest(
            max_bytes_per_sec,
            self.configuration.async_migration_copy_max_bytes_per_sec)
        status_path = self._status_path(volume.name)
        if copy_worker.read_rate(status_path) == rate:
            return rate
        os.makedirs(self._state_dir(), mode=0o700, exist_ok=True)
        copy_worker.write_rate(status_path, rate)
        LOG.info('The copy of volume %(vol)s is capped at %(rate)s.',
                 {'vol': volume.id,
                  'rate': '%d bytes/s' % rate if rate else 'nothing'},
                 resource=volume)
        return rate

    def _release_dead_worker(self, client, name, record, status_path):
        """Blocklist a dead copy worker still watching the image.

        librbd otherwise waits for the dead client's watch to time out
        (about 30 s) before a new execute can take the exclusive lock. It
        is only safe when the worker is known dead or orphaned: on this
        host, its pid gone or reused; in a cluster (``[DEFAULT] cluster``),
        on another host too, as the manager completes a migration only
        while it holds the volume's lock in Cinder's coordination, which
        a cluster shares: the service that started that worker lost it.
        """
        dead = dict(record.get('worker') or {})
        dead.update(copy_worker.read_status(status_path))
        addr = dead.get('addr')
        if not addr:
            return
        if dead.get('host') != socket.gethostname() and not self.cluster_name:
            LOG.info('The previous copy worker of %(img)s ran on host '
                     '%(host)s; librbd waits for its watch to expire.',
                     {'img': name, 'host': dead.get('host')})
            return
        if copy_worker.ExecuteWorker.adopt(status_path, name):
            return
        if addr not in self.engine.watchers(client.ioctx, name):
            return
        LOG.warning('Blocklisting dead copy worker %(pid)s (%(addr)s) of '
                    '%(img)s so that the copy resumes at once.',
                    {'pid': dead.get('pid'), 'addr': addr, 'img': name})
        client.cluster.blocklist_add(
            addr, self.configuration.async_migration_blocklist_expiry)

    def _run_copy(self, client, volume, callback):
        name = volume.name
        cfg = self.configuration
        record = self.engine.read_record(client.ioctx, name)
        worker = self._start_worker(client, volume, record)
        restarts = 0
        meter = _RateMeter()
        last_done, last_change = -1, time.monotonic()
        # when the lock holder was last heard from, or asked again
        asked = last_change
        recorded_at = size = None
        # every execute counts from object 0 and first walks past what the
        # runs before it copied (in a moment, unless the cluster is stuck):
        # the copy's progress is the most any run has reached
        reached = (record.get('progress') or {}).get('bytes_copied', 0)
        holding = self._holding(volume)
        while True:
            report = worker.read()
            phase = report.get('phase')
            dead = phase not in (copy_worker.DONE, copy_worker.FAILED) and (
                not worker.running())
            if holding and (dead or phase == copy_worker.FAILED):
                # librbd's execute fails (ECONNREFUSED) when the exporter
                # dies under it; serve the source again, then re-run it
                for kind in holding:
                    kind.ensure_served(volume)
                dead = True
            if dead:
                # before anything else touches the image: a dead worker
                # may still hold its exclusive lock
                restarts += 1
                if restarts > cfg.async_migration_worker_restarts:
                    raise exception.MigrationEngineError(
                        image=name, step='execute',
                        reason=_('the copy worker stopped %(n)d times; see '
                                 'its log %(log)s') % {
                            'n': restarts,
                            'log': copy_worker.log_path(
                                self._status_path(name))})
                LOG.warning('Copy worker of %(img)s stopped; restarting it '
                            '(%(n)d of %(max)d).',
                            {'img': name, 'n': restarts,
                             'max': cfg.async_migration_worker_restarts})
                worker.stop()
                worker = self._start_worker(client, volume, record)
                last_change = time.monotonic()
                continue

            done, total = report.get('done', 0), report.get('total', 0)
            now = time.monotonic()
            # every write of the record opens the image and notifies the
            # copying client: the first waits for the worker's first
            # report, which names it; the end's is the commit's
            write = phase != copy_worker.DONE and bool(report.get('addr'))
            due = write and (recorded_at is None or
                             now - recorded_at >= _RECORD_INTERVAL)
            if size is None or due:
                # the destination may have been extended meanwhile
                size = self.engine.inspect(client.ioctx, name).size
            if phase == copy_worker.DONE:
                done = total = max(total, 1)
            progress = state.Progress.from_objects(done, total, size)
            reached = max(reached, progress.bytes_copied)
            progress = state.Progress(reached, progress.bytes_total,
                                      meter.update(reached))
            changes = {'phase': 'copying', 'progress': progress.as_dict(),
                       'copy_in': report.get('copy_in')}
            moved = changes['copy_in'] != record.get('copy_in')
            if moved:
                LOG.info('The copy of %(img)s runs in %(holder)s, which '
                         'holds the image\'s exclusive lock; the cap does '
                         'not apply there.' if changes['copy_in'] else
                         'The copy of %(img)s runs in its worker.',
                         {'img': name, 'holder': changes['copy_in']})
            if report.get('addr'):
                changes['worker'] = {k: report.get(k)
                                     for k in ('pid', 'host', 'addr')}
            if write and (due or moved or
                          changes.get('worker') != record.get('worker')):
                record = self._record(client, name, callback=callback,
                                      record=record, **changes)
                recorded_at = now
            else:
                record.update(changes)
                _tell(callback, record)
            if phase == copy_worker.DONE:
                copy_worker.remove_rate(self._status_path(name))
                return record
            if phase == copy_worker.FAILED:
                # its execute is over, but closing its client may hang
                # after a partition: no worker outlives its copy
                worker.stop()
                self.engine.raise_execute_error(name, report.get('error_type'),
                                                report.get('errno'))
            if done != last_done:
                last_done, last_change = done, time.monotonic()
                asked = last_change
            elif (time.monotonic() - last_change >
                  cfg.async_migration_stall_timeout):
                worker.stop()
                raise exception.MigrationEngineError(
                    image=name, step='execute',
                    reason=_('no progress for %d s; the migration stays '
                             'prepared and completing it again resumes the '
                             'copy') % cfg.async_migration_stall_timeout)
            elif (changes['copy_in'] and time.monotonic() - asked >
                  cfg.async_migration_lock_holder_stall_timeout):
                # the holder may have ended the copy, or stopped it, while
                # cut off from the worker, which then waits for a word
                # that never comes
                LOG.warning('The copy of %(img)s in %(holder)s made no '
                            'progress for %(n)d s; asking it again from a '
                            'new copy worker.',
                            {'img': name, 'holder': changes['copy_in'],
                             'n': time.monotonic() - asked})
                worker.stop()
                worker = self._start_worker(client, volume, record)
                asked = time.monotonic()
                continue
            worker.wait(cfg.async_migration_poll_interval)

    # -- abort and delete ----------------------------------------------------

    def abort_migration_target(self, context, volume, force=False):
        """Roll back an unfinished migration to this backend.

        A linked migration is always rolled back: librbd copies every write
        made here back to the source. An import-only one would lose those
        writes, so it is refused unless ``force``.

        :param context: the request context.
        :param volume: the volume being migrated here.
        :param force: discard writes made to an import-only destination.
        :returns: True if a migration was rolled back, False if none ran.
        :raises MigrationAbortRefused: import-only without ``force``.
        :raises MigrationConflict: the volume is attached somewhere.
        """
        name = volume.name
        status_path = self._status_path(name)
        self._ensure_source(volume)
        with cinder_rbd.RADOSClient(self) as client:
            status = self.engine.status(client.ioctx, name)
            if status is None or status.state is state.MigrationState.NONE:
                return False
            # refuses before anything is stopped
            self.engine.check_abort(status, name, force)
            record = self.engine.read_record(client.ioctx, name)
            kind = self._kind_of(name, record)
            worker = copy_worker.ExecuteWorker.adopt(status_path, name)
            if worker is not None:
                worker.stop()
            # a dead worker's, or in a cluster the one another member left
            # running when its completion stopped for this
            self._release_dead_worker(client, name, record, status_path)
            aborted = self.engine.abort(client.ioctx, name, force=force)
        copy_worker.remove_files(status_path)
        self._stop_source(context, volume, kind, record)
        return aborted

    def migration_committed(self, context, volume):
        """Whether the volume's migration here is committed already.

        True when its image is here and librbd migrates it no longer; False
        while it migrates, and once an abort removed the image.
        """
        with cinder_rbd.RADOSClient(self) as client:
            status = self.engine.status(client.ioctx, volume.name)
        return status is not None and (
            status.state is state.MigrationState.NONE)

    def check_abort_migration_target(self, context, volume, force=False):
        """Refuse what :meth:`abort_migration_target` would refuse.

        Nothing is stopped or changed; the abort itself checks again.

        :raises MigrationAbortRefused: import-only without ``force``.
        """
        with cinder_rbd.RADOSClient(self) as client:
            status = self.engine.status(client.ioctx, volume.name)
        self.engine.check_abort(status, volume.name, force)

    def delete_volume(self, volume):
        """Delete a volume; an unfinished migration is rolled back first.

        Removing the destination of a migration would drop the writes made
        to it, so a linked migration is aborted instead (its data goes back
        to the source image) and an import-only one is refused.
        """
        with cinder_rbd.RADOSClient(self) as client:
            status = self.engine.status(client.ioctx, volume.name)
        if status and status.state is not state.MigrationState.NONE:
            self.abort_migration_target(None, volume)
            LOG.warning('Volume %(vol)s was deleted while being migrated '
                        'here; the migration was rolled back and its data '
                        'is in the source image %(src)s.',
                        {'vol': volume.id, 'src': status.source_image},
                        resource=volume)
            return
        super(AsyncMigrationRBDDriver, self).delete_volume(volume)
