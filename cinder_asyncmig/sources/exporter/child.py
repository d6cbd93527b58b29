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

"""The exporter child process: serve one LUN until told to stop.

``python -m cinder_asyncmig.sources.exporter --config FILE`` runs
:func:`main`. It reads the configuration its parent wrote (0600, token
included), binds the first free port of the range (or the recorded one),
serves over HTTP (:mod:`.httpserver`) or hands the socket to qemu-nbd
(:mod:`.nbd`), and reports to a status file that never holds the token.
"""

import argparse
import errno
import logging as std_logging
import os
import signal
import socket
import ssl
import sys
import threading
import time

from oslo_log import log as logging

from cinder_asyncmig.engine import worker
from cinder_asyncmig import exception
from cinder_asyncmig.sources.exporter import configuration
from cinder_asyncmig.sources.exporter import httpserver
from cinder_asyncmig.sources.exporter import nbd

LOG = logging.getLogger(__name__)

SERVING = 'serving'
FAILED = 'failed'
STOPPED = 'stopped'
# why a child could not start, for the parent to map to an exception
PORT_TAKEN = 'port_taken'
NO_FREE_PORT = 'no_free_port'
BAD_CONFIG = 'bad_config'
OPEN_FAILED = 'open_failed'
_REPORT_INTERVAL = 1.0


# -- the child process -------------------------------------------------------

def _paths(state_dir, export_id):
    base = os.path.join(state_dir, 'exporter.%s' % export_id)
    return base + '.conf', base + '.json', base + '.log'


def _recorded_ports(state_dir):
    """Ports recorded for the exports in ``state_dir``, running or not."""
    ports = set()
    try:
        names = os.listdir(state_dir)
    except FileNotFoundError:
        return ports
    for name in names:
        if name.startswith('exporter.') and name.endswith('.conf'):
            try:
                port = configuration.read_private_json(
                    os.path.join(state_dir, name)).get('port')
            except (OSError, ValueError, exception.ExporterInvalid):
                continue
            if port:
                ports.add(port)
    return ports


def _remove(*paths):
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _serving_status(server, config, started_at):
    return {'pid': os.getpid(), 'export_id': config['export_id'],
            'phase': SERVING, 'path': config['path'],
            'address': server.address, 'port': server.port,
            'scheme': server.scheme, 'size': server.lun.size(),
            'started_at': started_at, 'updated_at': time.time(),
            'bytes_served': server.bytes_served,
            'requests': server.requests_served}


def _report(server, config, status_path, started_at, stopping):
    last = None
    while not stopping.wait(_REPORT_INTERVAL):
        if (server.bytes_served, server.requests_served) != last:
            last = (server.bytes_served, server.requests_served)
            worker.write_status(status_path,
                                _serving_status(server, config, started_at))


def _ports_to_try(config):
    """The recorded port, or the range less the other exports' ports."""
    if config['port']:
        return [config['port']]
    ports = [p for p in range(config['port_min'], config['port_max'] + 1)
             if p not in config['reserved_ports']]
    if not ports:
        raise httpserver.BindError(errno.EADDRINUSE, 'every port of %d-%d is '
                                   'recorded for another export' %
                                   (config['port_min'], config['port_max']))
    return ports


