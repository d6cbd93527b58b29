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

"""The LUN exporter: real servers on loopback, real child processes."""

import datetime
import hashlib
from http import client as http_client
import io
import ipaddress
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import ssl
import stat
import tempfile
import threading
import time
from urllib import parse as urlparse

import fixtures
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
from oslo_config import cfg
from oslo_utils import units
import psutil
import testtools

from cinder_asyncmig import children
from cinder_asyncmig import exception
from cinder_asyncmig import opts
from cinder_asyncmig.sandbox import process
from cinder_asyncmig.sources import exporter
from cinder_asyncmig.sources.exporter import nbd

KIB = 1024
MIB = 1024 * KIB


def self_signed_cert(directory, address='127.0.0.1'):
    """Write a self-signed certificate for ``address``; return its files."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(address))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                           critical=True)
            .sign(key, hashes.SHA256()))
    cert_file = os.path.join(directory, 'cert.pem')
    key_file = os.path.join(directory, 'key.pem')
    with open(cert_file, 'wb') as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, 'wb') as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(key_file, 0o600)
    return cert_file, key_file


def _recv_all(sock, timeout=10):
    sock.settimeout(timeout)
    parts = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            data = b''
        if not data:
            return b''.join(parts)
        parts.append(data)


def _read_while_the_lun_shrinks(case, lun, sock):
    """GET a whole LUN of 16 MiB, truncated to 1 MiB after the head.

    A promise of more bytes than the LUN now has ends with the
    connection closed. (What was on its way when the file changed may
    be either version: sendfile queues page-cache pages.)
    """
    sock.sendall(b'GET %s HTTP/1.1\r\nHost: x\r\n\r\n' %
                 lun.lun_path.encode())
    received = sock.recv(64 * KIB)
    os.truncate(lun.path, MIB)
    before = received.partition(b'\r\n\r\n')[2]
    received += _recv_all(sock)
    head, _, body = received.partition(b'\r\n\r\n')
    case.assertIn(b'Content-Length: %d\r\n' % lun.size, head)
    case.assertLess(len(body), lun.size)
    case.assertEqual(lun.data[:len(before)], before)


class _Replay(io.BytesIO):
    """Bytes received, read response after response by http.client."""

    def makefile(self, *args, **kwargs):
        return self

    def close(self):
        pass  # each response closes its reader


class FakeClock(object):
    """A monotonic clock that only moves when something sleeps."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class ParseRangeTest(testtools.TestCase):

    def test_satisfiable(self):
        for header, expected in (
                (None, None),
                ('bytes=0-0', (0, 0)),
                ('bytes=10-19', (10, 19)),
                ('bytes=10-', (10, 99)),
                ('bytes=-10', (90, 99)),
                ('bytes=-1000', (0, 99)),
                ('bytes=90-1000', (90, 99)),
                (' bytes=1-2 ', (1, 2))):
            self.assertEqual(expected, exporter.parse_range(header, 100),
                             header)

    def test_not_satisfiable(self):
        for header in ('bytes=100-', 'bytes=100-200', 'bytes=5-4',
                       'bytes=-0', 'bytes=-', 'bytes=0-1,3-4', 'bytes=a-b',
                       'items=0-1', 'bytes 0-1', '', 'bytes=0-1-2',
                       'bytes=99999999999999999999-'):
            self.assertRaises(exporter.RangeNotSatisfiable,
                              exporter.parse_range, header, 100)

    def test_empty_lun(self):
        self.assertIsNone(exporter.parse_range(None, 0))
        for header in ('bytes=0-', 'bytes=-1', 'bytes=0-0'):
            self.assertRaises(exporter.RangeNotSatisfiable,
                              exporter.parse_range, header, 0)

    @settings(max_examples=500, database=None, deadline=None)
    @given(header=st.one_of(
           st.text(max_size=40),
           st.builds('bytes={}-{}'.format,
                     st.one_of(st.just(''), st.integers(0, 10 ** 21)),
                     st.one_of(st.just(''), st.integers(0, 10 ** 21)))),
           size=st.integers(0, 2 ** 63))
    def test_any_header(self, header, size):
        try:
            span = exporter.parse_range(header, size)
        except exporter.RangeNotSatisfiable:
            return
        first, last = span
        self.assertLessEqual(0, first)
        self.assertLessEqual(first, last)
        self.assertLess(last, size)


