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

"""The exporter kind: any LUN, attached on the target host, served to librbd.

The target host gets the source's connection info through the source
volume service (``initialize_connection`` over Cinder's volume RPC API, as
Cinder's generic migration does), attaches it with os-brick and runs an
:mod:`HTTP exporter <cinder_asyncmig.sources.exporter>` for it. librbd
then reads the blocks it has not copied yet with range requests, from the
copy worker and from every hypervisor the destination is attached to.

An RBD source in another Ceph cluster is not mapped (os-brick would hand
back an in-process librbd handle): the exporter opens it with librbd
itself, with a configuration naming that cluster's monitors and the
keyring os-brick would use, ``/etc/ceph/<cluster>.client.<user>.keyring``.

What is needed to take the source down again, or to serve it again after
a restart of this service, is kept in a file of the state directory only
root can read: the connection info may hold secrets (iSCSI CHAP).
"""

import os

from cinder.i18n import _
from cinder.volume import rpcapi as volume_rpcapi
from cinder.volume import volume_utils
from oslo_log import log as logging
from oslo_utils import excutils

from cinder_asyncmig.engine import specs
from cinder_asyncmig import exception
from cinder_asyncmig.sources import base
from cinder_asyncmig.sources import exporter
from cinder_asyncmig.sources import kinds
from cinder_asyncmig.sources import rbd

LOG = logging.getLogger(__name__)


def _record_path(state_dir, export_id):
    return os.path.join(state_dir, 'exporter.%s.source' % export_id)


def _ceph_conf_path(state_dir, export_id):
    return os.path.join(state_dir, 'exporter.%s.ceph.conf' % export_id)


