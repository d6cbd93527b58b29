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

"""Import-only migrations reading a LUN through the exporter's NBD transport.

Real qemu-nbd with TLS and client certificates, real librbd (the nbd
stream of a raw source spec, through libnbd), a real cluster with cephx.
libnbd takes its client certificate from ``/etc/pki/libnbd``, so every
librbd client here runs in a mount namespace of its own with the
certificate directory of the case mounted there, as on a host.
"""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys

from oslo_utils import units
import psutil
import rbd

from cinder_asyncmig import children
from cinder_asyncmig.engine import features
from cinder_asyncmig import exception
from cinder_asyncmig.sandbox import pki
from cinder_asyncmig.sandbox import process
from cinder_asyncmig.sources import exporter
from tests.functional import base

SIZE = 64 * units.Mi + 4096

# a librbd client: import-only migration of argv's URI, then JSON with the
# sha256 read before the copy and after the commit, or the error
_CLIENT = '''
import hashlib, json, sys
import rados, rbd
conf, user, pool, name, uri = sys.argv[1:]
cluster = rados.Rados(conffile=conf, rados_id=user)
cluster.connect(timeout=30)
ioctx = cluster.open_ioctx(pool)
api = rbd.RBD()
def sha256():
    with rbd.Image(ioctx, name, read_only=True) as image:
        digest, size, at = hashlib.sha256(), image.size(), 0
        while at < size:
            digest.update(image.read(at, min(4 << 20, size - at)))
            at += 4 << 20
    return digest.hexdigest()
spec = {"type": "raw", "stream": {"type": "nbd", "uri": uri}}
try:
    api.migration_prepare_import(json.dumps(spec), ioctx, name)
except rbd.Error as exc:
    print(json.dumps({"error": type(exc).__name__,
                      "left": name in api.list(ioctx)}))
    sys.exit(0)
before = sha256()
api.migration_execute(ioctx, name)
api.migration_commit(ioctx, name)
print(json.dumps({"before": before, "after": sha256()}))
api.remove(ioctx, name)
'''


class NbdExporterTest(base.FunctionalTestCase):

    @classmethod
    def setUpClass(cls):
        if not features.CephFeatures.detect(rbd).nbd_stream:
            raise cls.skipException(
                'librbd of %s has no NBD stream' % base.release_label())
        super(NbdExporterTest, cls).setUpClass()

    def setUp(self):
        super(NbdExporterTest, self).setUp()
        self.rng = random.Random(self.id())
        self.exports = os.path.join(self.state_dir, 'exports')
        self.path = os.path.join(self.state_dir, 'lun-%s.img' %
                                 self.id().rsplit('.', 1)[1])
        with open(self.path, 'wb') as f:
            for at in range(0, SIZE, units.Mi):
                f.write(self.rng.randbytes(min(units.Mi, SIZE - at))
                        if self.rng.random() < 0.7 else
                        bytes(min(units.Mi, SIZE - at)))
        with open(self.path, 'rb') as f:
            self.sha256 = hashlib.sha256(f.read()).hexdigest()
        self.addCleanup(os.unlink, self.path)
        self.name = 'nbd-' + self.id().rsplit('.', 1)[1][-20:]
        self.tls = os.path.join(self.state_dir, 'tls-' + self.name)
        pki.write_nbd_files(os.path.join(self.tls, 'server'),
                            os.path.join(self.tls, 'client'), '127.0.0.1')

    def _export(self, **kwargs):
        handle = exporter.Exporter.start(
            self.exports, self.name, self.path, exporter.generate_token(),
            port_range=process.free_port_range(21), transport=exporter.NBD,
            nbd_tls_dir=os.path.join(self.tls, 'server'),
            nbd_identities=[pki.CLIENT_IDENTITY], **kwargs)
        self.addCleanup(exporter.Exporter.forget, self.exports, self.name)
        return handle

    def _client(self, uri, certificates='client'):
        """Import ``uri`` from a host whose /etc/pki/libnbd is given.

        :param certificates: a directory of ``self.tls``, or None for a
                             host with no client certificate.
        """
        argv = [sys.executable, '-c', _CLIENT, self.cluster.conf_path,
                self.cluster.client, self.dst_pool, self.name, uri]
        if certificates:
            argv = ['unshare', '--mount', '--propagation', 'private', '--',
                    '/bin/sh', '-c', 'mount --bind "$0" /etc/pki/libnbd && '
                    'exec "$@"', os.path.join(self.tls, certificates)] + argv
        result = subprocess.run(argv, capture_output=True, text=True,
                                timeout=300)
        self.assertEqual(0, result.returncode, result.stderr)
        return json.loads(result.stdout)

    def _listening(self, handle):
        server = psutil.Process(handle.status()['server_pid'])
        return sorted(c.laddr for c in server.net_connections(kind='inet')
                      if c.status == psutil.CONN_LISTEN)

    def test_read_by_librbd_with_a_client_certificate_only(self):
        handle = self._export()
        uri = handle.url
        self.assertEqual('nbds://127.0.0.1:%d/%s' % (handle.port, self.name),
                         uri)
        self.assertEqual([('127.0.0.1', handle.port)],
                         self._listening(handle))
        # the right certificate: the LUN's bytes, before and after the copy
        self.assertEqual({'before': self.sha256, 'after': self.sha256},
                         self._client(uri))
        # no certificate, another CA's, or no TLS: refused, nothing left
        pki.write_nbd_files(os.path.join(self.tls, 'other-server'),
                            os.path.join(self.tls, 'other'), '127.0.0.1')
        for certificates, url in ((None, uri), ('other', uri),
                                  ('client', uri.replace('nbds:', 'nbd:'))):
            answer = self._client(url, certificates)
            self.assertIn('error', answer, certificates)
            self.assertFalse(answer['left'], certificates)
        # refusals do not stop the export
        self.assertEqual([('127.0.0.1', handle.port)],
                         self._listening(handle))

    def test_killed_exporter_takes_qemu_nbd_along_and_restarts_same_uri(self):
        handle = self._export(max_bytes_per_sec=64 * units.Mi)
        server_pid = handle.status()['server_pid']
        os.kill(handle.pid, signal.SIGKILL)
        self.assertEqual([], children.wait_gone([handle.pid, server_pid], 30))
        self.assertIsNone(exporter.Exporter.adopt(self.exports, self.name))
        again = exporter.Exporter.restart(self.exports, self.name)
        self.assertEqual(handle.url, again.url)
        self.assertEqual({'before': self.sha256, 'after': self.sha256},
                         self._client(again.url))
        server_pid = again.status()['server_pid']
        exporter.Exporter.forget(self.exports, self.name)
        self.assertFalse(children.alive(server_pid))
        self.assertFalse(process.port_open(again.port))
        self.assertEqual([], [n for n in os.listdir(self.exports)
                              if self.name in n])

    def test_unusable_tls_directory_refused_before_start(self):
        os.unlink(os.path.join(self.tls, 'server', 'server-key.pem'))
        self.assertRaisesRegex(
            exception.ExporterInvalid, 'lacks server-key.pem',
            self._export)
        self.assertFalse(os.path.exists(self.exports) and [
            n for n in os.listdir(self.exports) if self.name in n])