class TokenBucketTest(testtools.TestCase):
    """The bandwidth cap on a fake clock: no wall-clock thresholds."""

    def _simulate(self, rate, connections, seconds, chunk=None):
        """Connections taking chunks as fast as the bucket lets them.

        Each simulated connection reserves its next chunk as soon as the
        previous one was released; the bytes released in ``seconds`` are
        returned.
        """
        clock = FakeClock()
        bucket, default_chunk = exporter.make_bucket(rate, clock,
                                                     clock.sleep)
        chunk = chunk or default_chunk
        start = clock.now
        ready = [start] * connections
        released = 0
        while True:
            i = min(range(connections), key=ready.__getitem__)
            clock.now = ready[i]
            at = clock.now + bucket.reserve(chunk)
            if at > start + seconds:
                return released
            released += chunk
            ready[i] = at

    def test_average_over_30s_within_10_percent(self):
        for rate in (MIB, 50 * MIB, 400 * MIB, 3 * MIB + 7):
            for connections in (1, 4, 32):
                released = self._simulate(rate, connections, 30)
                self.assertLessEqual(abs(released / 30.0 - rate),
                                     0.10 * rate, (rate, connections))
                # in fact within one burst of the cap
                self.assertLessEqual(released, rate * 30 + rate / 10 +
                                     MIB)

    def test_chunks_larger_than_the_burst_still_pass(self):
        released = self._simulate(MIB, 3, 30, chunk=4 * MIB)
        self.assertLessEqual(abs(released / 30.0 - MIB), 0.15 * MIB)

    def test_idle_time_earns_one_burst_only(self):
        clock = FakeClock()
        bucket = exporter.TokenBucket(1000, 100, clock, clock.sleep)
        self.assertEqual(0, bucket.reserve(100))
        clock.now += 3600
        self.assertEqual(0, bucket.reserve(100))
        self.assertAlmostEqual(0.5, bucket.reserve(500))

    def test_consume_sleeps_the_debt(self):
        clock = FakeClock()
        bucket = exporter.TokenBucket(1000, 100, clock, clock.sleep)
        started = clock.now
        for _ in range(10):
            bucket.consume(1000)
        self.assertAlmostEqual(9.9, clock.now - started)

    def test_no_cap(self):
        self.assertEqual((None, exporter.CHUNK_BYTES),
                         exporter.make_bucket(0))
        self.assertRaises(ValueError, exporter.TokenBucket, 0, 1)


class ServerFixture(fixtures.Fixture):
    """An in-process exporter on loopback serving a temporary file."""

    def __init__(self, size, **kwargs):
        super(ServerFixture, self).__init__()
        self.size = size
        self.kwargs = kwargs

    def _setUp(self):
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.path = os.path.join(self.dir, 'lun.img')
        self.data = random.Random(self.size).randbytes(self.size)
        with open(self.path, 'wb') as f:
            f.write(self.data)
        self.token = exporter.generate_token()
        self.server = exporter.make_server(self.path, self.token,
                                           **self.kwargs)
        self.thread = threading.Thread(target=self.server.serve)
        self.thread.start()
        self.addCleanup(self._stop)

    def _stop(self):
        self.server.close()
        self.thread.join()

    @property
    def port(self):
        return self.server.port

    @property
    def lun_path(self):
        return exporter.PATH_PREFIX + '/' + self.token

    def connect(self, timeout=10):
        return http_client.HTTPConnection('127.0.0.1', self.port,
                                          timeout=timeout)

    def raw(self, timeout=10, receive_buffer=None):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF,
                            receive_buffer)
        sock.settimeout(timeout)
        sock.connect(('127.0.0.1', self.port))
        return sock


