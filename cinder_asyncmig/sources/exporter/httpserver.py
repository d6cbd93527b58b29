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

A WSGI application (:class:`LunApp`) on cheroot's HTTP server: GET and
HEAD of ``/lun/<token>`` only, single byte ranges, keep-alive and
pipelined requests (librbd pipelines its range requests on one
connection). cheroot parses the requests, bounds the head's size, answers
malformed ones and parks idle keep-alive connections outside its workers.
On top of it:

- at most ``max_connections`` requests are answered at once (cheroot's
  worker threads); the others wait in its queue;
- a request head must arrive whole within ``timeout`` (cheroot only
  bounds each read, so a head sent a byte at a time would hold a worker;
  one thread, :class:`_HeadDeadlines`, drops the late ones);
- the TLS handshake runs in the worker, not in cheroot's accept loop, so
  a silent client cannot stall the others;
- reads are paced by a shared
  :class:`~cinder_asyncmig.sources.exporter.ratelimit.TokenBucket`, and
  the token is masked in everything logged;
- a range of a file or block device goes out with ``sendfile(2)`` when the
  connection is plain TCP (:class:`_Gateway`): the page cache goes to the
  socket without passing through Python, which takes 60% less of the
  exporter's CPU;
- the answer to HEAD, the first request of every librbd client, carries
  a filler header (:data:`READ_BUFFER_FILLER`): librbd's HTTP client
  (``librbd/migration/HttpClient.cc``) reads every response through one
  Boost.Beast ``flat_buffer`` that grows only to hold a head and is never
  reserved, and Beast reads the body into it ``capacity`` bytes at a time,
  512 at least. With heads of 200 bytes, a 4 MiB range arrives 550 bytes
  per ``recvmsg`` (1.9 million calls per GiB, the copy bound by the
  client's CPU); a head of about 6 KiB leaves the buffer room for 11 KiB
  per call, and the copy takes half the time.

:func:`measure_read_rate` measures what a reader gets.
"""

import contextlib
import errno
import hmac
from http import client as http_client
import logging as std_logging
import os
import selectors
import socket
import ssl
import threading
import time
import traceback
from urllib import parse as urlparse

from cheroot import server as cheroot_server
from cheroot.ssl import builtin as cheroot_ssl
from cheroot import wsgi
from oslo_log import log as logging
from oslo_utils import units

from cinder_asyncmig.sources.exporter import configuration
from cinder_asyncmig.sources.exporter import luns
from cinder_asyncmig.sources.exporter import ranges
from cinder_asyncmig.sources.exporter import ratelimit

LOG = logging.getLogger(__name__)
_LISTEN_BACKLOG = 64
_NO_BODY = (b'',)
# see the module's docstring; Beast refuses a response head over 8 KiB
READ_BUFFER_FILLER = ('X-Read-Buffer-Filler', '-' * (6 * units.Ki))
_format_exc = traceback.format_exc


class LunApp(object):
    """The WSGI application: GET and HEAD on ``/lun/<token>``."""

    def __init__(self, server):
        self.server = server

    def __call__(self, environ, start_response):
        server = self.server
        server.count_request()
        method = environ['REQUEST_METHOD']
        status, headers, body = self._answer(environ, method)
        LOG.debug('%(client)s "%(method)s %(path)s" %(status)s',
                  {'client': environ.get('REMOTE_ADDR'), 'method': method,
                   'path': server.mask(environ.get('PATH_INFO', '')),
                   'status': status})
        start_response(status, headers)
        return body

    def _answer(self, environ, method):
        if method not in ('GET', 'HEAD'):
            return ('405 Method Not Allowed',
                    [('Allow', 'GET, HEAD'), ('Content-Length', '0')],
                    _NO_BODY)
        refusal = self._route(environ)
        if refusal:
            return refusal, [('Content-Length', '0')], _NO_BODY
        size = self.server.lun.size()
        span = self._span(environ, size)
        if span == ():
            return ('416 Range Not Satisfiable',
                    [('Content-Range', 'bytes */%d' % size),
                     ('Content-Length', '0')], _NO_BODY)
        first, last = span or (0, size - 1)
        length = last - first + 1
        headers = [('Content-Type', 'application/octet-stream'),
                   ('Accept-Ranges', 'bytes'),
                   ('Content-Length', str(length))]
        if span:
            headers.append(('Content-Range',
                            'bytes %d-%d/%d' % (first, last, size)))
        if method == 'HEAD':
            headers.append(READ_BUFFER_FILLER)
            body = _NO_BODY
        else:
            body = _Range(self.server, first, length,
                          environ.get('REMOTE_ADDR'))
        return '206 Partial Content' if span else '200 OK', headers, body

    def _route(self, environ):
        path = environ.get('PATH_INFO', '')
        client = environ.get('REMOTE_ADDR')
        if path != configuration.PATH_PREFIX and not path.startswith(
                configuration.PATH_PREFIX + '/'):
            LOG.info('No export at the path %(client)s asked for.',
                     {'client': client})
            return '404 Not Found'
        given = path[len(configuration.PATH_PREFIX) + 1:].encode('latin-1')
        if not hmac.compare_digest(given, self.server.token_bytes):
            LOG.warning('Refused a request from %(client)s: missing or '
                        'wrong token.', {'client': client})
            return '403 Forbidden'
        return None

    @staticmethod
    def _span(environ, size):
        try:
            return ranges.parse_range(environ.get('HTTP_RANGE'), size)
        except ranges.RangeNotSatisfiable:
            return ()


class _Range(object):
    """A response body: ``length`` bytes of the LUN from ``offset``.

    Iterated, it reads the LUN in chunks (any LUN, any connection);
    :meth:`send` writes it to a plain socket with ``sendfile(2)``. Both
    pace it with the server's bucket and count what went out.
    """

    def __init__(self, server, offset, length, client):
        self.server = server
        self.offset = offset
        self.length = length
        self.client = client

    def _pieces(self):
        server = self.server
        offset, end = self.offset, self.offset + self.length
        while offset < end:
            want = min(server.chunk_bytes, end - offset)
            if server.bucket is not None:
                server.bucket.consume(want)
            yield offset, want
            offset += want

    def __iter__(self):
        lun = self.server.lun
        for offset, want in self._pieces():
            try:
                data = lun.read(offset, want)
            except OSError as exc:
                data = b''
                LOG.error('Reading the exported LUN at %(offset)d failed: '
                          '%(error)s', {'offset': offset, 'error': exc})
            self._check(offset, data)
            yield data
            self.server.count_bytes(len(data))

    def send(self, sock, timeout):
        """Write the range to ``sock`` (plain TCP) with ``sendfile(2)``."""
        fd = self.server.lun.fd
        with selectors.DefaultSelector() as writable:
            writable.register(sock, selectors.EVENT_WRITE)
            for offset, want in self._pieces():
                while want:
                    try:
                        sent = os.sendfile(sock.fileno(), fd, offset, want)
                    except BlockingIOError:
                        if not writable.select(timeout):
                            raise socket.timeout('sending to %s' %
                                                 self.client)
                        continue
                    self._check(offset, sent)
                    offset += sent
                    want -= sent
                    self.server.count_bytes(sent)

    def _check(self, offset, sent):
        if not sent:
            # the promised length cannot be kept: cheroot closes the
            # connection on this error, and the client retries
            LOG.warning('The exported LUN ended at %(offset)d while '
                        'serving %(client)s; closing the connection.',
                        {'offset': offset, 'client': self.client})
            raise ConnectionAbortedError(errno.ECONNABORTED,
                                         'the LUN ended early')


class _Gateway(wsgi.Gateway_10):
    """cheroot's WSGI gateway; a :class:`_Range` of a file by sendfile."""

    def respond(self):
        response = self.req.server.wsgi_app(self.env, self.start_response)
        sock = self.req.conn.socket
        if (isinstance(response, _Range) and
                isinstance(self.req.server.lun, luns.Lun) and
                not isinstance(sock, ssl.SSLSocket)):
            self.req.ensure_headers_sent()
            self.req.conn.wfile.flush()
            response.send(sock, self.req.server.timeout)
            return
        try:
            for chunk in filter(None, response):
                self.write(chunk)
        finally:
            # as cheroot's own
            self.req.ensure_headers_sent()


def _drop(sock):
    # the base class's shutdown: an SSLSocket's own would also drop its
    # TLS state under the worker that is reading
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _Headers(dict):
    """Request headers that keep every Range (cheroot keeps the last).

    Two Range headers then read as a multi-range request: refused.
    """

    def __setitem__(self, name, value):
        if name == b'Range' and name in self:
            value = self[name] + b', ' + value
        super(_Headers, self).__setitem__(name, value)


class _LunRequest(cheroot_server.HTTPRequest):
    """A request whose head must arrive whole within the timeout."""

    def __init__(self, server, conn, **kwargs):
        super(_LunRequest, self).__init__(server, conn, **kwargs)
        self.inheaders = _Headers()

    def simple_response(self, status, msg=''):
        # cheroot's own answers: malformed or oversized requests, timeouts
        LOG.info('Answered %(client)s with %(status)s (%(reason)s).',
                 {'client': self.conn.remote_addr, 'status': status,
                  'reason': self.server.mask(str(msg)) or '-'})
        super(_LunRequest, self).simple_response(status, msg)

    def parse_request(self):
        with self.server.head_deadlines.watch(self.conn.socket):
            super(_LunRequest, self).parse_request()


class _HeadDeadlines(object):
    """Drops connections whose request head is late, with one thread.

    A timer thread per request cost more than the rest of the answer to a
    4 KiB read.
    """

    def __init__(self, timeout):
        self.timeout = timeout
        self._due = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='head-deadlines')

    def start(self):
        self._thread.start()

    def stop(self):
        self._stopped.set()
        if self._thread.ident is not None:
            self._thread.join()

    @contextlib.contextmanager
    def watch(self, sock):
        """Drop ``sock`` if the block has not ended within the timeout."""
        key = object()
        with self._lock:
            self._due[key] = (time.monotonic() + self.timeout, sock)
        try:
            yield
        finally:
            with self._lock:
                self._due.pop(key, None)

    def _run(self):
        while not self._stopped.wait(min(0.1, self.timeout / 10.0)):
            now = time.monotonic()
            with self._lock:
                late = [key for key, (due, _sock) in self._due.items()
                        if due <= now]
                socks = [self._due.pop(key)[1] for key in late]
            for sock in socks:
                _drop(sock)


