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

"""The parent-side handle of an exporter child: start, adopt, stop.

cinder-volume starts an exporter with :meth:`Exporter.start`, finds it
again after its own restart with :meth:`Exporter.adopt` (a pid is
trusted only when its command line names the export's configuration),
starts it again with the same token and port with :meth:`Exporter.restart`
and takes it down with :meth:`Exporter.stop` or :meth:`Exporter.forget`.
"""

import os
import sys
import time

from cinder.i18n import _
from oslo_log import log as logging
from oslo_utils import excutils

from cinder_asyncmig import children
from cinder_asyncmig.engine import worker
from cinder_asyncmig import exception
from cinder_asyncmig.sources.exporter import child
from cinder_asyncmig.sources.exporter import configuration
from cinder_asyncmig.sources.exporter import nbd

LOG = logging.getLogger(__name__)

_MODULE = 'cinder_asyncmig.sources.exporter'


class Exporter(object):
    """Parent-side handle of one exporter child process.

    Files of an export ``ID`` in the state directory: ``exporter.ID.conf``
    (the configuration with the token, 0600, kept until :meth:`stop` so
    that a restart reuses token and port), ``exporter.ID.json`` (the
    child's status, no token) and ``exporter.ID.log``.
    """

    def __init__(self, state_dir, config, process, status=None):
        """Get handles from :meth:`start`, :meth:`adopt`, :meth:`resume`."""
        self.state_dir = state_dir
        self.export_id = config['export_id']
        self.config_path, self.status_path, self.log_path = child._paths(
            state_dir, self.export_id)
        self._config = config
        self._process = process
        self._status = status or {}

    # -- lifecycle ---------------------------------------------------------

    @classmethod
    def start(cls, state_dir, export_id, path, token,
              bind_address=configuration.DEFAULT_BIND_ADDRESS,
              port_range=configuration.DEFAULT_PORT_RANGE, cert_file=None,
              key_file=None, max_bytes_per_sec=0,
              max_connections=configuration.DEFAULT_MAX_CONNECTIONS,
              timeout=configuration.DEFAULT_TIMEOUT,
              start_timeout=configuration.DEFAULT_START_TIMEOUT,
              rbd=None, transport=configuration.HTTP, nbd_tls_dir=None,
              nbd_identities=()):
        """Start a new export of ``path``; return once it listens.

        :param state_dir: local directory for the export's files.
        :param export_id: names the export's files (e.g. a volume id).
        :param path: the LUN: a block device or a regular file; for an RBD
            image, the configuration file of its cluster.
        :param token: the secret of the URL, from :func:`generate_token`.
        :param rbd: an RBD image's ``{'pool', 'image', 'user'[,
            'cluster']}`` (see :class:`RBDLun`).
        :param port_range: ``(min, max)``; the first free port is taken,
            skipping the ports recorded for the other exports of
            ``state_dir`` (their exporters must find them free on restart).
        :param start_timeout: seconds to wait for the child to listen.
        :param transport: ``http`` or ``nbd``; see :func:`make_config`.
        :returns: the running :class:`Exporter`.
        :raises ExporterInvalid: for a setting that cannot work.
        :raises ExporterConflict: when the export is already recorded.
        :raises ExporterStartError: when the child could not open the LUN
            or bind a port in time; no process and no file is left.
        """
        config = configuration.make_config(
            export_id, path, token, bind_address, port_range, cert_file,
            key_file, max_bytes_per_sec, max_connections, timeout,
            reserved_ports=child._recorded_ports(state_dir), rbd=rbd,
            transport=transport, nbd_tls_dir=nbd_tls_dir,
            nbd_identities=nbd_identities)
        config_path = child._paths(state_dir, export_id)[0]
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        try:
            configuration.write_private_json(config_path, config,
                                             exclusive=True)
        except FileExistsError:
            raise exception.ExporterConflict(
                export_id=export_id,
                reason=_('its configuration is recorded in %s; restart or '
                         'stop that export first') % state_dir)
        try:
            return cls._launch(state_dir, config, start_timeout)
        except Exception:
            with excutils.save_and_reraise_exception():
                child._remove(config_path)

    @classmethod
    def restart(cls, state_dir, export_id,
                start_timeout=configuration.DEFAULT_START_TIMEOUT, path=None):
        """Start a recorded export again, with its token and its port.

        :param state_dir: the directory given to :meth:`start`.
        :param export_id: the export.
        :param start_timeout: seconds to wait for the child to listen.
        :param path: where the LUN is now, when attaching it again gave
            another device path.
        :returns: the running :class:`Exporter`, same URL as before.
        :raises ExporterNotFound: when no such export is recorded.
        :raises ExporterConflict: when its exporter still runs.
        :raises ExporterPortTaken: when its port is in use; the record is
            kept, so the restart can be retried once the port is free.
        """
        configuration._check_export_id(export_id)
        config_path = child._paths(state_dir, export_id)[0]
        try:
            config = configuration.check_config(
                configuration.read_private_json(config_path))
        except FileNotFoundError:
            raise exception.ExporterNotFound(export_id=export_id,
                                             state_dir=state_dir)
        if cls.adopt(state_dir, export_id) is not None:
            raise exception.ExporterConflict(
                export_id=export_id,
                reason=_('its exporter is running; adopt it'))
        if path and path != config['path']:
            config['path'] = path
            configuration.write_private_json(config_path, config)
        return cls._launch(state_dir, config, start_timeout)

    @classmethod
    def adopt(cls, state_dir, export_id):
        """Return a handle on the running exporter of an export, or None.

        A pid is trusted only when that process is an exporter started
        with this export's configuration file (pids get reused).

        :param state_dir: the directory given to :meth:`start`.
        :param export_id: the export.
        :returns: an :class:`Exporter`, or None when none runs.
        """
        configuration._check_export_id(export_id)
        config_path, status_path, _log = child._paths(state_dir, export_id)
        status = worker.read_status(status_path)
        if status.get('phase') != child.SERVING:
            return None
        process = children.Child.adopt(status.get('pid'), _MODULE,
                                       config_path)
        if process is None:
            return None
        try:
            config = configuration.check_config(
                configuration.read_private_json(config_path))
        except (OSError, ValueError, exception.ExporterInvalid):
            return None
        LOG.info('Adopting exporter %(pid)d of %(id)s.',
                 {'pid': process.pid, 'id': export_id})
        return cls(state_dir, config, process, status=status)

    @classmethod
    def resume(cls, state_dir, export_id,
               start_timeout=configuration.DEFAULT_START_TIMEOUT):
        """Adopt the exporter of a recorded export, or start it again.

        :param state_dir: the directory given to :meth:`start`.
        :param export_id: the export.
        :returns: the running :class:`Exporter`.
        :raises ExporterNotFound: when no such export is recorded.
        :raises ExporterPortTaken: when its port is in use.
        """
        handle = cls.adopt(state_dir, export_id)
        return handle or cls.restart(state_dir, export_id, start_timeout)

    @classmethod
    def forget(cls, state_dir, export_id, timeout=10):
        """Stop an export's exporter if it runs, and remove its files.

        :param state_dir: the directory given to :meth:`start`.
        :param export_id: the export; nothing happens if it is unknown.
        :param timeout: seconds to wait after each signal.
        """
        handle = cls.adopt(state_dir, export_id)
        if handle is not None:
            handle.stop(timeout)
        else:
            child._remove(*child._paths(state_dir, export_id))

    @classmethod
    def _launch(cls, state_dir, config, start_timeout):
        config_path, status_path, log_path = child._paths(state_dir,
                                                          config['export_id'])
        child._remove(status_path)
        args = [sys.executable, '-m', _MODULE, '--config', config_path]
        handle = cls(state_dir, config, children.Child.spawn(
            args, log_path, opener=configuration._private_opener))
        try:
            handle._status = handle._wait_listening(start_timeout)
            if config['port'] != handle._status['port']:
                config['port'] = handle._status['port']
                configuration.write_private_json(config_path, config)
        except Exception:
            with excutils.save_and_reraise_exception():
                handle._kill()
                child._remove(status_path, log_path)
        LOG.info('Exporter %(pid)d serves %(path)s at %(url)s.',
                 {'pid': handle.pid, 'path': config['path'],
                  'url': handle.masked_url})
        return handle

    def _wait_listening(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            alive = self.running()
            status = worker.read_status(self.status_path)
            if status.get('pid') == self.pid:
                if status.get('phase') == child.SERVING:
                    return status
                if status.get('phase') == child.FAILED:
                    raise self._start_error(status)
            if not alive:
                raise exception.ExporterStartError(
                    export_id=self.export_id,
                    reason=_('the exporter exited with code %(code)s: '
                             '%(log)s') % {'code': self._process.returncode,
                                           'log': self._log_tail()})
            if time.monotonic() > deadline:
                raise exception.ExporterStartError(
                    export_id=self.export_id,
                    reason=_('it was not listening after %d s') % timeout)
            time.sleep(0.05)

    def _start_error(self, status):
        if status.get('error_kind') == child.PORT_TAKEN:
            return exception.ExporterPortTaken(
                export_id=self.export_id, port=status.get('port'),
                address=status.get('address'))
        return exception.ExporterStartError(export_id=self.export_id,
                                            reason=status.get('error'))

    def _log_tail(self):
        try:
            with open(self.log_path, errors='replace') as f:
                lines = f.read().strip().splitlines()
        except OSError:
            return ''
        return configuration.mask_token(
            lines[-1] if lines else '', self._config['token'])

    def _kill(self):
        self._process.stop(timeout=30, term=False)

    # -- what the caller uses ----------------------------------------------

    @property
    def port(self):
        """The TCP port, recorded at the first start."""
        return self._config['port'] or self._status.get('port')

    @property
    def address(self):
        """The address listened on, as the URL names it."""
        return self._config['bind_address']

    @property
    def transport(self):
        """``http`` or ``nbd``."""
        return self._config['transport']

    @property
    def scheme(self):
        if self.transport == configuration.NBD:
            return nbd.SCHEME
        return 'https' if self._config['cert_file'] else 'http'

    @property
    def url(self):
        """The URL with its token: for the librbd source spec only."""
        if self.transport == configuration.NBD:
            return nbd.uri(self.address, self.port, self.export_id)
        return configuration.export_url(self.scheme, self.address, self.port,
                                        self._config['token'])

    @property
    def masked_url(self):
        """The URL with its token masked: for logs and messages."""
        if self.transport == configuration.NBD:
            # no secret in it: a client certificate is what lets one in
            return self.url
        return configuration.export_url(
            self.scheme, self.address, self.port, configuration.MASK)

    def status(self):
        """Return the child's last status.

        :returns: a dict with pid, phase, address, port, started_at,
                  bytes_served and requests; {} if there is none.
        """
        return worker.read_status(self.status_path)

    @property
    def pid(self):
        return self._process.pid

    def running(self):
        """:returns: whether the exporter process is alive."""
        return self._process.running()

    def stop(self, timeout=10):
        """Stop the exporter (SIGTERM, then SIGKILL) and remove its files.

        :param timeout: seconds to wait after each signal.
        :raises ExporterError: when the process does not die; its files
            are kept then.
        """
        if not self._process.stop(timeout):
            raise exception.ExporterError(
                export_id=self.export_id,
                reason=_('process %d did not stop') % self.pid)
        child._remove(self.config_path, self.status_path, self.log_path)
        LOG.info('Stopped exporter %(pid)d of %(id)s.',
                 {'pid': self.pid, 'id': self.export_id})