class ServerTest(testtools.TestCase):

    SIZE = 3 * MIB + 12345

    def setUp(self):
        super(ServerTest, self).setUp()
        self.log = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        self.lun = self.useFixture(ServerFixture(self.SIZE))
        self.rng = random.Random(self.id())

    def _request(self, conn, method='GET', path=None, headers=None):
        conn.request(method, self.lun.lun_path if path is None else path,
                     headers=headers or {})
        response = conn.getresponse()
        return response, response.read()

    def test_range_reads_over_one_connection_rebuild_the_lun(self):
        conn = self.lun.connect()
        self.addCleanup(conn.close)
        digest = hashlib.sha256()
        offset = 0
        sock = None
        while offset < self.SIZE:
            length = self.rng.randint(1, 256 * KIB)
            last = min(offset + length, self.SIZE) - 1
            response, body = self._request(
                conn, headers={'Range': 'bytes=%d-%d' % (offset, last)})
            self.assertEqual(206, response.status)
            self.assertEqual('bytes %d-%d/%d' % (offset, last, self.SIZE),
                             response.getheader('Content-Range'))
            self.assertEqual(last - offset + 1, len(body))
            sock = sock or conn.sock
            self.assertIs(sock, conn.sock, 'the connection was not kept')
            digest.update(body)
            offset = last + 1
        self.assertEqual(hashlib.sha256(self.lun.data).hexdigest(),
                         digest.hexdigest())
        self.assertEqual(1, self.lun.server.connections)
        # counted once written, so maybe after the client got the bytes
        deadline = time.monotonic() + 10
        while (self.lun.server.bytes_served < self.SIZE and
               time.monotonic() < deadline):
            time.sleep(0.01)
        self.assertEqual(self.SIZE, self.lun.server.bytes_served)

    def test_head_tells_the_size(self):
        conn = self.lun.connect()
        self.addCleanup(conn.close)
        response, body = self._request(conn, 'HEAD')
        self.assertEqual(200, response.status)
        self.assertEqual(b'', body)
        self.assertEqual(str(self.SIZE), response.getheader('Content-Length'))
        self.assertEqual('bytes', response.getheader('Accept-Ranges'))
        self.assertEqual(0, self.lun.server.bytes_served)

    def test_head_grows_the_readers_buffer_within_beasts_limit(self):
        # librbd's client reads bodies as many bytes at a time as the
        # first head made its buffer hold; Beast refuses a head over 8 KiB
        sock = self.lun.raw()
        self.addCleanup(sock.close)
        for method in (b'HEAD', b'GET'):
            sock.sendall(b'%s %s HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0'
                         b'\r\n\r\n' % (method, self.lun.lun_path.encode()))
        sock.sendall(b'HEAD %s HTTP/1.1\r\nConnection: close\r\n\r\n' %
                     self.lun.lun_path.encode())
        heads = _recv_all(sock).split(b'\r\n\r\n')
        self.assertGreater(len(heads[0]), 4 * KIB)
        self.assertLess(len(heads[0]), 8 * KIB)
        self.assertLess(len(heads[1]), KIB, 'a GET carries no filler')
        self.assertGreater(len(heads[2]), 4 * KIB)

    def test_get_without_range_streams_the_whole_lun(self):
        conn = self.lun.connect()
        self.addCleanup(conn.close)
        response, body = self._request(conn)
        self.assertEqual(200, response.status)
        self.assertEqual(self.lun.data, body)
        # then the connection serves another request
        response, body = self._request(conn,
                                       headers={'Range': 'bytes=-5'})
        self.assertEqual((206, self.lun.data[-5:]), (response.status, body))
        self.assertEqual(1, self.lun.server.connections)

    def test_open_and_suffix_ranges(self):
        conn = self.lun.connect()
        self.addCleanup(conn.close)
        for header, expected in (
                ('bytes=%d-' % (self.SIZE - 100), self.lun.data[-100:]),
                ('bytes=-100', self.lun.data[-100:]),
                ('bytes=5-%d' % (10 * self.SIZE), self.lun.data[5:])):
            response, body = self._request(conn, headers={'Range': header})
            self.assertEqual(206, response.status, header)
            self.assertEqual(expected, body, header)

    def test_pipelined_requests_are_answered_in_order(self):
        sock = self.lun.raw()
        self.addCleanup(sock.close)
        ranges = [(0, 9), (100, 100), (self.SIZE - 3, self.SIZE - 1)]
        sock.sendall(b''.join(
            b'GET %s HTTP/1.1\r\nHost: x\r\nRange: bytes=%d-%d\r\n\r\n' % (
                self.lun.lun_path.encode(), first, last)
            for first, last in ranges) +
            b'HEAD %s HTTP/1.1\r\nConnection: close\r\n\r\n' %
            self.lun.lun_path.encode())
        received = _Replay(_recv_all(sock))
        for first, last in ranges:
            response = http_client.HTTPResponse(received)
            response.begin()
            self.assertEqual(206, response.status)
            self.assertEqual(self.lun.data[first:last + 1], response.read())
        response = http_client.HTTPResponse(received, method='HEAD')
        response.begin()
        self.assertEqual(200, response.status)
        self.assertEqual(b'', received.read())
        self.assertEqual(1, self.lun.server.connections)

    def test_token_is_required(self):
        conn = self.lun.connect()
        self.addCleanup(conn.close)
        token = self.lun.token
        wrong = token[:-1] + ('A' if token[-1] != 'A' else 'B')
        for path in ('/lun', '/lun/', '/lun/' + wrong, '/lun/' + token[:-1],
                     '/lun/' + token + 'x', '/lun/' + token + '/',
                     '/lun?token=' + token):
            for method in ('GET', 'HEAD'):
                response, body = self._request(conn, method, path)
                self.assertEqual(403, response.status, path)
                self.assertEqual(b'', body)
        self.assertEqual(0, self.lun.server.bytes_served)

    def test_other_paths_are_not_found(self):
        conn = self.lun.connect()
        self.addCleanup(conn.close)
        for path in ('/', '/x', '/LUN/' + self.lun.token,
                     '/lunx/' + self.lun.token, '/' + self.lun.token):
            response, _body = self._request(conn, 'GET', path)
            self.assertEqual(404, response.status, path)
        for path in ('*', 'lun/' + self.lun.token,
                     'http://h/lun/' + self.lun.token):
            conn = self.lun.connect()
            self.addCleanup(conn.close)
            response, _body = self._request(conn, 'GET', path)
            self.assertEqual(400, response.status, path)
        self.assertEqual(0, self.lun.server.bytes_served)

    def test_only_get_and_head_are_allowed(self):
        for method in ('POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS',
                       'TRACE', 'PROPFIND'):
            conn = self.lun.connect()
            self.addCleanup(conn.close)
            conn.request(method, self.lun.lun_path, body=b'payload')
            response = conn.getresponse()
            response.read()
            self.assertEqual(405, response.status, method)
            self.assertEqual('GET, HEAD', response.getheader('Allow'))
            # the body was read: the connection serves the next request
            response, body = self._request(conn, 'HEAD')
            self.assertEqual(200, response.status, method)
        # cheroot refuses these before the application sees them
        for method, code in (('CONNECT', 405), ('get', 400)):
            conn = self.lun.connect()
            self.addCleanup(conn.close)
            conn.request(method, self.lun.lun_path)
            self.assertEqual(code, conn.getresponse().status, method)
        with open(self.lun.path, 'rb') as f:
            self.assertEqual(self.lun.data, f.read())
        self.assertEqual(0, self.lun.server.bytes_served)

    def test_unsatisfiable_ranges(self):
        conn = self.lun.connect()
        self.addCleanup(conn.close)
        for header in ('bytes=%d-' % self.SIZE, 'bytes=%d-%d' % (
                self.SIZE + 1, self.SIZE + 9), 'bytes=9-3', 'bytes=-0',
                'bytes=0-1,4-5', 'bytes=x-1', 'pages=0-1', 'bytes=1'):
            response, body = self._request(conn, headers={'Range': header})
            self.assertEqual(416, response.status, header)
            self.assertEqual('bytes */%d' % self.SIZE,
                             response.getheader('Content-Range'))
            self.assertEqual(b'', body)
        self.assertEqual(1, self.lun.server.connections)

    def test_two_range_headers_are_unsatisfiable(self):
        sock = self.lun.raw()
        self.addCleanup(sock.close)
        sock.sendall(b'GET %s HTTP/1.1\r\nRange: bytes=0-1\r\n'
                     b'Range: bytes=2-3\r\nConnection: close\r\n\r\n' %
                     self.lun.lun_path.encode())
        self.assertTrue(_recv_all(sock).startswith(
            b'HTTP/1.1 416 '))

    def test_request_head_size_is_capped(self):
        sock = self.lun.raw()
        self.addCleanup(sock.close)
        sock.sendall(b'GET %s HTTP/1.1\r\n' % self.lun.lun_path.encode() +
                     b'X-Pad: ' + b'a' * exporter.MAX_HEAD_BYTES + b'\r\n\r\n')
        answer = _recv_all(sock)
        self.assertTrue(answer.startswith(b'HTTP/1.1 413 '), answer[:40])
        self.assertIn(b'Connection: close', answer)

    def test_request_line_without_version_is_refused(self):
        sock = self.lun.raw()
        self.addCleanup(sock.close)
        sock.sendall(b'GET %s\r\n\r\n' % self.lun.lun_path.encode())
        self.assertTrue(_recv_all(sock).startswith(b'HTTP/1.1 400 '))

    def test_other_http_versions_get_a_status_line(self):
        for version, code in ((b'HTTP/0.9', b'505'), (b'HTTP/2.0', b'505'),
                              (b'HTTP/1.x', b'400')):
            sock = self.lun.raw()
            self.addCleanup(sock.close)
            sock.sendall(b'GET %s %s\r\n\r\n' % (
                self.lun.lun_path.encode(), version))
            answer = _recv_all(sock)
            self.assertTrue(answer.startswith(b'HTTP/1.1 %s ' % code),
                            answer[:40])
        self.assertEqual(0, self.lun.server.bytes_served)

    def test_token_is_never_logged(self):
        token = self.lun.token.encode()
        for request in (b'GET /lun/%s HTTP/1.1\r\n\r\n',
                        b'GET /lun/%s junk HTTP/1.1\r\n\r\n',
                        b'GET /lun/%s HTTP/9.x\r\n\r\n',
                        b'DELETE /lun/%s HTTP/1.1\r\n\r\n',
                        b'GET /lun/x%s HTTP/1.1\r\n\r\n'):
            sock = self.lun.raw()
            self.addCleanup(sock.close)
            sock.sendall(request % token)
            sock.shutdown(socket.SHUT_WR)
            self.assertTrue(_recv_all(sock).startswith(b'HTTP/1.'))
        self.assertIn(exporter.MASK, self.log.output)
        self.assertNotIn(self.lun.token, self.log.output)

    def test_a_lun_that_ends_early_closes_the_connection(self):
        lun = self.useFixture(ServerFixture(16 * MIB))
        sock = lun.raw(receive_buffer=64 * KIB)
        self.addCleanup(sock.close)
        _read_while_the_lun_shrinks(self, lun, sock)
        self.assertIn('The exported LUN ended at', self.log.output)

    def test_measure_read_rate(self):
        url = exporter.export_url('http', '127.0.0.1', self.lun.port,
                                  self.lun.token)
        rate = exporter.measure_read_rate(url, 0.2, connections=2,
                                          chunk=MIB)
        self.assertGreater(rate, 0)
        self.assertEqual(2, self.lun.server.connections)