class _LunConnection(cheroot_server.HTTPConnection):
    """A counted connection; with TLS, handshakes in its worker."""

    RequestHandlerClass = _LunRequest

    def __init__(self, server, sock, makefile=cheroot_server.MakeFile):
        super(_LunConnection, self).__init__(server, sock, makefile)
        self._handshake_done = not isinstance(sock, ssl.SSLSocket)
        server.count_connection()

    def communicate(self):
        if not self._handshake_done:
            try:
                self.socket.do_handshake()
            except OSError as exc:  # ssl.SSLError is one
                LOG.info('TLS handshake with %(client)s failed: %(error)s',
                         {'client': self.remote_addr,
                          'error': type(exc).__name__})
                return False
            self._handshake_done = True
        return super(_LunConnection, self).communicate()


class _TLSAdapter(cheroot_ssl.BuiltinSSLAdapter):
    """TLS 1.2 or newer; the handshake is left to the connection's worker.

    cheroot's own adapter handshakes in the accept loop, where one client
    that connects and stays silent stalls every other for the timeout.
    """

    def __init__(self, cert_file, key_file):
        super(_TLSAdapter, self).__init__(cert_file, key_file)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2

    def wrap(self, sock):
        return (self.context.wrap_socket(sock, server_side=True,
                                         do_handshake_on_connect=False),
                {'wsgi.url_scheme': 'https', 'HTTPS': 'on'})


