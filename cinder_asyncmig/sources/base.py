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

"""The interface every kind of source implements.

Like os-brick's ``InitiatorConnector``: one class per kind, in a module of
its own, and :mod:`~cinder_asyncmig.sources.registry` picks one for each
migration. A kind says whether it can take a source over and why not,
takes it over, serves it again after a restart, stops serving it, and
tells whether the source is left for its backend to remove. Steps a kind
has nothing to do for are inherited no-ops.
"""

import abc
import contextlib
import functools
import time

from cinder.i18n import _
from cinder.volume.drivers import rbd as cinder_rbd
from oslo_log import log as logging
from oslo_utils import excutils
from oslo_utils import timeutils

from cinder_asyncmig.engine import state
from cinder_asyncmig import exception

LOG = logging.getLogger(__name__)


class Offer(object):
    """A source offered to the target: what every kind is asked about.

    Used as a context manager; the connection to the target's cluster is
    opened when a kind first needs it and closed on exit.

    :param context: the request context.
    :param volume: the volume, still on its source host.
    :param src_host: the source backend's description: ``host``,
                     ``capabilities`` and what the source volume service
                     adds (the file path of a file-based volume).
    :param driver: the target driver.
    """

    def __init__(self, context, volume, src_host, driver):
        self.context = context
        self.volume = volume
        self.src_host = src_host or {}
        self._driver = driver
        self._closing = contextlib.ExitStack()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._closing.close()

    @functools.cached_property
    def client(self):
        """A :class:`RADOSClient` of the target's pool."""
        return self._closing.enter_context(
            cinder_rbd.RADOSClient(self._driver))

    @functools.cached_property
    def local_fsid(self):
        """The fsid of the target's Ceph cluster."""
        return self.client.cluster.get_fsid()


class SourceKind(object, metaclass=abc.ABCMeta):
    """One kind of source the target takes over as a remote parent.

    :param driver: the target driver; a kind uses its ``configuration``
                   and migration ``engine``.
    """

    #: the kind's name, from :mod:`~cinder_asyncmig.sources.kinds`
    name = None
    #: the source is served from the host that took it over, and only
    #: there: another volume service of a cluster cannot resume its copy
    host_bound = False

    def __init__(self, driver):
        self.configuration = driver.configuration
        self.engine = driver.engine

    @abc.abstractmethod
    def decline_reason(self, offer):
        """Why this kind cannot take the offered source over, or None.

        Only looks; the next kind is asked when this one declines.

        :param offer: the :class:`Offer`.
        :returns: a translated phrase for the driver's log, or None.
        """

    @abc.abstractmethod
    def prepare(self, offer):
        """Take the source over and write the migration's record.

        Called only when :meth:`decline_reason` gave None. A repeated
        request for a migration already prepared is accepted as it is.

        :param offer: the :class:`Offer`.
        :returns: ``(moved, migration_async, model_update)``, as
                  ``migrate_volume_target`` returns it.
        :raises MigrationSourceNotFound: the source does not exist.
        :raises MigrationSourceRefused: the source cannot be taken over
                                        as it is now.
        :raises MigrationConflict: the source or destination is part of
                                   another migration.
        """

    def holds_local_state(self, volume):
        """Whether this host keeps state of the volume's source.

        Known without librbd, which cannot open the destination while
        its source is not readable.

        :param volume: the volume being migrated here.
        """
        return False

    def ensure_served(self, volume):
        """Serve the source again if what served it here is gone.

        Called for the kinds holding state here: when the volume service
        starts, before every completion and when a copy fails.

        :param volume: the volume being migrated here.
        """

    def stop(self, context, volume, record=None):
        """Stop serving the source and release what holds it here.

        Called after the commit, before the source's backend removes the
        source; after an abort; and when a take-over fails once the source
        was made readable. Safe to call again.

        :param volume: the volume (on either host).
        :param record: the migration's record, read before the step that
                       called; None when it is not known.
        """

    def source_left(self, client, record):
        """Whether the source of a committed migration is still there.

        :param client: a :class:`RADOSClient` of the target's pool.
        :param record: the migration's record.
        :returns: True when the source's backend must still remove it,
                  False when it is gone, None when unknown. librbd never
                  touches the source of an import-only migration.
        """
        return True

    # -- for the kinds -------------------------------------------------------

    def _prepared_already(self, offer, same):
        """Whether this take-over was prepared already (a repeated call).

        :param same: ``same(status, record)`` tells whether the migration
                     found here is the one asked for.
        :returns: False when no image of that name exists here.
        :raises MigrationConflict: another image holds the name.
        """
        client, volume = offer.client, offer.volume
        status = self.engine.status(client.ioctx, volume.name)
        if status is None:
            return False
        if status.state is not state.MigrationState.NONE and same(
                status, self.engine.read_record(client.ioctx, volume.name)):
            LOG.info('Volume %s is already being taken over here; nothing '
                     'to prepare.', volume.id, resource=volume)
            return True
        raise exception.MigrationConflict(
            image=volume.name,
            reason=_('an image of that name already exists in the '
                     'destination pool %s') % self.configuration.rbd_pool)

    def _write_record(self, client, volume, source, size):
        self.engine.write_record(client.ioctx, volume.name, {
            'kind': self.name,
            'source': source,
            'phase': 'prepared',
            'prepared_at': timeutils.utcnow().isoformat(),
            'progress': state.Progress(0, size).as_dict()})


class ImportKind(SourceKind):
    """A source librbd reads through a stream: an import-only migration.

    An abort deletes the destination with every write made to it, and
    librbd never touches the source.
    """

    @abc.abstractmethod
    def _identity(self, offer):
        """What identifies the source in the migration's record.

        A repeated request for the same source is accepted. Nothing
        secret.
        """

    @abc.abstractmethod
    def _open_stream(self, offer):
        """Make the source readable to librbd; :meth:`stop` undoes it.

        :returns: librbd's source spec, and more of the record's source
                  description.
        """

    def prepare(self, offer):
        """Create the destination reading through to the source's stream.

        See :meth:`SourceKind.prepare`.
        """
        client, volume = offer.client, offer.volume
        source = self._identity(offer)

        def same(status, record):
            known = record.get('source') or {}
            return (status.import_only and record.get('kind') == self.name and
                    all(known.get(k) == v for k, v in source.items()))
        if self._prepared_already(offer, same):
            return True, True, {}
        started = time.monotonic()
        spec, described = self._open_stream(offer)
        source = dict(source, **described)
        try:
            size = self._prepare_import(client, volume, spec, source)
        except Exception:
            with excutils.save_and_reraise_exception():
                self.stop(offer.context, volume,
                          {'kind': self.name, 'source': source})
        LOG.info('Volume %(vol)s (%(size)d bytes, %(kind)s source) taken '
                 'over in %(ms).1f ms; it is usable on this '
                 'backend while its data is copied.',
                 {'vol': volume.id, 'size': size, 'kind': self.name,
                  'ms': (time.monotonic() - started) * 1000},
                 resource=volume)
        return True, True, {}

    def _prepare_import(self, client, volume, spec, source):
        """Prepare the import and record it; returns the volume's size."""
        name = volume.name
        self.engine.prepare_import(spec, client.ioctx, name)
        try:
            size = self.engine.inspect(client.ioctx, name).size
            self._write_record(client, volume, source, size)
        except Exception:
            with excutils.save_and_reraise_exception():
                # nobody has seen the destination yet: nothing to lose
                self.engine.abort(client.ioctx, name, force=True,
                                  exposed=False)
        return size
