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

"""The exporter's HTTP server: one LUN, read-only, range requests.

GET and HEAD of ``/lun/<token>`` only; pipelined keep-alive requests;
single byte ranges; at most ``max_connections`` served at once (the
others wait in the listen queue); limits on the request head's size and
on every wait; optional TLS; reads paced by a shared
:class:`~cinder_asyncmig.sources.exporter.ratelimit.TokenBucket`.
:func:`measure_read_rate` measures what a reader gets.
"""

import errno
import hmac
from http import client as http_client
from http import server as http_server
import io
import socketserver
import ssl
import threading
import time
import traceback
from urllib import parse as urlparse

from oslo_log import log as logging
from oslo_utils import excutils
from oslo_utils import units

from cinder_asyncmig.sources.exporter import configuration
from cinder_asyncmig.sources.exporter import luns
from cinder_asyncmig.sources.exporter import ranges
from cinder_asyncmig.sources.exporter import ratelimit

LOG = logging.getLogger(__name__)
_SLOT_WAIT = 0.5
_LISTEN_BACKLOG = 64


class HeadTooLarge(Exception):
    """A request head went over :data:`MAX_HEAD_BYTES`."""


class HeadReader(object):
    """Reads request heads off a connection, bounded in size and time.

    Bytes after a head stay buffered for the next request: librbd
    pipelines its requests on one connection.
    """

    def __init__(self, sock, limit=configuration.MAX_HEAD_BYTES,
                 clock=time.monotonic):
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
        if path != configuration.PATH_PREFIX and not path.startswith(
                configuration.PATH_PREFIX + '/'):
            LOG.info('No export at the path %(client)s asked for.',
                     {'client': self.address_string()})
            return 404
        given = path[len(configuration.PATH_PREFIX) + 1:].encode('latin-1')
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
                span = ranges.parse_range(self.headers.get('Range'), size)
            except ranges.RangeNotSatisfiable:
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
                 tls_context=None, bucket=None,
                 chunk_bytes=configuration.CHUNK_BYTES):
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
        return configuration.mask_token(text, self.token)

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


def make_server(path, token,
                bind_address=configuration.DEFAULT_BIND_ADDRESS, ports=(0,),
                cert_file=None, key_file=None, max_bytes_per_sec=0,
                max_connections=configuration.DEFAULT_MAX_CONNECTIONS,
                timeout=configuration.DEFAULT_TIMEOUT, rbd=None):
    """Open a LUN and return a :class:`LunServer` listening for it.

    The caller runs ``serve_forever()`` and, at the end, ``shutdown()``
    and ``server_close()``.

    :param ports: ports to try in order; the first free one is taken.
    :raises BindError: when no port is free.
    :raises OSError: when the LUN cannot be opened or TLS set up.
    """
    context = tls_context(cert_file, key_file) if cert_file else None
    bucket, chunk = ratelimit.make_bucket(max_bytes_per_sec)
    lun = luns.open_lun(path, rbd)
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