class BindError(OSError):
    """None of the ports to try could be bound."""


class LunServer(wsgi.Server):
    """Serves one LUN at ``/lun/<token>`` on the first free port.

    ``prepare()`` binds and listens, ``serve()`` serves until ``stop()``;
    ``close()`` stops and closes the LUN.
    """

    ConnectionClass = _LunConnection

    def __init__(self, address, ports, lun, token, max_connections,
                 timeout, tls=None, bucket=None,
                 chunk_bytes=configuration.CHUNK_BYTES):
        super(LunServer, self).__init__(
            (address, ports[0]), None, numthreads=max_connections,
            max=max_connections, server_name='cinder-asyncmig-exporter',
            request_queue_size=_LISTEN_BACKLOG, timeout=timeout)
        self.wsgi_app = LunApp(self)
        self.gateway = _Gateway
        self.head_deadlines = _HeadDeadlines(timeout)
        self.ssl_adapter = tls
        self.max_request_header_size = configuration.MAX_HEAD_BYTES
        # a GET or HEAD has no body to speak of
        self.max_request_body_size = configuration.MAX_HEAD_BYTES
        # idle keep-alive connections wait in cheroot's selector until the
        # timeout closes them; with a limit, cheroot would answer
        # "Connection: close" past it, which librbd never got before
        self.keep_alive_conn_limit = None
        self._ports = list(ports)
        self.bind_error = None
        self.lun = lun
        self.token = token
        self.token_bytes = token.encode('latin-1')
        self.bucket = bucket
        self.chunk_bytes = chunk_bytes
        self.bytes_served = 0
        self.requests_served = 0
        self.connections = 0
        self.unexpected_errors = 0
        self._counter_lock = threading.Lock()

    @property
    def scheme(self):
        return 'https' if self.ssl_adapter else 'http'

    @property
    def address(self):
        return self.bind_addr[0]

    @property
    def port(self):
        return self.bind_addr[1]

    def mask(self, text):
        return configuration.mask_token(text, self.token)

    def count_bytes(self, amount):
        with self._counter_lock:
            self.bytes_served += amount

    def count_request(self):
        with self._counter_lock:
            self.requests_served += 1

    def count_connection(self):
        with self._counter_lock:
            self.connections += 1

    def bind(self, family, type, proto=0):
        host = self.bind_addr[0]
        for port in self._ports:
            sock = self.prepare_socket((host, port), family, type, proto,
                                       self.nodelay, self.ssl_adapter)
            try:
                # rebind at once after a restart (prepare_socket sets
                # SO_REUSEADDR on every port but 0)
                sock.bind((host, port))
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            self.socket = sock
            self.bind_addr = self.resolve_real_bind_addr(sock)
            return sock
        self.bind_error = BindError(
            errno.EADDRINUSE, 'no free port in %d-%d on %s' % (
                self._ports[0], self._ports[-1], host))
        raise self.bind_error

    def error_log(self, msg='', level=std_logging.INFO, traceback=False):
        # cheroot's signature: ``traceback`` hides the module here
        if traceback:
            msg = '%s\n%s' % (msg, _format_exc())
        if level >= std_logging.ERROR:
            with self._counter_lock:
                self.unexpected_errors += 1
        LOG.log(level, '%s', self.mask(msg))

    def prepare(self):
        super(LunServer, self).prepare()
        self.head_deadlines.start()

    def stop(self):
        super(LunServer, self).stop()
        self.head_deadlines.stop()

    def close(self):
        self.stop()
        self.lun.close()


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

    The caller runs ``serve()`` and, at the end, ``close()``.

    :param ports: ports to try in order; the first free one is taken.
    :raises BindError: when no port is free.
    :raises OSError: when the LUN cannot be opened or TLS set up.
    """
    tls = _TLSAdapter(cert_file, key_file) if cert_file else None
    bucket, chunk = ratelimit.make_bucket(max_bytes_per_sec)
    lun = luns.open_lun(path, rbd)
    server = LunServer(bind_address, list(ports), lun, token,
                       max_connections, timeout, tls, bucket, chunk)
    try:
        server.prepare()
    except BaseException:
        lun.close()
        if server.bind_error is not None:
            # cheroot folds it into an OSError without an errno
            raise server.bind_error from None
        raise
    return server


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
