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

"""The steps of a librbd live migration, with librbd errors mapped.

Every call goes through ``cinder.utils.tpool_wrap`` so it blocks neither
the eventlet hub nor, in native-thread mode, anything but its own thread.
Every image handle is closed in ``finally``. librbd's error messages are
unreliable (an execute failure reads "error aborting migration"), so
errors are mapped by exception type only.
"""

import contextlib
import dataclasses

from cinder.i18n import _
from cinder import utils
from oslo_log import log as logging
from oslo_serialization import jsonutils

from cinder_asyncmig.engine import features as ceph_features
from cinder_asyncmig.engine import specs
from cinder_asyncmig.engine import state
from cinder_asyncmig import exception

try:
    import rbd
except ImportError:  # unit tests run without Debian's binding
    rbd = None

LOG = logging.getLogger(__name__)

# layering, exclusive-lock, object-map, fast-diff, deep-flatten
DESTINATION_FEATURES = 1 | 4 | 8 | 16 | 32
RECORD_KEY = 'asyncmig.migration'
# librbd's per-image override of a client setting: every client that opens
# the image reads it, a hypervisor holding its lock included
COPY_OPS_KEY = 'conf_rbd_concurrent_management_ops'


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the checks before prepare need to know about a source."""
    name: str
    size: int
    order: int
    watchers: tuple
    snapshots: tuple
    migrating: bool


class Engine(object):
    """librbd live migration for one librbd module (real or fake)."""

    def __init__(self, rbd_module=None):
        self.rbd = rbd_module or rbd
        self._features = None

    @property
    def features(self):
        if self._features is None:
            self._features = ceph_features.CephFeatures.detect(self.rbd)
        return self._features

    def _api(self):
        return utils.tpool_wrap(self.rbd.RBD())

    @contextlib.contextmanager
    def image(self, ioctx, name, read_only=False):
        """Open an image; it is closed when the block ends."""
        # opening talks to the cluster too: off the hub like the calls
        opener = utils.tpool_wrap(self.rbd.Image)
        handle = utils.tpool_wrap(opener(ioctx, name, read_only=read_only))
        try:
            yield handle
        finally:
            handle.close()

    @contextlib.contextmanager
    def translate_errors(self, step, image):
        """Re-raise librbd errors as the plugin's exceptions, by type."""
        r = self.rbd
        try:
            yield
        except r.NoSpace as exc:
            raise exception.MigrationNoSpace(image=image, step=step) from exc
        except r.ImageExists as exc:
            raise exception.MigrationConflict(
                image=image,
                reason=_('an image of that name already exists in the '
                         'destination pool')) from exc
        except r.ImageBusy as exc:
            raise exception.MigrationConflict(
                image=image,
                reason=_('the image is open by another client during %s; '
                         'detach it first') % step) from exc
        except r.PermissionError as exc:
            raise exception.MigrationEngineError(
                image=image, step=step,
                reason=_('permission denied: the Ceph client needs '
                         "'profile rbd' on the source and destination "
                         'pools')) from exc
        except r.ImageNotFound as exc:
            raise exception.MigrationEngineError(
                image=image, step=step,
                reason=_('image not found')) from exc
        except r.InvalidArgument as exc:
            raise exception.MigrationEngineError(
                image=image, step=step,
                reason=_('librbd refused the step in the current '
                         'migration state')) from exc
        except r.Error as exc:
            raise exception.MigrationEngineError(
                image=image, step=step,
                reason=_('librbd error %(type)s (errno %(errno)s)') % {
                    'type': type(exc).__name__,
                    'errno': getattr(exc, 'errno', None)}) from exc

    # -- reading ---------------------------------------------------------

    def inspect(self, ioctx, name):
        """Return :class:`ImageInfo` for an image, or None if missing."""
        try:
            with self.image(ioctx, name, read_only=True) as img:
                return ImageInfo(
                    name=name, size=img.size(),
                    order=img.stat()['order'],
                    watchers=tuple(w['addr'] for w in img.watchers_list()),
                    snapshots=tuple(s['name'] for s in img.list_snaps()),
                    migrating=bool(img.features() &
                                   self.rbd.RBD_FEATURE_MIGRATING))
        except self.rbd.ImageNotFound:
            return None

    def status(self, ioctx, name):
        """Return the :class:`state.MigrationStatus` of an image.

        :returns: None when no such image exists; state ``NONE`` when it
                  exists and is not migrating.
        """
        try:
            raw = self._api().migration_status(ioctx, name)
        except self.rbd.ImageNotFound:
            return None
        except self.rbd.InvalidArgument:
            return state.MigrationStatus(state.MigrationState.NONE)
        return state.MigrationStatus(
            state=state.MigrationState.from_librbd(self.rbd, raw['state']),
            description=raw.get('state_description', ''),
            source_pool_id=raw.get('source_pool_id'),
            source_namespace=raw.get('source_pool_namespace', ''),
            source_image=raw.get('source_image_name'),
            # no dest_pool_id: the binding reports the source's pool id
            # there (16.2.15, 18.2.7 and 20.2.4), and the status is read
            # from the destination's ioctx anyway
            dest_namespace=raw.get('dest_pool_namespace', ''),
            dest_image=raw.get('dest_image_name'))

    def watchers(self, ioctx, name):
        with self.translate_errors('listing watchers', name):
            with self.image(ioctx, name, read_only=True) as img:
                return [w['addr'] for w in img.watchers_list()]

    # -- steps -----------------------------------------------------------

    def prepare_linked(self, src_ioctx, src_name, dst_ioctx, dst_name,
                       features=DESTINATION_FEATURES, order=None):
        """Link ``dst_name`` to ``src_name`` (same cluster); milliseconds.

        The destination reads through to the source from now on, and the
        source is hidden from listings until commit deletes it or abort
        restores it with every write made at the destination.
        """
        self.features.require('live_migration')
        with self.translate_errors('prepare', dst_name):
            self._api().migration_prepare(src_ioctx, src_name, dst_ioctx,
                                          dst_name, features=features,
                                          order=order)

    def prepare_import(self, spec, dst_ioctx, dst_name,
                       features=DESTINATION_FEATURES, order=None):
        """Create ``dst_name`` reading through to the source ``spec``.

        :param spec: a dict from :mod:`cinder_asyncmig.engine.specs`.
        """
        self.features.require('import_only')
        if specs.is_cross_cluster(spec):
            self.features.require('native_cross_cluster')
        if spec.get('type') == 'native' and not spec.get('snap_name'):
            raise exception.MigrationSourceRefused(
                volume_id=dst_name,
                reason=_('a native import needs a source snapshot'))
        with self.translate_errors('prepare', dst_name):
            self._api().migration_prepare_import(
                specs.encode(spec), dst_ioctx, dst_name, features=features,
                order=order)

    def raise_execute_error(self, name, error_type, errno=None):
        """Raise the plugin error for an execute failure in the worker.

        :param error_type: the name of the librbd exception class the
                           worker reported (see :mod:`.worker`).
        """
        cls = getattr(self.rbd, error_type or '', None)
        if not (isinstance(cls, type) and issubclass(cls, self.rbd.OSError)):
            cls = self.rbd.OSError
        with self.translate_errors('execute', name):
            raise cls('migration execute failed', errno=errno)

    def commit(self, ioctx, name):
        """Finish a migration whose copy is done; removes a linked source."""
        with self.translate_errors('commit', name):
            self._api().migration_commit(ioctx, name)

    def abort(self, ioctx, name, force=False, exposed=True):
        """Roll a migration back, never silently dropping writes.

        A linked abort copies the destination's writes back to the source
        and is always allowed. An import-only abort deletes the
        destination: refused once it may have been written (``exposed``)
        unless ``force``.

        :returns: True if a migration was aborted, False if none was found.
        """
        status = self.status(ioctx, name)
        if status is None or status.state is state.MigrationState.NONE:
            return False
        if exposed:
            self.check_abort(status, name, force)
        watchers = self.watchers(ioctx, name)
        if watchers:
            raise exception.MigrationConflict(
                image=name,
                reason=_('it is open by %d client(s); abort needs the '
                         'image detached') % len(watchers))
        LOG.info('Aborting the %(kind)s migration of %(image)s.',
                 {'kind': 'import-only' if status.import_only else 'linked',
                  'image': name})
        with self.translate_errors('abort', name):
            self._api().migration_abort(ioctx, name)
        return True

    @staticmethod
    def check_abort(status, name, force=False):
        """Refuse to abort an import-only migration without ``force``.

        :param status: the migration's status (:meth:`status`).
        :raises MigrationAbortRefused: it is import-only, not ``force``.
        """
        if status is not None and status.import_only and not force:
            raise exception.MigrationAbortRefused(
                image=name,
                reason=_('it is an import-only migration, so librbd '
                         'deletes the destination and every write made to '
                         'it since the migration began would be lost. Let '
                         'the migration finish, or abort with force to '
                         'discard those writes.'))

    # -- the snapshot a native import reads --------------------------------

    def freeze(self, ioctx, name, snapshot):
        """Create and protect ``snapshot`` of ``name``; kept if it exists.

        Protection keeps the image from being removed while a native
        import reads it.
        """
        with self.translate_errors('snapshot', name):
            with self.image(ioctx, name) as img:
                if snapshot not in [s['name'] for s in img.list_snaps()]:
                    img.create_snap(snapshot)
                if not img.is_protected_snap(snapshot):
                    img.protect_snap(snapshot)

    def thaw(self, ioctx, name, snapshot):
        """Unprotect and remove ``snapshot`` of ``name``, if both exist.

        :returns: True if a snapshot was removed.
        """
        with self.translate_errors('snapshot removal', name):
            try:
                with self.image(ioctx, name) as img:
                    if snapshot not in [s['name'] for s in img.list_snaps()]:
                        return False
                    if img.is_protected_snap(snapshot):
                        img.unprotect_snap(snapshot)
                    img.remove_snap(snapshot)
                    return True
            except self.rbd.ImageNotFound:
                return False

    # -- the plugin's record in the image header --------------------------

    def read_record(self, ioctx, name):
        """Return the plugin's record of a migration, {} when none."""
        try:
            with self.image(ioctx, name, read_only=True) as img:
                raw = img.metadata_get(RECORD_KEY)
        except (self.rbd.ImageNotFound, KeyError):
            return {}
        try:
            return jsonutils.loads(raw)
        except ValueError:
            LOG.warning('Ignoring an unreadable migration record on %s.',
                        name)
            return {}

    def write_record(self, ioctx, name, record):
        with self.translate_errors('recording progress', name):
            with self.image(ioctx, name) as img:
                img.metadata_set(RECORD_KEY,
                                 jsonutils.dumps(record, sort_keys=True))

    def set_copy_ops(self, ioctx, name, ops):
        """Set how many objects librbd copies at once for this image.

        :param ops: object copies at once. :meth:`clear_record` removes
                    the override.
        """
        with self.translate_errors('setting the copy\'s concurrency', name):
            with self.image(ioctx, name) as img:
                img.metadata_set(COPY_OPS_KEY, str(ops))

    def clear_record(self, ioctx, name):
        """Remove the record, and the copy's concurrency with it."""
        try:
            with self.image(ioctx, name) as img:
                for key in (COPY_OPS_KEY, RECORD_KEY):
                    try:
                        img.metadata_remove(key)
                    except KeyError:
                        pass
        except self.rbd.ImageNotFound:
            pass