def _serve(config, status_path):
    started_at = time.time()
    ports = _ports_to_try(config)
    server = httpserver.make_server(
        config['path'], config['token'], config['bind_address'], ports,
        config['cert_file'], config['key_file'], config['max_bytes_per_sec'],
        config['max_connections'], config['timeout'], config['rbd'])
    try:
        stopping = threading.Event()

        def stop(signum, frame):
            LOG.info('Signal %(sig)d: stopping.', {'sig': signum})
            stopping.set()
            # stop() waits for serve(): not from its own thread
            threading.Thread(target=server.stop, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        worker.write_status(status_path,
                            _serving_status(server, config, started_at))
        LOG.info('Exporting %(path)s at %(url)s.',
                 {'path': config['path'],
                  'url': configuration.export_url(
                      server.scheme, config['bind_address'], server.port,
                      configuration.MASK)})
        reporter = threading.Thread(
            target=_report, daemon=True,
            args=(server, config, status_path, started_at, stopping))
        reporter.start()
        server.serve()
        stopping.set()
        reporter.join()
        status = _serving_status(server, config, started_at)
        status['phase'] = STOPPED
        worker.write_status(status_path, status)
    finally:
        server.close()


def _listening_socket(address):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # rebind at once after a restart, as the HTTP server does
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(httpserver._LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _serve_nbd(config, status_path, config_path):
    """Serve with qemu-nbd on a port chosen as for HTTP, until a signal."""
    started_at = time.time()
    sock = httpserver._bind_first_free(
        _listening_socket, config['bind_address'], _ports_to_try(config))
    port = sock.getsockname()[1]
    log_path = os.path.splitext(config_path)[0] + '.log'
    with sock, open(log_path, 'ab') as log:
        server = nbd.start(config, sock, log)
    try:
        # qemu-nbd exits at once on unusable TLS files or a bad LUN
        nbd.wait_serving(config['bind_address'], port, server,
                         config['timeout'])
    except OSError as exc:
        server.kill()
        server.wait()
        raise OSError(errno.EIO, '%s; see %s' % (exc, log_path))
    stopping = threading.Event()

    def stop(signum, frame):
        LOG.info('Signal %(sig)d: stopping.', {'sig': signum})
        stopping.set()
        server.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = {'pid': os.getpid(), 'export_id': config['export_id'],
              'phase': SERVING, 'path': config['path'],
              'address': config['bind_address'], 'port': port,
              'scheme': nbd.SCHEME, 'server_pid': server.pid,
              'started_at': started_at, 'updated_at': time.time()}
    worker.write_status(status_path, status)
    LOG.info('Exporting %(path)s at %(url)s with qemu-nbd %(pid)d.',
             {'path': config['path'], 'pid': server.pid,
              'url': nbd.uri(config['bind_address'], port,
                             config['export_id'])})
    code = server.wait()
    status.update(updated_at=time.time(),
                  phase=STOPPED if stopping.is_set() else FAILED)
    if not stopping.is_set():
        status['error'] = 'qemu-nbd exited with code %d' % code
    worker.write_status(status_path, status)


def _fail(status_path, config, kind, error):
    LOG.error('Cannot export: %(error)s', {'error': error})
    worker.write_status(status_path, {
        'pid': os.getpid(), 'phase': FAILED, 'error_kind': kind,
        'error': configuration.mask_token(str(error), config.get('token')),
        'port': config.get('port'),
        'address': config.get('bind_address')})
    return 1


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Serve one LUN read-only over HTTP for librbd.')
    parser.add_argument('--config', required=True,
                        help='JSON configuration written by the parent '
                             '(mode 0600)')
    args = parser.parse_args(argv)
    std_logging.basicConfig(
        level=std_logging.INFO, stream=sys.stderr,
        format='%(asctime)s %(process)d %(levelname)s %(name)s %(message)s')
    status_path = os.path.splitext(args.config)[0] + '.json'
    # cheroot serves fd 3 whenever LISTEN_PID is set: socket activation
    # variables inherited from a service manager are cinder-volume's
    for name in ('LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES'):
        os.environ.pop(name, None)
    config = {}
    try:
        config = configuration.check_config(
            configuration.read_private_json(args.config))
    except (OSError, ValueError, exception.ExporterInvalid) as exc:
        return _fail(status_path, config, BAD_CONFIG, exc)
    try:
        if config['transport'] == configuration.NBD:
            _serve_nbd(config, status_path, args.config)
        else:
            _serve(config, status_path)
    except httpserver.BindError as exc:
        # a recorded port is part of the URL librbd keeps: no other will do
        kind = PORT_TAKEN if config['port'] else NO_FREE_PORT
        return _fail(status_path, config, kind, exc)
    except (OSError, ssl.SSLError) as exc:
        return _fail(status_path, config, OPEN_FAILED, exc)
    LOG.info('Stopped.')
    return 0