class ExportedSource(object):
    """The exporter of one migration's source, and its attachment here.

    :param configuration: the target backend's configuration.
    :param volume_id: the migrating volume.
    :param nbd_stream: whether librbd here reads NBD streams.
    """

    def __init__(self, configuration, volume_id, nbd_stream=False):
        self.configuration = configuration
        self.nbd_stream = nbd_stream
        self.export_id = volume_id
        self.state_dir = configuration.async_migration_state_dir
        self.record_path = _record_path(self.state_dir, volume_id)

    # -- taking over -------------------------------------------------------

    def start(self, context, volume, src_host):
        """Attach the source here and serve it.

        :param volume: the volume, still on its source host.
        :param src_host: the source backend's description.
        :returns: the running :class:`exporter.Exporter`.
        """
        cfg = self.configuration
        properties = volume_utils.brick_get_connector_properties(
            cfg.use_multipath_for_image_xfer,
            cfg.enforce_multipath_for_image_xfer)
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        if self._read_record() is not None:
            # left by a take-over that died before librbd recorded it
            LOG.info('Taking down an earlier, unfinished export of the '
                     'source of volume %s.', volume.id, resource=volume)
            self.stop(context, volume)
        else:
            exporter.Exporter.forget(self.state_dir, self.export_id)
        # what Cinder's _attach_volume(remote=True) asks first; the local
        # attach differs for RBD (see _connect)
        conn = volume_rpcapi.VolumeAPI().initialize_connection(
            context, volume, properties)
        record = {'src_host': src_host['host'], 'properties': properties,
                  'conn': conn, 'device': None}
        try:
            exporter.write_private_json(self.record_path, record)
            path, rbd = self._connect(record)
            # the backend's read cap only: one fixed here could not follow
            # the migration's cap (qemu-nbd's cannot change), which the
            # copy worker holds the copy to
            options = exporter.start_options(cfg)
            options['transport'] = self._transport(rbd)
            served = exporter.Exporter.start(
                self.state_dir, self.export_id, path,
                exporter.generate_token(), rbd=rbd, **options)
        except Exception:
            with excutils.save_and_reraise_exception():
                self.stop(context, volume, record=record)
        LOG.info('Serving the %(proto)s source of volume %(vol)s at '
                 '%(url)s (read cap %(cap)s B/s).',
                 {'proto': conn['driver_volume_type'], 'vol': volume.id,
                  'url': served.masked_url,
                  'cap': options['max_bytes_per_sec'] or 'none'},
                 resource=volume)
        return served

    def _transport(self, rbd_lun):
        """The exporter's transport for this source (see the option).

        :raises MigrationSourceRefused: nbd is asked for and cannot be.
        """
        wanted = self.configuration.async_migration_exporter_transport
        tls_dir = self.configuration.async_migration_exporter_nbd_tls_dir
        if wanted == exporter.HTTP or rbd_lun is not None:
            return exporter.HTTP
        reason = None
        if not self.nbd_stream:
            reason = _('librbd here has no NBD stream (Ceph 20.2 or later)')
        elif not tls_dir:
            reason = _('async_migration_exporter_nbd_tls_dir is not set')
        if reason is None:
            return exporter.NBD
        if wanted == exporter.NBD:
            raise exception.MigrationSourceRefused(
                volume_id=self.export_id,
                reason=_('the exporter transport is nbd, but %s') % reason)
        return exporter.HTTP

    def _connect(self, record):
        """Attach the source here; return the exporter's path and rbd."""
        conn = record['conn']
        if conn['driver_volume_type'].lower() == 'rbd':
            return self._rbd_lun(conn['data'])
        # the steps of Cinder's VolumeDriver._connect_device
        connector = self._connector(conn)
        device = connector.connect_volume(conn['data'])
        path = device.get('path')
        reason = None
        if not isinstance(path, str):
            reason = _('os-brick gives no local path for its %s '
                       'connection') % conn['driver_volume_type']
        elif not connector.check_valid_device(path):
            reason = _('its %(proto)s device %(path)s cannot be read on '
                       'this host') % {'proto': conn['driver_volume_type'],
                                       'path': path}
        if reason:
            connector.disconnect_volume(conn['data'], device, force=True)
            raise exception.MigrationSourceRefused(volume_id=self.export_id,
                                                   reason=reason)
        record['device'] = device
        exporter.write_private_json(self.record_path, record)
        return path, None

    def _connector(self, conn):
        cfg = self.configuration
        return volume_utils.brick_get_connector(
            conn['driver_volume_type'],
            use_multipath=cfg.use_multipath_for_image_xfer,
            device_scan_attempts=cfg.num_volume_device_scan_tries,
            conn=conn)

    def _rbd_lun(self, data):
        try:
            pool, image = data['name'].split('/')
            cluster = data.get('cluster_name') or 'ceph'
            user = data['auth_username']
            monitors = ','.join('%s:%s' % hp for hp in
                                zip(data['hosts'], data['ports']))
        except (KeyError, ValueError, TypeError):
            raise exception.MigrationSourceRefused(
                volume_id=self.export_id,
                reason=_('its RBD connection info is incomplete'))
        keyring = '/etc/ceph/%s.client.%s.keyring' % (cluster, user)
        if data.get('keyring'):
            # cinderlib-style connection info carries the key itself
            keyring = os.path.join(self.state_dir,
                                   'exporter.%s.keyring' % self.export_id)
            with open(keyring, 'w', opener=_private_opener) as f:
                f.write(data['keyring'])
        with open(_ceph_conf_path(self.state_dir, self.export_id), 'w',
                  opener=_private_opener) as f:
            f.write('[global]\nmon_host = %s\nkeyring = %s\n' % (
                monitors, keyring))
        return (_ceph_conf_path(self.state_dir, self.export_id),
                {'pool': pool, 'image': image, 'user': user,
                 'cluster': cluster})

    # -- running -----------------------------------------------------------

    def recorded(self):
        """Whether this host serves (or must serve) the source.

        Known from the state directory alone: while the exporter is down,
        librbd cannot even open the destination image to read its record.
        """
        return os.path.exists(self.record_path)

    def ensure_served(self):
        """Serve the source again if its exporter is gone (a restart).

        :returns: the running :class:`exporter.Exporter`.
        :raises MigrationLost: nothing is recorded to serve it again.
        """
        served = exporter.Exporter.adopt(self.state_dir, self.export_id)
        if served is not None:
            return served
        record = self._read_record()
        if record is None:
            raise exception.MigrationLost(
                image=self.export_id,
                reason=_('the record of its source\'s attachment (%s) is '
                         'gone, so the source cannot be served again') %
                self.record_path)
        path, _rbd = self._connect(record)
        try:
            served = exporter.Exporter.restart(self.state_dir,
                                               self.export_id, path=path)
        except exception.ExporterNotFound:
            raise exception.MigrationLost(
                image=self.export_id,
                reason=_('its exporter\'s record (token and port) is gone'))
        LOG.info('Serving the source of volume %(vol)s again at %(url)s.',
                 {'vol': self.export_id, 'url': served.masked_url})
        return served

    def _read_record(self):
        try:
            return exporter.read_private_json(self.record_path)
        except FileNotFoundError:
            return None

    # -- taking down -------------------------------------------------------

    def stop(self, context, volume, record=None):
        """Stop serving the source, detach it here and at its host.

        Safe to call again: what is already down is skipped.

        :param volume: the volume (on either host).
        :param record: the attachment record, if not yet written.
        """
        exporter.Exporter.forget(self.state_dir, self.export_id)
        record = record or self._read_record()
        if record is None:
            return
        conn = record['conn']
        if record.get('device'):
            # here first, and it must work: the source is deleted next
            self._connector(conn).disconnect_volume(
                conn['data'], record['device'], force=True)
            record['device'] = None
            exporter.write_private_json(self.record_path, record)
        # the connection belongs to the source host's export of the volume
        source = volume.obj_clone()
        source.host = record['src_host']
        source.cluster_name = None
        source.obj_reset_changes(['host', 'cluster_name'])
        try:
            volume_rpcapi.VolumeAPI().terminate_connection(
                context, source, record['properties'], force=True)
        except Exception as exc:
            # a source host that is down must not hold the migration up;
            # removing the source ends its export too
            LOG.warning('The source host %(host)s of volume %(vol)s did not '
                        'end the connection of this host: %(err)s',
                        {'host': record['src_host'], 'vol': volume.id,
                         'err': exc})
        for path in (self.record_path,
                     _ceph_conf_path(self.state_dir, self.export_id),
                     os.path.join(self.state_dir,
                                  'exporter.%s.keyring' % self.export_id)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        LOG.info('Stopped serving the source of volume %(vol)s and '
                 'detached it from this host and %(host)s.',
                 {'vol': volume.id, 'host': record['src_host']})


class ExporterKind(base.ImportKind):
    """Any source os-brick attaches here, served to librbd over HTTP."""

    name = kinds.EXPORTER

    # librbd reads it from this host's exporter, of this host's attachment
    # of the LUN, at the address the migration's source spec names
    host_bound = True

    def _exported(self, volume):
        return ExportedSource(self.configuration, volume.id,
                              nbd_stream=self.engine.features.nbd_stream)

    def decline_reason(self, offer):
        source = rbd.from_offer(offer)
        if source is not None and source.fsid == offer.local_fsid:
            # an import-only abort loses the writes a linked one gives
            # back: an image of this cluster is linked or not taken over
            return _('its RBD source is in this Ceph cluster, which only '
                     '%s takes over') % kinds.RBD_LINKED
        return None

    def _identity(self, offer):
        return {'host': offer.src_host['host']}

    def _open_stream(self, offer):
        served = self._exported(offer.volume).start(
            offer.context, offer.volume, offer.src_host)
        if served.transport == exporter.NBD:
            spec = specs.raw_nbd(served.url)
        else:
            spec = specs.raw_http(served.url)
        return spec, {'export': served.masked_url}

    def holds_local_state(self, volume):
        """The attachment record in the state directory.

        See :meth:`ExportedSource.recorded`.
        """
        return self._exported(volume).recorded()

    def ensure_served(self, volume):
        self._exported(volume).ensure_served()

    def stop(self, context, volume, record=None):
        # the exporter keeps its own record in the state directory
        self._exported(volume).stop(context, volume)


def _private_opener(path, flags):
    return os.open(path, flags, 0o600)
