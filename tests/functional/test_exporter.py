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

"""Import-only migrations reading a LUN through the HTTP exporter.

Real librbd (the http stream of a raw source spec), real exporter child
processes, a real cluster with cephx.
"""

import hashlib
from http import client as http_client
import os
import random
import socket
import time
from urllib import parse as urlparse

import fixtures
from oslo_utils import units
import rbd

from cinder_asyncmig import children
from cinder_asyncmig.engine import specs
from cinder_asyncmig.engine import state
from cinder_asyncmig.engine import worker as copy_worker
from cinder_asyncmig import exception
from cinder_asyncmig.sandbox import process
from cinder_asyncmig.sources import exporter
from tests.functional import base
from tests.unit.test_exporter import self_signed_cert

SIZE = 192 * units.Mi + 4096 + 123


class ExporterImportTest(base.FunctionalTestCase):

    def setUp(self):
        super(ExporterImportTest, self).setUp()
        self.rng = random.Random(self.id())
        self.engine = self.target_driver.engine
        self.exports = os.path.join(self.state_dir, 'exports')
        self.path = os.path.join(self.state_dir, 'lun-%s.img' %
                                 self.id().rsplit('.', 1)[1])
        self.model = base.ImageModel(SIZE)
        # random data with holes, as a LUN has
        offset = 0
        while offset < SIZE:
            n = min(base.CHUNK, SIZE - offset)
            if self.rng.random() < 0.7:
                self.model.apply(offset, self.rng.randbytes(n))
            offset += n
        with open(self.path, 'wb') as f:
            f.write(self.model.data)
        self.addCleanup(os.unlink, self.path)
        self.name = 'imp-' + self.id().rsplit('.', 1)[1][-20:]
        self.token = exporter.generate_token()

    def _export(self, **kwargs):
        handle = exporter.Exporter.start(self.exports, self.name, self.path,
                                         self.token,
                                         port_range=process.free_port_range(
                                             21), **kwargs)
        self.addCleanup(exporter.Exporter.forget, self.exports, self.name)
        return handle

    def _prepare(self, url):
        self.engine.prepare_import(specs.raw_http(url), self.dst_ioctx,
                                   self.name)
        self.addCleanup(self._remove_destination)

    def _remove_destination(self):
        if self.name not in rbd.RBD().list(self.dst_ioctx):
            return
        status = self.engine.status(self.dst_ioctx, self.name)
        if status.state is not state.MigrationState.NONE:
            self.engine.abort(self.dst_ioctx, self.name, force=True)
        else:
            rbd.RBD().remove(self.dst_ioctx, self.name)

    def _write_at_destination(self, count):
        for _ in range(count):
            at = self.rng.randrange(0, SIZE - units.Mi)
            self.model.write(self.dst_ioctx, self.name, at,
                             self.rng.randbytes(self.rng.randint(
                                 1, 256 * units.Ki)))

    def _execute_worker(self):
        status_path = os.path.join(self.state_dir, 'copy-%s.json' %
                                   self.name)
        job = copy_worker.ExecuteWorker.start(
            self.name, self.dst_pool, status_path,
            conf=self.cluster.conf_path, user=self.cluster.client)
        self.addCleanup(job.stop)
        return job

    def _wait(self, job, until, timeout=300):
        deadline = time.monotonic() + timeout
        while not until(job.read()):
            if not job.running():
                return dict(job.read(), log=self._log_tail(job))
            self.assertLess(time.monotonic(), deadline, job.read())
            time.sleep(0.05)
        return job.read()

    @staticmethod
    def _finished(report):
        return report.get('phase') in (copy_worker.DONE, copy_worker.FAILED)

    def _log_tail(self, job):
        with open(job.status_path + '.log', errors='replace') as f:
            return f.read()[-2000:]

    def test_librbd_keeps_only_the_path_of_the_url(self):
        handle = self._export()
        query_url = 'http://%s:%d%s?token=%s' % (
            handle.address, handle.port, exporter.PATH_PREFIX, self.token)

        # librbd 16.2 drops the query: the exporter sees no token
        self.assertRaises(exception.MigrationEngineError,
                          self.engine.prepare_import,
                          specs.raw_http(query_url), self.dst_ioctx,
                          self.name)
        self.assertNotIn(self.name, rbd.RBD().list(self.dst_ioctx))

        self._prepare(handle.url)
        with rbd.Image(self.dst_ioctx, self.name, read_only=True) as img:
            self.assertEqual(SIZE, img.size())
            self.assertEqual(bytes(self.model.data[:units.Mi]),
                             img.read(0, units.Mi))
        with open(handle.log_path) as f:
            log = f.read()
        self.assertIn('missing or wrong token', log)
        self.assertNotIn(self.token, log)

    def test_import_readable_at_once_writes_survive_commit(self):
        handle = self._export()
        expected_source = self.model.sha256()
        started = time.monotonic()
        self._prepare(handle.url)
        prepared_in = time.monotonic() - started

        # nothing is copied yet: every read goes through the exporter
        self.assertEqual(expected_source,
                         base.image_sha256(self.dst_ioctx, self.name))
        self._write_at_destination(5)

        job = self._execute_worker()
        report = self._wait(job, lambda s: s.get('done', 0) > 0)
        self._write_at_destination(5)
        report = self._wait(job, self._finished)
        self.assertEqual(copy_worker.DONE, report.get('phase'), report)
        self.engine.commit(self.dst_ioctx, self.name)

        self.assertEqual(state.MigrationState.NONE,
                         self.engine.status(self.dst_ioctx, self.name).state)
        self.assertEqual(self.model.sha256(),
                         base.image_sha256(self.dst_ioctx, self.name))
        with open(self.path, 'rb') as f:
            self.assertEqual(expected_source,
                             hashlib.sha256(f.read()).hexdigest())
        self.assertGreaterEqual(handle.status()['bytes_served'], SIZE)
        self.assertLess(prepared_in, 5)

    def test_exporter_killed_mid_copy_restarts_with_the_same_url(self):
        # capped, so that the copy is still running when the kill comes
        handle = self._export(max_bytes_per_sec=48 * units.Mi)
        url = handle.url
        self._prepare(url)
        self._write_at_destination(3)

        job = self._execute_worker()
        report = self._wait(job, lambda s: 0 < s.get('done', 0) and
                            s['done'] < s['total'] / 2)
        self.assertEqual(copy_worker.RUNNING, report.get('phase'), report)
        handle._kill()
        self.assertIsNone(exporter.Exporter.adopt(self.exports, self.name))

        again = exporter.Exporter.resume(self.exports, self.name)

        self.assertEqual(url, again.url)
        report = self._wait(job, self._finished)
        if report.get('phase') != copy_worker.DONE:
            # librbd gave up while the exporter was away: run it again
            job = self._execute_worker()
            report = self._wait(job, self._finished)
        self.assertEqual(copy_worker.DONE, report.get('phase'), report)
        self.engine.commit(self.dst_ioctx, self.name)
        self.assertEqual(self.model.sha256(),
                         base.image_sha256(self.dst_ioctx, self.name))

        again.stop()
        self.assertFalse(children.alive(again.pid))
        self.assertRaises(ConnectionRefusedError, socket.create_connection,
                          (again.address, again.port), 5)
        self.assertEqual([], os.listdir(self.exports))

    def test_librbd_reconnects_when_idle_connections_are_closed(self):
        # one connection at a time, closed after one idle second: each
        # reader waits for the other's connection to close, then librbd
        # reconnects on its own
        handle = self._export(timeout=1, max_connections=1)
        self._prepare(handle.url)
        first = rbd.Image(self.dst_ioctx, self.name, read_only=True)
        self.addCleanup(first.close)
        second = rbd.Image(self.dst_ioctx, self.name, read_only=True)
        self.addCleanup(second.close)
        for i, reader in enumerate((first, second, first, second)):
            offset = i * 40 * units.Mi + 4096
            self.assertEqual(
                bytes(self.model.data[offset:offset + units.Mi]),
                reader.read(offset, units.Mi))

    def test_https_with_a_trusted_certificate(self):
        cert_file, key_file = self_signed_cert(self.state_dir)
        self.addCleanup(os.unlink, cert_file)
        self.addCleanup(os.unlink, key_file)
        handle = self._export(cert_file=cert_file, key_file=key_file)
        self.assertTrue(handle.url.startswith('https://127.0.0.1:'))
        # librbd trusts what OpenSSL's default verify paths hold
        self.useFixture(fixtures.EnvironmentVariable('SSL_CERT_FILE',
                                                     cert_file))
        self._prepare(handle.url)
        self.assertEqual(self.model.sha256(),
                         base.image_sha256(self.dst_ioctx, self.name))