class TimeoutTest(testtools.TestCase):
    """Slow clients, with a one-second server timeout."""

    def setUp(self):
        super(TimeoutTest, self).setUp()
        self.lun = self.useFixture(ServerFixture(64 * KIB, timeout=1,
                                                 max_connections=1))

    def test_slow_request_head_is_dropped(self):
        sock = self.lun.raw()
        self.addCleanup(sock.close)
        sock.sendall(b'GET /lun/')
        # one byte now and then does not keep the connection
        sock.settimeout(30)
        for _ in range(3):
            try:
                sock.sendall(b'x')
            except OSError:
                break
            time.sleep(0.4)
        self.assertEqual(b'', _recv_all(sock, timeout=30))

    def test_idle_connection_holds_no_worker_and_closes(self):
        first = self.lun.raw(timeout=30)
        self.addCleanup(first.close)
        head = b'HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n' % (
            self.lun.lun_path.encode())
        first.sendall(head)
        answer = first.recv(4096)
        while not answer.endswith(b'\r\n\r\n'):
            answer += first.recv(4096)
        self.assertTrue(answer.startswith(b'HTTP/1.1 200 '))
        # the only worker is free while the first connection idles
        second = self.lun.connect(timeout=30)
        self.addCleanup(second.close)
        second.request('HEAD', self.lun.lun_path)
        self.assertEqual(200, second.getresponse().status)
        # and the server closes the idle connection after its timeout
        self.assertEqual(b'', _recv_all(first, timeout=30))
        self.assertEqual(2, self.lun.server.connections)


