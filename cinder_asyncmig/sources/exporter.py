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

"""A read-only exporter of one LUN, for librbd's http (or nbd) stream.

An import-only live migration with the source spec
``{"type": "raw", "stream": {"type": "http", "url": URL}}`` reads every
block it has not copied yet with a ``Range`` GET on URL. This module serves
one LUN (a block device or a regular file, opened ``O_RDONLY``) that way:

* GET and HEAD only; any other method gets 405. One path only,
  ``/lun/<token>``: a wrong or missing token gets 403, any other path 404.
  librbd 16.2 keeps only the path of the URL (it drops a ``?query``,
  ``;params`` and ``#fragment``), so the secret is a path segment.
* HTTP/1.1 keep-alive with pipelining (librbd queues requests on one
  connection), single byte ranges (``a-b``, ``a-``, ``-n``). Multiple ranges
  in one request are not supported and get 416, as malformed ones do.
* At most ``max_connections`` connections are served at once. The server
  stops accepting while they are all busy: further connections wait in the
  kernel's listen queue, and are served when a connection closes. An idle
  keep-alive connection is closed after ``timeout`` seconds, so waiting
  clients always get their turn; librbd reconnects transparently.
* A request head must fit in :data:`MAX_HEAD_BYTES` and arrive within
  ``timeout`` seconds, and every write must finish within ``timeout``
  seconds, so a slow or broken client cannot hold a connection forever.
* An optional TLS wrap (TLS 1.2 or newer) and an optional read-bandwidth
  cap shared by all connections (:class:`TokenBucket`).

The server runs as a child process of its own session, like the copy
worker (:mod:`cinder_asyncmig.engine.worker`), so cinder-volume can stop it
by pid, and a restarted cinder-volume adopts it or starts it again.
:class:`Exporter` is the parent-side handle. The parent writes the child's
configuration (token included) to a 0600 file in its state directory; the
child answers with a status file that never holds the token. librbd
stores the URL in the destination image's migration header, so a restart
reuses the recorded token and port.

With ``transport`` ``nbd`` the child serves through qemu-nbd instead, on
the port it binds (see :mod:`~cinder_asyncmig.sources.nbd`); everything
around it (configuration, status, adoption, restart with the same port)
is the same.

To measure the accuracy of the bandwidth cap, run an exporter with
``max_bytes_per_sec`` set and call :func:`measure_read_rate` on its URL for
30 s with a few connections.
"""

import argparse
import errno
import hmac
from http import client as http_client
from http import server as http_server
import io
import ipaddress
import logging as std_logging
import os
import re
import secrets
import signal
import socket
import socketserver
import ssl
import stat
import subprocess
import sys
import threading
import time
import traceback
from urllib import parse as urlparse

from cinder.i18n import _
from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import excutils
from oslo_utils import units

from cinder_asyncmig.engine import worker
from cinder_asyncmig import exception
from cinder_asyncmig.sources import nbd

LOG = logging.getLogger(__name__)

PATH_PREFIX = '/lun'
MASK = '***'
MAX_HEAD_BYTES = 16 * units.Ki
CHUNK_BYTES = units.Mi
MIN_CHUNK_BYTES = 64 * units.Ki
TOKEN_BYTES = 32
DEFAULT_BIND_ADDRESS = '127.0.0.1'
DEFAULT_PORT_RANGE = (10800, 10899)
DEFAULT_MAX_CONNECTIONS = 16
DEFAULT_TIMEOUT = 30
DEFAULT_START_TIMEOUT = 15

SERVING = 'serving'
FAILED = 'failed'
STOPPED = 'stopped'
# why a child could not start, for the parent to map to an exception
PORT_TAKEN = 'port_taken'
NO_FREE_PORT = 'no_free_port'
BAD_CONFIG = 'bad_config'
OPEN_FAILED = 'open_failed'

_MODULE = 'cinder_asyncmig.sources.exporter'
_REPORT_INTERVAL = 1.0
_SLOT_WAIT = 0.5
_LISTEN_BACKLOG = 64
_EXPORT_ID = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$')
# what librbd's URL parser accepts in a path segment and in a host name
_TOKEN = re.compile(r'^[A-Za-z0-9_-]{16,}$')
_HOST_NAME = re.compile(r'^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$')
_RANGE = re.compile(r'^bytes=(\d{0,19})-(\d{0,19})$')


def generate_token():
    """Return a new unguessable export token (URL-safe, 256 bits).

    :returns: the token, a string safe for a URL path segment.
    """
    return secrets.token_urlsafe(TOKEN_BYTES)


def mask_token(text, token):
    """Return ``text`` with every occurrence of ``token`` masked."""
    if not token or not isinstance(text, str):
        return text
    return text.replace(token, MASK)


def export_url(scheme, address, port, token):
    """The URL of an export, the form librbd's http stream keeps intact."""
    return '%s://%s:%d%s/%s' % (scheme, address, port, PATH_PREFIX, token)


HTTP = 'http'
NBD = 'nbd'