class RBDLunTest(base.FunctionalTestCase):
    """An RBD image served by the exporter (another cluster's, in use)."""

    def setUp(self):
        super(RBDLunTest, self).setUp()
        self.rng = random.Random(self.id())
        self.exports = os.path.join(self.state_dir, 'rbd-exports')
        self.name = 'rbdlun-' + self.id().rsplit('.', 1)[1][-20:]
        self.model = base.ImageModel(64 * units.Mi)
        rbd.RBD().create(self.src_ioctx, self.name, 64 * units.Mi)
        self.addCleanup(rbd.RBD().remove, self.src_ioctx, self.name)
        for at in range(0, 64 * units.Mi, 8 * units.Mi):
            self.model.write(self.src_ioctx, self.name, at,
                             self.rng.randbytes(units.Mi))

    def _export(self):
        handle = exporter.Exporter.start(
            self.exports, self.name, self.cluster.conf_path,
            exporter.generate_token(), port_range=process.free_port_range(21),
            rbd={'pool': self.src_pool, 'image': self.name,
                 'user': self.cluster.client})
        self.addCleanup(exporter.Exporter.forget, self.exports, self.name)
        return handle

    def test_served_bytes_are_the_image(self):
        served = self._export()
        status, body = _get(served.url)
        self.assertEqual(200, status)
        self.assertEqual(self.model.sha256(),
                         hashlib.sha256(body).hexdigest())

    def test_image_open_by_a_client_is_refused(self):
        with rbd.Image(self.src_ioctx, self.name) as writer:
            writer.write(b'x', 0)
            exc = self.assertRaises(exception.ExporterStartError,
                                    self._export)
        self.assertIn('open by 1 client', str(exc))
        self.assertEqual([], [f for f in os.listdir(self.exports)
                              if f.startswith('exporter.%s.' % self.name)])


def _get(url):
    parsed = urlparse.urlsplit(url)
    conn = http_client.HTTPConnection(parsed.hostname, parsed.port,
                                      timeout=30)
    try:
        conn.request('GET', parsed.path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