class ConcurrencyTest(testtools.TestCase):

    MAX = 3

    def setUp(self):
        super(ConcurrencyTest, self).setUp()
        self.lun = self.useFixture(ServerFixture(32 * MIB,
                                                 max_connections=self.MAX))

    def _send(self, sock, method):
        sock.sendall(b'%s %s HTTP/1.1\r\nHost: x\r\n\r\n' % (
            method, self.lun.lun_path.encode()))

    def test_extra_requests_wait_for_a_free_worker(self):
        held = []
        for _ in range(self.MAX):
            # a reader that stops reading keeps its worker writing
            sock = self.lun.raw(receive_buffer=64 * KIB)
            self.addCleanup(sock.close)
            self._send(sock, b'GET')
            self.assertTrue(sock.recv(4096).startswith(b'HTTP/1.1 200 '))
            held.append(sock)
        waiting = self.lun.raw()
        self.addCleanup(waiting.close)
        self._send(waiting, b'HEAD')
        waiting.settimeout(1)
        # connected by the kernel, but not answered while every worker is
        # busy
        self.assertRaises(socket.timeout, waiting.recv, 4096)

        held.pop().close()

        waiting.settimeout(30)
        self.assertTrue(waiting.recv(4096).startswith(b'HTTP/1.1 200 '))
        self.assertLess(self.lun.server.bytes_served, self.MAX * 32 * MIB)


class TLSTest(testtools.TestCase):

    def setUp(self):
        super(TLSTest, self).setUp()
        certs = self.useFixture(fixtures.TempDir()).path
        self.cert_file, self.key_file = self_signed_cert(certs)
        self.lun = self.useFixture(ServerFixture(
            2 * MIB + 1, cert_file=self.cert_file, key_file=self.key_file))

    def _client_context(self, **kwargs):
        context = ssl.create_default_context(cafile=self.cert_file)
        for name, value in kwargs.items():
            setattr(context, name, value)
        return context

    def test_https_round_trip(self):
        conn = http_client.HTTPSConnection(
            '127.0.0.1', self.lun.port, timeout=10,
            context=self._client_context())
        self.addCleanup(conn.close)
        conn.request('GET', self.lun.lun_path,
                     headers={'Range': 'bytes=1000-1048575'})
        response = conn.getresponse()
        self.assertEqual(206, response.status)
        self.assertEqual(self.lun.data[1000:MIB], response.read())
        conn.request('GET', self.lun.lun_path)
        self.assertEqual(self.lun.data, conn.getresponse().read())
        self.assertEqual('https', self.lun.server.scheme)
        self.assertEqual(1, self.lun.server.connections)

    def test_a_lun_that_ends_early_closes_the_connection(self):
        log = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        lun = self.useFixture(ServerFixture(
            16 * MIB, cert_file=self.cert_file, key_file=self.key_file))
        sock = self._client_context().wrap_socket(
            lun.raw(receive_buffer=64 * KIB), server_hostname='127.0.0.1')
        self.addCleanup(sock.close)
        _read_while_the_lun_shrinks(self, lun, sock)
        self.assertIn('The exported LUN ended at', log.output)

    def _head(self):
        """Status of a HEAD over a new HTTPS connection."""
        conn = http_client.HTTPSConnection(
            '127.0.0.1', self.lun.port, timeout=10,
            context=self._client_context())
        self.addCleanup(conn.close)
        conn.request('HEAD', self.lun.lun_path)
        return conn.getresponse().status

    def test_a_silent_client_does_not_stall_the_others(self):
        silent = self.lun.raw(timeout=60)
        self.addCleanup(silent.close)
        # accepted first; its handshake waits in a worker of its own
        self.assertEqual(200, self._head())
        self.assertEqual(2, self.lun.server.connections)

    def test_old_tls_and_plain_http_are_refused(self):
        old = self._client_context(
            minimum_version=ssl.TLSVersion.MINIMUM_SUPPORTED,
            maximum_version=ssl.TLSVersion.TLSv1_1)
        conn = http_client.HTTPSConnection('127.0.0.1', self.lun.port,
                                           timeout=10, context=old)
        self.addCleanup(conn.close)
        self.assertRaises(ssl.SSLError, conn.request, 'HEAD',
                          self.lun.lun_path)

        plain = self.lun.raw()
        self.addCleanup(plain.close)
        plain.sendall(b'HEAD %s HTTP/1.1\r\n\r\n' % self.lun.lun_path.encode())
        self.assertFalse(_recv_all(plain).startswith(b'HTTP/'))

        # and the server still serves proper clients
        self.assertEqual(200, self._head())


_STATUS_LINE = re.compile(rb'^HTTP/1\.[01] [1-5][0-9][0-9] ')
_FIELD_TEXT = st.text(st.characters(blacklist_categories=('Cs',)),
                      max_size=30)