def start_options(configuration):
    """Return :meth:`Exporter.start` keyword arguments from a backend.

    :param configuration: a backend configuration (or option group) with
                          :data:`exporter_opts` registered.
    :returns: a dict of keyword arguments.
    """
    return {
        'bind_address': configuration.async_migration_exporter_bind_address,
        'port_range': (configuration.async_migration_exporter_port_min,
                       configuration.async_migration_exporter_port_max),
        'cert_file': configuration.async_migration_exporter_cert_file,
        'key_file': configuration.async_migration_exporter_key_file,
        'max_bytes_per_sec':
            configuration.async_migration_exporter_max_bytes_per_sec,
        'max_connections':
            configuration.async_migration_exporter_max_connections,
        'timeout': configuration.async_migration_exporter_timeout,
        'nbd_tls_dir': configuration.async_migration_exporter_nbd_tls_dir,
        'nbd_identities':
            configuration.async_migration_exporter_nbd_client_identities,
    }


# -- configuration -----------------------------------------------------------

def _invalid(reason):
    return exception.ExporterInvalid(reason=reason)


def _check_export_id(export_id):
    if not isinstance(export_id, str) or not _EXPORT_ID.match(export_id):
        raise _invalid(_('the export id must be 1 to 128 letters, digits, '
                         '".", "_" or "-", not starting with a sign'))


def _check_bind_address(address):
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        if not _HOST_NAME.match(address or ''):
            raise _invalid(_('the bind address must be an IPv4 address or '
                             'a host name'))
        return
    if ip.version != 4:
        raise _invalid(_('librbd 16.2 cannot parse an IPv6 address in a '
                         'URL; use an IPv4 address or a host name'))
    if ip.is_unspecified:
        raise _invalid(_('the exporter does not listen on the wildcard '
                         'address; give the address librbd clients reach '
                         'it at'))


def _check_port_range(port_range):
    try:
        low, high = (int(p) for p in port_range)
    except (TypeError, ValueError):
        raise _invalid(_('the port range must be two port numbers'))
    if not 1 <= low <= high <= 65535:
        raise _invalid(_('the port range must satisfy 1 <= min <= max <= '
                         '65535'))
    return low, high


def _check_limits(config):
    if (config['max_bytes_per_sec'] < 0 or config['max_connections'] < 1 or
            config['timeout'] <= 0):
        raise _invalid(_('max_bytes_per_sec must be >= 0, '
                         'max_connections >= 1 and timeout > 0'))
    if bool(config['cert_file']) != bool(config['key_file']):
        raise _invalid(_('TLS needs both a certificate and a key file'))


def make_config(export_id, path, token, bind_address=DEFAULT_BIND_ADDRESS,
                port_range=DEFAULT_PORT_RANGE, cert_file=None, key_file=None,
                max_bytes_per_sec=0,
                max_connections=DEFAULT_MAX_CONNECTIONS,
                timeout=DEFAULT_TIMEOUT, port=None, reserved_ports=(),
                rbd=None, transport=HTTP, nbd_tls_dir=None,
                nbd_identities=()):
    """Return a checked exporter configuration (a dict, token included).

    :param path: the LUN, or the ceph.conf of an RBD LUN.
    :param rbd: for an RBD image, ``{'pool', 'image', 'user'}`` and
                optionally ``'cluster'``; ``path`` is then the
                configuration file of its cluster.
    :param port: the port to use; only this one is tried when given.
    :param reserved_ports: ports of the range a new export must not take.
    :param transport: ``http``, or ``nbd`` for qemu-nbd (see
                      :mod:`~cinder_asyncmig.sources.nbd`), which needs
                      ``nbd_tls_dir`` and serves no RBD LUN.
    :param nbd_identities: client certificate names qemu-nbd lets in;
                           empty for any certificate of the CA.
    :raises ExporterInvalid: when a setting cannot work.
    """
    _check_export_id(export_id)
    if not isinstance(path, str) or not os.path.isabs(path):
        raise _invalid(_('the LUN path must be absolute'))
    if not isinstance(token, str) or not _TOKEN.match(token):
        raise _invalid(_('the token must be at least 16 URL-safe '
                         'characters; use generate_token()'))
    _check_bind_address(bind_address)
    low, high = _check_port_range(port_range)
    config = {'export_id': export_id, 'path': path, 'token': token,
              'bind_address': bind_address, 'port_min': low,
              'port_max': high, 'port': port, 'cert_file': cert_file,
              'key_file': key_file,
              'max_bytes_per_sec': int(max_bytes_per_sec),
              'max_connections': int(max_connections),
              'timeout': float(timeout),
              'reserved_ports': sorted(int(p) for p in reserved_ports),
              'rbd': _check_rbd(rbd), 'transport': transport,
              'nbd_tls_dir': nbd_tls_dir,
              'nbd_identities': [str(i) for i in nbd_identities or ()]}
    _check_limits(config)
    if transport not in (HTTP, NBD):
        raise _invalid(_('the transport must be %(http)s or %(nbd)s') % {
            'http': HTTP, 'nbd': NBD})
    if transport == NBD:
        problem = nbd.tls_dir_problem(nbd_tls_dir)
        if problem or config['rbd']:
            raise _invalid(problem or _('an RBD LUN is served over http '
                                        'only'))
    return config