@st.composite
def _raw_requests(draw):
    method = draw(st.one_of(
        st.sampled_from(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH',
                         'OPTIONS', 'TRACE', 'CONNECT', 'get', '']),
        _FIELD_TEXT))
    target = draw(st.one_of(
        st.sampled_from(['/lun/TOKEN', '/lun', '/lun/', '/', '*',
                         '/lun/TOKEN?x=1', '//lun/TOKEN', '/lun/TOKEN/..',
                         'http://h/lun/TOKEN', '/lun/TOKEN#f', '']),
        _FIELD_TEXT))
    version = draw(st.sampled_from(['HTTP/1.1', 'HTTP/1.0', 'HTTP/0.9',
                                    'HTTP/2.0', 'HTTP/1.1.1', 'HTTP/x',
                                    'http/1.1', '']))
    ranges = st.one_of(
        st.builds('bytes={}-{}'.format,
                  st.one_of(st.just(''), st.integers(0, 2 ** 70)),
                  st.one_of(st.just(''), st.integers(0, 2 ** 70))),
        st.builds('bytes={}-{},{}-{}'.format, *[st.integers(0, 99)] * 4),
        _FIELD_TEXT)
    headers = draw(st.lists(st.one_of(
        st.tuples(st.just('Range'), ranges),
        st.tuples(st.sampled_from(['Host', 'Connection', 'Content-Length',
                                   'Transfer-Encoding', 'Expect']),
                  st.one_of(st.sampled_from(['close', 'keep-alive', '0', '5',
                                             'chunked', '100-continue']),
                            _FIELD_TEXT)),
        st.tuples(_FIELD_TEXT, _FIELD_TEXT)), max_size=6))
    tail = draw(st.binary(max_size=64))
    line = ' '.join(w for w in (method, target, version) if w)
    head = line + '\r\n' + ''.join('%s: %s\r\n' % h for h in headers)
    return head.encode('utf-8') + b'\r\n' + tail