def _check_rbd(rbd):
    if rbd is None:
        return None
    if not isinstance(rbd, dict) or not all(
            isinstance(rbd.get(k), str) and rbd[k]
            for k in ('pool', 'image', 'user')) or set(rbd) - {
                'pool', 'image', 'user', 'cluster'}:
        raise _invalid(_('an RBD LUN needs its pool, image and user '
                         '(and may name its cluster), nothing else'))
    return dict(rbd)


def check_config(config):
    """Check a configuration read back from a file; return it."""
    config = dict(config)
    try:
        config['port_range'] = (config.pop('port_min'),
                                config.pop('port_max'))
        return make_config(**config)
    except (KeyError, TypeError) as exc:
        raise _invalid(_('unexpected configuration keys: %s') % exc)


def write_private_json(path, data, exclusive=False):
    """Write a JSON file only its owner may read, atomically.

    :param exclusive: fail with FileExistsError if ``path`` exists.
    """
    tmp = '%s.%d.tmp' % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, 'w') as f:
            fd = None
            f.write(jsonutils.dumps(data))
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if fd is not None:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_private_json(path):
    """Read a JSON file only its owner may read.

    :raises ExporterInvalid: when others may read or write the file.
    """
    with open(path) as f:
        info = os.fstat(f.fileno())
        if info.st_mode & 0o077 or info.st_uid != os.geteuid():
            raise _invalid(_('%s must be owned by this user and have mode '
                             '0600') % path)
        return jsonutils.loads(f.read())


# -- serving ----------------------------------------------------------------

class RangeNotSatisfiable(ValueError):
    """The Range header names no single byte range of the LUN."""


def parse_range(header, size):
    """Return the byte range a ``Range`` header asks for.

    Only one range per request is supported (librbd sends one); several
    ranges, another unit or a malformed header are not satisfiable.

    :param header: the header's value, or None when there is none.
    :param size: the LUN's size in bytes.
    :returns: None for the whole LUN, else ``(first, last)`` inclusive.
    :raises RangeNotSatisfiable: when the header names no range of the LUN.
    """
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        raise RangeNotSatisfiable(header)
    first, last = match.groups()
    if not first and not last:
        raise RangeNotSatisfiable(header)
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - suffix), size - 1
    first = int(first)
    if first >= size:
        raise RangeNotSatisfiable(header)
    if not last:
        return first, size - 1
    last = int(last)
    if last < first:
        raise RangeNotSatisfiable(header)
    return first, min(last, size - 1)


class TokenBucket(object):
    """A bandwidth cap shared by every connection of one exporter.

    Tokens are bytes. A reservation may take the bucket below zero, and
    the caller then sleeps until that debt is paid back: chunks larger
    than the burst still pass, and the bytes released by time ``t`` never
    exceed ``burst + rate * t`` whatever the number of connections. Under
    a steady demand the long-run rate is the configured one.
    """

    def __init__(self, rate, burst, clock=time.monotonic, sleep=time.sleep):
        """Create a full bucket.

        :param rate: bytes per second, > 0.
        :param burst: bytes that may pass at once after an idle period.
        :param clock: returns monotonic seconds.
        :param sleep: waits a number of seconds.
        """
        if rate <= 0 or burst <= 0:
            raise ValueError('rate and burst must be positive')
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self, amount):
        """Take ``amount`` tokens now.

        :returns: the seconds the caller must wait before using them.
        """
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._last)
            self._tokens = min(self.burst,
                               self._tokens + elapsed * self.rate)
            self._last = now
            self._tokens -= amount
            return max(0.0, -self._tokens / self.rate)

    def consume(self, amount):
        """Wait until ``amount`` bytes may be sent."""
        wait = self.reserve(amount)
        if wait > 0:
            self._sleep(wait)