class FuzzTest(testtools.TestCase):
    """Arbitrary requests: a status or a clean close, and no harm done."""

    def setUp(self):
        super(FuzzTest, self).setUp()
        self.lun = self.useFixture(ServerFixture(16 * KIB, timeout=5))

    def _expects_answer(self, request):
        stripped = request.lstrip(b'\r\n')
        complete = b'\n\n' in stripped or b'\n\r\n' in stripped
        first = stripped.split(b'\n', 1)[0].decode('iso-8859-1')
        return complete and bool(first.split())

    @settings(max_examples=300, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(request=st.one_of(_raw_requests(), st.binary(max_size=300)))
    def test_arbitrary_requests(self, request):
        request = request.replace(b'TOKEN', self.lun.token.encode())
        sock = self.lun.raw(timeout=10)
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            answer = _recv_all(sock)
        finally:
            sock.close()
        if answer or self._expects_answer(request):
            self.assertRegex(answer[:20], _STATUS_LINE, request)
        self.assertEqual(0, self.lun.server.unexpected_errors)
        # still serving
        conn = self.lun.connect(timeout=10)
        try:
            conn.request('HEAD', self.lun.lun_path)
            self.assertEqual(200, conn.getresponse().status)
        finally:
            conn.close()


def _exporter_pids(config_path):
    """Live processes whose command line names ``config_path``."""
    return [proc.pid for proc in psutil.process_iter()
            if children.alive(proc.pid) and
            config_path in children.cmdline(proc.pid)]


class ExporterProcessTest(testtools.TestCase):
    """The child process, started, adopted, restarted and stopped."""

    def setUp(self):
        super(ExporterProcessTest, self).setUp()
        self.log = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.state_dir = os.path.join(self.root, 'state')
        self.path = os.path.join(self.root, 'lun.img')
        self.data = random.Random(self.id()).randbytes(MIB + 17)
        with open(self.path, 'wb') as f:
            f.write(self.data)
        self.token = exporter.generate_token()
        self.ports = process.free_port_range(21)

    def _start(self, export_id='volume-1', **kwargs):
        kwargs.setdefault('port_range', self.ports)
        handle = exporter.Exporter.start(self.state_dir, export_id,
                                         kwargs.pop('path', self.path),
                                         self.token, **kwargs)
        self.addCleanup(exporter.Exporter.forget, self.state_dir, export_id)
        return handle

    def _get(self, url, headers=None):
        parsed = urlparse.urlsplit(url)
        conn = http_client.HTTPConnection(parsed.hostname, parsed.port,
                                          timeout=10)
        try:
            conn.request('GET', parsed.path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def _state_files(self):
        return sorted(os.listdir(self.state_dir))

    def test_start_adopt_stop_leaves_nothing(self):
        handle = self._start()
        self.assertTrue(handle.running())
        self.assertEqual('http://127.0.0.1:%d/lun/%s' % (handle.port,
                                                         self.token),
                         handle.url)
        self.assertEqual('http://127.0.0.1:%d/lun/***' % handle.port,
                         handle.masked_url)
        self.assertEqual((206, self.data[-9:]),
                         self._get(handle.url, {'Range': 'bytes=-9'}))
        self.assertEqual(403, self._get(handle.url[:-1])[0])
        # a malformed request is logged, without its token
        with socket.create_connection(('127.0.0.1', handle.port), 10) as s:
            s.sendall(b'GET /lun/%s junk HTTP/1.1\r\n\r\n' %
                      self.token.encode())
            self.assertTrue(_recv_all(s).startswith(b'HTTP/1.1 400 '))

        mode = os.stat(handle.config_path).st_mode
        self.assertEqual(0o600, stat.S_IMODE(mode))
        self.assertNotIn(self.token, children.cmdline(handle.pid))
        status = handle.status()
        self.assertEqual((handle.pid, 'serving', handle.port),
                         (status['pid'], status['phase'], status['port']))
        deadline = time.monotonic() + 10
        while (handle.status().get('bytes_served') != 9 and
               time.monotonic() < deadline):
            time.sleep(0.1)
        self.assertEqual(9, handle.status()['bytes_served'])

        adopted = exporter.Exporter.adopt(self.state_dir, 'volume-1')
        self.assertEqual((handle.pid, handle.url),
                         (adopted.pid, adopted.url))
        for name in self._state_files():
            with open(os.path.join(self.state_dir, name)) as f:
                text = f.read()
            if not name.endswith('.conf'):
                self.assertNotIn(self.token, text, name)
        with open(handle.log_path) as f:
            log = f.read()
        self.assertIn('Exporting', log)
        self.assertIn('with 400 Bad Request', log)
        self.assertNotIn(self.token, log)
        self.assertNotIn(self.token, self.log.output)

        adopted.stop()

        self.assertFalse(children.alive(handle.pid))
        self.assertEqual([], _exporter_pids(handle.config_path))
        self.assertEqual([], self._state_files())
        self.assertRaises(ConnectionRefusedError, socket.create_connection,
                          ('127.0.0.1', handle.port), 5)

    def test_sigterm_stops_the_child_cleanly(self):
        handle = self._start()
        os.kill(handle.pid, signal.SIGTERM)
        self.assertEqual(0, handle._process.wait(timeout=10))
        self.assertEqual('stopped', handle.status()['phase'])
        self.assertIsNone(exporter.Exporter.adopt(self.state_dir,
                                                  'volume-1'))

    def test_restart_after_kill_reuses_token_and_port(self):
        handle = self._start()
        url = handle.url
        os.kill(handle.pid, signal.SIGKILL)
        handle._process.wait()
        self.assertIsNone(exporter.Exporter.adopt(self.state_dir,
                                                  'volume-1'))

        again = exporter.Exporter.resume(self.state_dir, 'volume-1')

        self.assertNotEqual(handle.pid, again.pid)
        self.assertEqual(url, again.url)
        self.assertEqual((206, self.data[:5]),
                         self._get(again.url, {'Range': 'bytes=0-4'}))
        self.assertRaises(exception.ExporterConflict,
                          exporter.Exporter.restart, self.state_dir,
                          'volume-1')
        self.assertEqual(again.pid,
                         exporter.Exporter.resume(self.state_dir,
                                                  'volume-1').pid)

    def test_restart_fails_clearly_when_the_port_is_taken(self):
        handle = self._start()
        os.kill(handle.pid, signal.SIGKILL)
        handle._process.wait()
        squatter = socket.socket()
        self.addCleanup(squatter.close)
        squatter.bind(('127.0.0.1', handle.port))
        squatter.listen()

        exc = self.assertRaises(exception.ExporterPortTaken,
                                exporter.Exporter.restart, self.state_dir,
                                'volume-1')

        self.assertIn('port %d' % handle.port, str(exc))
        self.assertEqual([], _exporter_pids(handle.config_path))
        # the record stays: the restart works once the port is free
        self.assertEqual(['exporter.volume-1.conf'], self._state_files())
        squatter.close()
        again = exporter.Exporter.restart(self.state_dir, 'volume-1')
        self.assertEqual(handle.url, again.url)

    def test_first_free_port_of_the_range(self):
        low, high = self.ports
        squatter = socket.socket()
        self.addCleanup(squatter.close)
        squatter.bind(('127.0.0.1', low))
        squatter.listen()
        first = self._start('volume-1')
        second = self._start('volume-2')
        self.assertLess(low, first.port)
        self.assertLess(first.port, second.port)
        self.assertLessEqual(second.port, high)

    def test_new_export_skips_ports_recorded_for_a_dead_one(self):
        low, _high = self.ports
        first = self._start('volume-1', port_range=(low, low + 1))
        os.kill(first.pid, signal.SIGKILL)
        first._process.wait()

        second = self._start('volume-2', port_range=(low, low + 1))

        self.assertNotEqual(first.port, second.port)
        self.assertEqual(first.url, exporter.Exporter.restart(
            self.state_dir, 'volume-1').url)
        self.assertRaises(exception.ExporterStartError, self._start,
                          'volume-3', port_range=(low, low + 1))

    def test_no_free_port(self):
        squatter = socket.socket()
        self.addCleanup(squatter.close)
        squatter.bind(('127.0.0.1', 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        exc = self.assertRaises(exception.ExporterStartError, self._start,
                                port_range=(port, port))
        self.assertNotIsInstance(exc, exception.ExporterPortTaken)
        self.assertIn('no free port', str(exc))
        self.assertEqual([], self._state_files())

    def test_unreadable_lun_leaves_nothing(self):
        for path in (os.path.join(self.root, 'missing.img'), self.root):
            exc = self.assertRaises(exception.ExporterStartError,
                                    self._start, path=path)
            self.assertIn(path, str(exc))
            self.assertEqual([], self._state_files())
            self.assertEqual([], _exporter_pids(os.path.join(
                self.state_dir, 'exporter.volume-1.conf')))

    def test_second_start_of_an_export_conflicts(self):
        handle = self._start()
        self.assertRaises(exception.ExporterConflict, self._start)
        self.assertTrue(handle.running())

    def test_restart_of_an_unknown_export(self):
        self.assertRaises(exception.ExporterNotFound,
                          exporter.Exporter.restart, self.state_dir, 'nope')

    def test_invalid_settings_are_refused_before_anything_starts(self):
        for kwargs in ({'bind_address': '0.0.0.0'},
                       {'bind_address': '::1'},
                       {'bind_address': 'bad/host'},
                       {'port_range': (10, 5)},
                       {'port_range': (0, 5)},
                       {'export_id': '../x'},
                       {'path': 'relative.img'},
                       {'cert_file': '/x.pem'},
                       {'max_connections': 0}):
            self.assertRaises(exception.ExporterInvalid, self._start,
                              **kwargs)
        self.token = 'short'
        self.assertRaises(exception.ExporterInvalid, self._start)
        self.assertFalse(os.path.exists(self.state_dir))

    def test_config_readable_by_others_is_refused(self):
        handle = self._start()
        os.kill(handle.pid, signal.SIGKILL)
        handle._process.wait()
        os.chmod(handle.config_path, 0o644)
        self.assertRaises(exception.ExporterInvalid,
                          exporter.Exporter.restart, self.state_dir,
                          'volume-1')

    def test_forget_without_process(self):
        handle = self._start()
        os.kill(handle.pid, signal.SIGKILL)
        handle._process.wait()
        exporter.Exporter.forget(self.state_dir, 'volume-1')
        exporter.Exporter.forget(self.state_dir, 'volume-1')
        self.assertEqual([], self._state_files())


class OptionsTest(testtools.TestCase):

    def test_start_options_from_a_backend_section(self):
        conf = cfg.ConfigOpts()
        conf.register_opt(cfg.StrOpt('my_ip', default='192.0.2.7'))
        conf.register_opts(opts.exporter_opts, group='backend')
        conf([], default_config_files=[])
        options = exporter.start_options(conf.backend)
        self.assertEqual({'bind_address': '192.0.2.7',
                          'port_range': exporter.DEFAULT_PORT_RANGE,
                          'cert_file': None, 'key_file': None,
                          'max_bytes_per_sec': 0,
                          'max_connections':
                              exporter.DEFAULT_MAX_CONNECTIONS,
                          'timeout': exporter.DEFAULT_TIMEOUT,
                          'nbd_tls_dir': None, 'nbd_identities': []},
                         options)
        config = exporter.make_config('v', '/dev/null',
                                      exporter.generate_token(), **options)
        self.assertEqual(exporter.DEFAULT_PORT_RANGE,
                         (config['port_min'], config['port_max']))

    def test_tokens_are_unique_and_url_safe(self):
        tokens = {exporter.generate_token() for _ in range(100)}
        self.assertEqual(100, len(tokens))
        for token in tokens:
            self.assertRegex(token, r'^[A-Za-z0-9_-]{43}$')


class NbdTransportTest(testtools.TestCase):
    """qemu-nbd's command line and the choice of the transport."""

    def setUp(self):
        super(NbdTransportTest, self).setUp()
        self.tls = self.useFixture(fixtures.TempDir()).path
        for name in nbd.TLS_FILES:
            open(os.path.join(self.tls, name), 'w').close()
        self.lun = os.path.join(self.tls, 'lun,1.img')
        open(self.lun, 'wb').close()

    def config(self, **kwargs):
        return exporter.make_config(
            'vol-1', self.lun, exporter.generate_token(),
            transport=exporter.NBD, nbd_tls_dir=self.tls, **kwargs)

    def test_read_only_tls_with_peer_check_one_named_export(self):
        argv = nbd.qemu_nbd_argv(self.config())
        self.assertIn('tls-creds-x509,id=tls0,endpoint=server,'
                      'verify-peer=on,dir=%s' % self.tls, argv)
        for flag in ('--read-only', '--persistent', '--shared=16',
                     '--export-name=vol-1'):
            self.assertIn(flag, argv)
        # commas of a path are doubled in qemu's option syntax
        self.assertIn('driver=raw,file.driver=file,file.filename=%s' %
                      self.lun.replace(',', ',,'), argv)
        self.assertNotIn('--tls-authz', argv)
        # nothing secret on a command line anyone on the host reads
        self.assertNotIn(self.config()['token'], ' '.join(argv))

    def test_identities_and_read_cap(self):
        argv = nbd.qemu_nbd_argv(self.config(
            nbd_identities=['CN=hv-1', 'CN=hv-2'],
            max_bytes_per_sec=5 * units.Mi))
        authz = json.loads(argv[argv.index('--tls-authz') - 1])
        self.assertEqual(['CN=hv-1', 'CN=hv-2'],
                         [r['match'] for r in authz['rules']])
        self.assertEqual('deny', authz['policy'])
        self.assertIn('throttle-group,id=cap0,x-bps-read=%d' % (5 * units.Mi),
                      argv)
        self.assertIn('driver=throttle,throttle-group=cap0,file.driver=raw,'
                      'file.file.driver=file,file.file.filename=%s' %
                      self.lun.replace(',', ',,'), argv)

    def test_missing_tls_file_or_rbd_lun_refused(self):
        os.unlink(os.path.join(self.tls, 'server-key.pem'))
        self.assertRaisesRegex(exception.ExporterInvalid,
                               'lacks server-key.pem', self.config)
        open(os.path.join(self.tls, 'server-key.pem'), 'w').close()
        self.assertRaisesRegex(
            exception.ExporterInvalid, 'over http only', self.config,
            rbd={'pool': 'p', 'image': 'i', 'user': 'u'})

    def test_url_names_the_export_and_requires_tls(self):
        self.assertEqual('nbds://192.0.2.1:10800/vol-1',
                         nbd.uri('192.0.2.1', 10800, 'vol-1'))