def make_bucket(max_bytes_per_sec, clock=time.monotonic, sleep=time.sleep):
    """Return the bucket and the chunk size for a cap (0: no bucket).

    The chunk is about 1/20 s of data, so the cap holds over short
    windows too; the burst is 1/10 s of data, at least one chunk.

    :returns: ``(bucket or None, chunk_bytes)``.
    """
    if not max_bytes_per_sec:
        return None, CHUNK_BYTES
    chunk = min(CHUNK_BYTES, max(MIN_CHUNK_BYTES, max_bytes_per_sec // 20))
    burst = max(chunk, max_bytes_per_sec // 10)
    return TokenBucket(max_bytes_per_sec, burst, clock, sleep), chunk


class Lun(object):
    """One LUN, opened read-only."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        mode = os.fstat(self.fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
            os.close(self.fd)
            raise IsADirectoryError(
                'not a block device or regular file: %s' % path)

    def size(self):
        # works for block devices, where st_size is 0
        return os.lseek(self.fd, 0, os.SEEK_END)

    def read(self, offset, length):
        """Read up to ``length`` bytes at ``offset``; short only at EOF."""
        parts = []
        while length > 0:
            data = os.pread(self.fd, length, offset)
            if not data:
                break
            parts.append(data)
            offset += len(data)
            length -= len(data)
        return b''.join(parts)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class RBDLun(object):
    """One RBD image, opened read-only with librbd.

    For a source in another Ceph cluster that this host reaches as a
    client (a hypervisor of that cluster would): the configuration file
    names its monitors and the keyring of ``user``.
    """

    def __init__(self, conf, pool, image, user, cluster=None):
        # only the bindings, and only in the child that serves the image
        import rados
        import rbd
        self.path = '%s/%s' % (pool, image)
        self._client = rados.Rados(rados_id=user, clustername=cluster,
                                   conffile=conf)
        try:
            self._client.connect(timeout=30)
            self._ioctx = self._client.open_ioctx(pool)
            try:
                self._image = rbd.Image(self._ioctx, image, read_only=True)
            except Exception:
                self._ioctx.close()
                raise
        except (rados.Error, rbd.Error) as exc:
            self._client.shutdown()
            raise OSError(errno.EIO, 'cannot open RBD image %s: %s' % (
                self.path, type(exc).__name__))
        except Exception:
            self._client.shutdown()
            raise
        self._size = self._image.size()
        # librbd copies the source's current data: a client that has it
        # open may write it (a read-only open, as this one, watches not)
        watchers = list(self._image.watchers_list())
        if watchers:
            self.close()
            raise OSError(errno.EBUSY,
                          'RBD image %s is open by %d client(s); detach it '
                          'first' % (self.path, len(watchers)))

    def size(self):
        return self._size

    def read(self, offset, length):
        length = max(0, min(length, self._size - offset))
        return self._image.read(offset, length) if length else b''

    def close(self):
        if self._client is not None:
            self._image.close()
            self._ioctx.close()
            self._client.shutdown()
            self._client = None


def open_lun(path, rbd=None):
    """Open the LUN of an export: a file or device, or an RBD image."""
    if rbd:
        return RBDLun(path, **rbd)
    return Lun(path)


class HeadTooLarge(Exception):
    """A request head went over :data:`MAX_HEAD_BYTES`."""


class HeadReader(object):
    """Reads request heads off a connection, bounded in size and time.

    Bytes after a head stay buffered for the next request: librbd
    pipelines its requests on one connection.
    """

    def __init__(self, sock, limit=MAX_HEAD_BYTES, clock=time.monotonic):
        self._sock = sock
        self._limit = limit
        self._clock = clock
        self._buffer = b''

    def _head_end(self):
        # a robust server ignores empty lines before a request line
        self._buffer = self._buffer.lstrip(b'\r\n')
        ends = [i for i in (self._buffer.find(b'\n\r\n'),
                            self._buffer.find(b'\n\n')) if i >= 0]
        if not ends:
            return None
        end = min(ends)
        return end + (3 if self._buffer[end + 1:end + 2] == b'\r' else 2)

    def read_head(self, timeout):
        """Return the next request head, or None when the peer closed.

        :param timeout: seconds for the whole head to arrive, idle time
                        before its first byte included.
        :raises HeadTooLarge: when the head exceeds the limit.
        :raises TimeoutError: when it does not arrive in time.
        """
        deadline = self._clock() + timeout
        while True:
            end = self._head_end()
            if end is not None and end <= self._limit:
                head, self._buffer = self._buffer[:end], self._buffer[end:]
                return head
            if len(self._buffer) > self._limit or end is not None:
                raise HeadTooLarge()
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise TimeoutError('request head timed out')
            self._sock.settimeout(remaining)
            data = self._sock.recv(self._limit + 4)
            if not data:
                return None
            self._buffer += data


class LunRequestHandler(http_server.BaseHTTPRequestHandler):
    """Answers GET and HEAD on ``/lun/<token>``; nothing else."""

    protocol_version = 'HTTP/1.1'
    # errors found before the version is parsed still get a status line
    default_request_version = 'HTTP/1.0'
    server_version = 'cinder-asyncmig-exporter'
    error_message_format = '%(code)d %(message)s\n'
    error_content_type = 'text/plain; charset=utf-8'
    disable_nagle_algorithm = True

    def version_string(self):
        return self.server_version

    def send_response_only(self, code, message=None):
        # http.server leaves out the status line and headers of an answer
        # to HTTP/0.9; this server answers HTTP/1.x to everything
        if self.request_version == 'HTTP/0.9':
            self.request_version = self.default_request_version
        super(LunRequestHandler, self).send_response_only(code, message)

    def setup(self):
        super(LunRequestHandler, self).setup()
        # heads are read off the socket itself; an open makefile() reader
        # would keep the connection open after close()
        self.rfile.close()
        self.rfile = io.BytesIO()
        self._reader = HeadReader(self.connection)

    def handle_one_request(self):
        self.close_connection = True
        try:
            head = self._reader.read_head(self.server.client_timeout)
        except HeadTooLarge:
            self.requestline = ''
            self.command = None
            self.request_version = self.default_request_version
            self.send_error(431, 'Request head too large')
            return
        except OSError as exc:  # a timeout, a reset: drop the connection
            LOG.debug('Closing connection from %(client)s: %(error)s',
                      {'client': self.address_string(),
                       'error': type(exc).__name__})
            return
        if head is None:
            return
        self.connection.settimeout(self.server.client_timeout)
        self.rfile = io.BytesIO(head)
        self.raw_requestline = self.rfile.readline()
        try:
            if self.parse_request():
                self._answer()
            self.wfile.flush()
        except OSError as exc:
            self.close_connection = True
            LOG.debug('Connection from %(client)s failed: %(error)s',
                      {'client': self.address_string(),
                       'error': type(exc).__name__})

    def _answer(self):
        if len(self.requestline.split()) != 3:
            self.send_error(400, 'Request line without an HTTP version')
        elif not self.request_version.startswith('HTTP/1.'):
            self.send_error(505, 'Only HTTP/1.x is served')
        elif self.command not in ('GET', 'HEAD'):
            self._send_empty(405, {'Allow': 'GET, HEAD'}, close=True)
        else:
            status = self._route()
            if status:
                self._send_empty(status)
            else:
                self._send_lun()

    def _route(self):
        path = self.path.split('?', 1)[0]
        if path != PATH_PREFIX and not path.startswith(PATH_PREFIX + '/'):
            LOG.info('No export at the path %(client)s asked for.',
                     {'client': self.address_string()})
            return 404
        given = path[len(PATH_PREFIX) + 1:].encode('latin-1')
        if not hmac.compare_digest(given, self.server.token_bytes):
            LOG.warning('Refused a request from %(client)s: missing or '
                        'wrong token.', {'client': self.address_string()})
            return 403
        return None

    def _has_body(self):
        length = self.headers.get('Content-Length', '0').strip()
        return (length != '0' or
                self.headers.get('Transfer-Encoding') is not None)

    def _send_empty(self, code, headers=None, close=False):
        self.send_response(code)
        for name, value in sorted((headers or {}).items()):
            self.send_header(name, value)
        self.send_header('Content-Length', '0')
        self._end_headers(close)

    def _end_headers(self, close):
        # an unread request body would be taken for the next request
        if close or self._has_body():
            self.send_header('Connection', 'close')
        elif (self.request_version == 'HTTP/1.0' and
                not self.close_connection):
            self.send_header('Connection', 'keep-alive')
        self.end_headers()

    def _send_lun(self):
        lun = self.server.lun
        size = lun.size()
        if len(self.headers.get_all('Range') or ()) > 1:
            span = ()
        else:
            try:
                span = parse_range(self.headers.get('Range'), size)
            except RangeNotSatisfiable:
                span = ()
        if span == ():
            self._send_empty(416, {'Content-Range': 'bytes */%d' % size})
            return
        first, last = span or (0, size - 1)
        length = last - first + 1
        self.send_response(206 if span else 200)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Accept-Ranges', 'bytes')
        self.send_header('Content-Length', str(length))
        if span:
            self.send_header('Content-Range',
                             'bytes %d-%d/%d' % (first, last, size))
        self._end_headers(close=False)
        if self.command == 'GET':
            self._send_bytes(first, length)

    def _send_bytes(self, offset, length):
        server = self.server
        end = offset + length
        while offset < end:
            want = min(server.chunk_bytes, end - offset)
            if server.bucket is not None:
                server.bucket.consume(want)
            data = server.lun.read(offset, want)
            if not data:
                # the LUN shrank: the promised length cannot be kept
                LOG.warning('The exported LUN ended at %(offset)d while '
                            'serving %(client)s; closing the connection.',
                            {'offset': offset,
                             'client': self.address_string()})
                self.close_connection = True
                return
            self.wfile.write(data)
            offset += len(data)
            server.count_bytes(len(data))

    def log_request(self, code='-', size='-'):
        self.server.count_request()
        LOG.debug('%(client)s "%(request)s" %(code)s',
                  {'client': self.address_string(),
                   'request': self.server.mask(self.requestline),
                   'code': code})

    def log_message(self, format, *args):
        LOG.info('Request from %(client)s: %(message)s',
                 {'client': self.address_string(),
                  'message': self.server.mask(format % args)})


class LunServer(socketserver.ThreadingTCPServer):
    """Serves one LUN at ``/lun/<token>``, one thread per connection."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True  # rebind at once after a restart
    request_queue_size = _LISTEN_BACKLOG

    def __init__(self, address, lun, token, max_connections, timeout,
                 tls_context=None, bucket=None, chunk_bytes=CHUNK_BYTES):
        self.lun = lun
        self.token = token
        self.token_bytes = token.encode('latin-1')
        self.client_timeout = timeout
        self.tls_context = tls_context
        self.bucket = bucket
        self.chunk_bytes = chunk_bytes
        self.slots = threading.BoundedSemaphore(max_connections)
        self.bytes_served = 0
        self.requests = 0
        self.connections = 0
        self.unexpected_errors = 0
        self._counter_lock = threading.Lock()
        self._listening = False
        super(LunServer, self).__init__(address, LunRequestHandler)

    @property
    def scheme(self):
        return 'https' if self.tls_context else 'http'

    @property
    def port(self):
        return self.server_address[1]

    def mask(self, text):
        return mask_token(text, self.token)

    def count_bytes(self, amount):
        with self._counter_lock:
            self.bytes_served += amount

    def count_request(self):
        with self._counter_lock:
            self.requests += 1

    def get_request(self):
        # while every slot is busy, leave connections in the listen queue
        if not self.slots.acquire(timeout=_SLOT_WAIT):
            raise BlockingIOError('every connection slot is busy')
        try:
            request = super(LunServer, self).get_request()
        except BaseException:
            self.slots.release()
            raise
        with self._counter_lock:
            self.connections += 1
        return request

    def finish_request(self, request, client_address):
        request.settimeout(self.client_timeout)
        if self.tls_context is None:
            self.RequestHandlerClass(request, client_address, self)
            return
        try:
            conn = self.tls_context.wrap_socket(request, server_side=True)
        except OSError as exc:
            LOG.info('TLS handshake with %(client)s failed: %(error)s',
                     {'client': client_address[0],
                      'error': type(exc).__name__})
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            conn.close()

    def shutdown_request(self, request):
        try:
            super(LunServer, self).shutdown_request(request)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address):
        with self._counter_lock:
            self.unexpected_errors += 1
        LOG.error('Unexpected error while serving %(client)s: %(trace)s',
                  {'client': client_address[0],
                   'trace': self.mask(traceback.format_exc())})

    def server_activate(self):
        super(LunServer, self).server_activate()
        self._listening = True

    def server_close(self):
        super(LunServer, self).server_close()
        # a server that failed to bind leaves the LUN to the next port
        if self._listening:
            self.lun.close()


def tls_context(cert_file, key_file):
    """Return a server TLS context refusing anything older than TLS 1.2."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class BindError(OSError):
    """None of the ports to try could be bound."""


def _bind_first_free(factory, address, ports):
    for port in ports:
        try:
            return factory((address, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise BindError(errno.EADDRINUSE, 'no free port in %d-%d on %s' %
                    (ports[0], ports[-1], address))


def make_server(path, token, bind_address=DEFAULT_BIND_ADDRESS, ports=(0,),
                cert_file=None, key_file=None, max_bytes_per_sec=0,
                max_connections=DEFAULT_MAX_CONNECTIONS,
                timeout=DEFAULT_TIMEOUT, rbd=None):
    """Open a LUN and return a :class:`LunServer` listening for it.

    The caller runs ``serve_forever()`` and, at the end, ``shutdown()``
    and ``server_close()``.

    :param ports: ports to try in order; the first free one is taken.
    :raises BindError: when no port is free.
    :raises OSError: when the LUN cannot be opened or TLS set up.
    """
    context = tls_context(cert_file, key_file) if cert_file else None
    bucket, chunk = make_bucket(max_bytes_per_sec)
    lun = open_lun(path, rbd)
    try:
        return _bind_first_free(
            lambda addr: LunServer(addr, lun, token, max_connections,
                                   timeout, context, bucket, chunk),
            bind_address, list(ports))
    except BaseException:
        with excutils.save_and_reraise_exception():
            lun.close()


def measure_read_rate(url, seconds, connections=2, chunk=4 * units.Mi,
                      ssl_context=None):
    """Read an export with range GETs for a while; return bytes/s.

    For benchmarks of the bandwidth cap: every connection reads
    consecutive ``chunk`` ranges (wrapping at the end of the LUN) over
    one keep-alive connection until ``seconds`` have passed, at least one.

    :returns: bytes read by all connections per second of wall time.
    """
    parsed = urlparse.urlsplit(url)
    totals = [0] * connections
    errors = []

    def connect():
        if parsed.scheme == 'https':
            return http_client.HTTPSConnection(
                parsed.hostname, parsed.port, timeout=60,
                context=ssl_context)
        return http_client.HTTPConnection(parsed.hostname, parsed.port,
                                          timeout=60)

    def read(index, deadline):
        conn = connect()
        try:
            read_ranges(conn, index, deadline)
        except Exception as exc:
            errors.append(exc)
        finally:
            conn.close()

    def read_ranges(conn, index, deadline):
        conn.request('HEAD', parsed.path)
        response = conn.getresponse()
        response.read()
        size = int(response.getheader('Content-Length'))
        offset = index * chunk % max(size, 1)
        while totals[index] == 0 or time.monotonic() < deadline:
            last = min(offset + chunk, size) - 1
            conn.request('GET', parsed.path,
                         headers={'Range': 'bytes=%d-%d' % (offset,
                                                            last)})
            totals[index] += len(conn.getresponse().read())
            offset = 0 if last + 1 >= size else last + 1

    started = time.monotonic()
    threads = [threading.Thread(target=read,
                                args=(i, started + seconds))
               for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return sum(totals) / (time.monotonic() - started)


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
                port = read_private_json(os.path.join(state_dir,
                                                      name)).get('port')
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
            'address': server.server_address[0], 'port': server.port,
            'scheme': server.scheme, 'size': server.lun.size(),
            'started_at': started_at, 'updated_at': time.time(),
            'bytes_served': server.bytes_served,
            'requests': server.requests}


def _report(server, config, status_path, started_at, stopping):
    last = None
    while not stopping.wait(_REPORT_INTERVAL):
        if (server.bytes_served, server.requests) != last:
            last = (server.bytes_served, server.requests)
            worker.write_status(status_path,
                                _serving_status(server, config, started_at))


def _ports_to_try(config):
    """The recorded port, or the range less the other exports' ports."""
    if config['port']:
        return [config['port']]
    ports = [p for p in range(config['port_min'], config['port_max'] + 1)
             if p not in config['reserved_ports']]
    if not ports:
        raise BindError(errno.EADDRINUSE, 'every port of %d-%d is '
                        'recorded for another export' %
                        (config['port_min'], config['port_max']))
    return ports


def _serve(config, status_path):
    started_at = time.time()
    ports = _ports_to_try(config)
    server = make_server(config['path'], config['token'],
                         config['bind_address'], ports,
                         config['cert_file'], config['key_file'],
                         config['max_bytes_per_sec'],
                         config['max_connections'], config['timeout'],
                         config['rbd'])
    try:
        stopping = threading.Event()

        def stop(signum, frame):
            LOG.info('Signal %(sig)d: stopping.', {'sig': signum})
            stopping.set()
            # shutdown() waits for serve_forever: not from its own thread
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        worker.write_status(status_path,
                            _serving_status(server, config, started_at))
        LOG.info('Exporting %(path)s at %(url)s.',
                 {'path': config['path'],
                  'url': export_url(server.scheme, config['bind_address'],
                                    server.port, MASK)})
        reporter = threading.Thread(
            target=_report, daemon=True,
            args=(server, config, status_path, started_at, stopping))
        reporter.start()
        server.serve_forever(poll_interval=_SLOT_WAIT)
        stopping.set()
        reporter.join()
        status = _serving_status(server, config, started_at)
        status['phase'] = STOPPED
        worker.write_status(status_path, status)
    finally:
        server.server_close()


def _listening_socket(address):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # rebind at once after a restart, as LunServer does
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(_LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _serve_nbd(config, status_path, config_path):
    """Serve with qemu-nbd on a port chosen as for HTTP, until a signal."""
    started_at = time.time()
    sock = _bind_first_free(_listening_socket, config['bind_address'],
                            _ports_to_try(config))
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
        'error': mask_token(str(error), config.get('token')),
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
    config = {}
    try:
        config = check_config(read_private_json(args.config))
    except (OSError, ValueError, exception.ExporterInvalid) as exc:
        return _fail(status_path, config, BAD_CONFIG, exc)
    try:
        if config['transport'] == NBD:
            _serve_nbd(config, status_path, args.config)
        else:
            _serve(config, status_path)
    except BindError as exc:
        # a recorded port is part of the URL librbd keeps: no other will do
        kind = PORT_TAKEN if config['port'] else NO_FREE_PORT
        return _fail(status_path, config, kind, exc)
    except (OSError, ssl.SSLError) as exc:
        return _fail(status_path, config, OPEN_FAILED, exc)
    LOG.info('Stopped.')
    return 0


# -- the parent-side handle --------------------------------------------------

def _private_opener(path, flags):
    return os.open(path, flags, 0o600)


class Exporter(object):
    """Parent-side handle of one exporter child process.

    Files of an export ``ID`` in the state directory: ``exporter.ID.conf``
    (the configuration with the token, 0600, kept until :meth:`stop` so
    that a restart reuses token and port), ``exporter.ID.json`` (the
    child's status, no token) and ``exporter.ID.log``.
    """

    def __init__(self, state_dir, config, pid, popen=None, status=None):
        """Get handles from :meth:`start`, :meth:`adopt`, :meth:`resume`."""
        self.state_dir = state_dir
        self.export_id = config['export_id']
        self.config_path, self.status_path, self.log_path = _paths(
            state_dir, self.export_id)
        self._config = config
        self.pid = pid
        self._popen = popen
        self._status = status or {}

    # -- lifecycle ---------------------------------------------------------

    @classmethod
    def start(cls, state_dir, export_id, path, token,
              bind_address=DEFAULT_BIND_ADDRESS,
              port_range=DEFAULT_PORT_RANGE, cert_file=None, key_file=None,
              max_bytes_per_sec=0, max_connections=DEFAULT_MAX_CONNECTIONS,
              timeout=DEFAULT_TIMEOUT, start_timeout=DEFAULT_START_TIMEOUT,
              rbd=None, transport=HTTP, nbd_tls_dir=None, nbd_identities=()):
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
        config = make_config(export_id, path, token, bind_address,
                             port_range, cert_file, key_file,
                             max_bytes_per_sec, max_connections, timeout,
                             reserved_ports=_recorded_ports(state_dir),
                             rbd=rbd, transport=transport,
                             nbd_tls_dir=nbd_tls_dir,
                             nbd_identities=nbd_identities)
        config_path = _paths(state_dir, export_id)[0]
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        try:
            write_private_json(config_path, config, exclusive=True)
        except FileExistsError:
            raise exception.ExporterConflict(
                export_id=export_id,
                reason=_('its configuration is recorded in %s; restart or '
                         'stop that export first') % state_dir)
        try:
            return cls._launch(state_dir, config, start_timeout)
        except Exception:
            with excutils.save_and_reraise_exception():
                _remove(config_path)

    @classmethod
    def restart(cls, state_dir, export_id,
                start_timeout=DEFAULT_START_TIMEOUT, path=None):
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
        _check_export_id(export_id)
        config_path = _paths(state_dir, export_id)[0]
        try:
            config = check_config(read_private_json(config_path))
        except FileNotFoundError:
            raise exception.ExporterNotFound(export_id=export_id,
                                             state_dir=state_dir)
        if cls.adopt(state_dir, export_id) is not None:
            raise exception.ExporterConflict(
                export_id=export_id,
                reason=_('its exporter is running; adopt it'))
        if path and path != config['path']:
            config['path'] = path
            write_private_json(config_path, config)
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
        _check_export_id(export_id)
        config_path, status_path, _log = _paths(state_dir, export_id)
        status = worker.read_status(status_path)
        pid = status.get('pid')
        if (not pid or status.get('phase') != SERVING or
                not worker.pid_running(pid)):
            return None
        cmdline = worker.pid_cmdline(pid)
        if (_MODULE.encode() not in cmdline or
                config_path.encode() not in cmdline):
            return None
        try:
            config = check_config(read_private_json(config_path))
        except (OSError, ValueError, exception.ExporterInvalid):
            return None
        LOG.info('Adopting exporter %(pid)d of %(id)s.',
                 {'pid': pid, 'id': export_id})
        return cls(state_dir, config, pid, status=status)

    @classmethod
    def resume(cls, state_dir, export_id,
               start_timeout=DEFAULT_START_TIMEOUT):
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
            _remove(*_paths(state_dir, export_id))

    @classmethod
    def _launch(cls, state_dir, config, start_timeout):
        config_path, status_path, log_path = _paths(state_dir,
                                                    config['export_id'])
        _remove(status_path)
        args = [sys.executable, '-m', _MODULE, '--config', config_path]
        with open(log_path, 'ab', opener=_private_opener) as log:
            popen = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log,
                                     start_new_session=True, close_fds=True)
        handle = cls(state_dir, config, popen.pid, popen)
        try:
            handle._status = handle._wait_listening(start_timeout)
            if config['port'] != handle._status['port']:
                config['port'] = handle._status['port']
                write_private_json(config_path, config)
        except Exception:
            with excutils.save_and_reraise_exception():
                handle._kill()
                _remove(status_path, log_path)
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
                if status.get('phase') == SERVING:
                    return status
                if status.get('phase') == FAILED:
                    raise self._start_error(status)
            if not alive:
                raise exception.ExporterStartError(
                    export_id=self.export_id,
                    reason=_('the exporter exited with code %(code)s: '
                             '%(log)s') % {'code': self._popen.returncode,
                                           'log': self._log_tail()})
            if time.monotonic() > deadline:
                raise exception.ExporterStartError(
                    export_id=self.export_id,
                    reason=_('it was not listening after %d s') % timeout)
            time.sleep(0.05)

    def _start_error(self, status):
        if status.get('error_kind') == PORT_TAKEN:
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
        return mask_token(lines[-1] if lines else '', self._config['token'])

    def _kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self._popen is not None:
            self._popen.wait(timeout=30)

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
        if self.transport == NBD:
            return nbd.SCHEME
        return 'https' if self._config['cert_file'] else 'http'

    @property
    def url(self):
        """The URL with its token: for the librbd source spec only."""
        if self.transport == NBD:
            return nbd.uri(self.address, self.port, self.export_id)
        return export_url(self.scheme, self.address, self.port,
                          self._config['token'])

    @property
    def masked_url(self):
        """The URL with its token masked: for logs and messages."""
        if self.transport == NBD:
            # no secret in it: a client certificate is what lets one in
            return self.url
        return export_url(self.scheme, self.address, self.port, MASK)

    def status(self):
        """Return the child's last status.

        :returns: a dict with pid, phase, address, port, started_at,
                  bytes_served and requests; {} if there is none.
        """
        return worker.read_status(self.status_path)

    def running(self):
        """:returns: whether the exporter process is alive."""
        if self._popen is not None:
            return self._popen.poll() is None
        return worker.pid_running(self.pid)

    def stop(self, timeout=10):
        """Stop the exporter (SIGTERM, then SIGKILL) and remove its files.

        :param timeout: seconds to wait after each signal.
        :raises ExporterError: when the process does not die; its files
            are kept then.
        """
        if not worker.terminate(self.pid, self.running, timeout):
            raise exception.ExporterError(
                export_id=self.export_id,
                reason=_('process %d did not stop') % self.pid)
        _remove(self.config_path, self.status_path, self.log_path)
        LOG.info('Stopped exporter %(pid)d of %(id)s.',
                 {'pid': self.pid, 'id': self.export_id})


if __name__ == '__main__':
    sys.exit(main())
