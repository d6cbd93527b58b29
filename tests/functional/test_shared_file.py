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

"""Shared-file sources (a volume in a file) on a real Ceph cluster."""

import hashlib
import os
import random
import shutil
import tempfile
import uuid

from cinder import objects
from oslo_utils import units
import rbd

from cinder_asyncmig.engine import state
from cinder_asyncmig import exception
from cinder_asyncmig.sandbox import backends
from cinder_asyncmig.sources import kinds
from cinder_asyncmig.volume.drivers import rbd as target_rbd
from tests.functional import base

BACKEND = 'files'


def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(4 * units.Mi), b''):
            digest.update(chunk)
    return digest.hexdigest()


class SharedFileTest(base.FunctionalTestCase):

    @classmethod
    def setUpClass(cls):
        super(SharedFileTest, cls).setUpClass()
        cls.share = tempfile.mkdtemp(prefix='share-', dir=base._test_dir())
        cls.target_driver = backends.make_driver(
            target_rbd.AsyncMigrationRBDDriver, cls.cluster, cls.dst_pool,
            async_migration_state_dir=cls.state_dir,
            async_migration_poll_interval=0.2,
            async_migration_shared_file_backends=BACKEND)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.share, ignore_errors=True)
        super(SharedFileTest, cls).tearDownClass()

    def setUp(self):
        super(SharedFileTest, self).setUp()
        self.rng = random.Random(self.id())

    def file_volume(self, size=units.Gi, density=0.5):
        """A sparse raw volume file, as Cinder's NFS driver keeps one."""
        volume = objects.Volume(self.ctxt, id=str(uuid.uuid4()),
                                _name_id=None, size=size // units.Gi,
                                volume_type=None, metadata={})
        path = os.path.join(self.share, volume.name)
        model = base.ImageModel(size)
        with open(path, 'wb') as f:
            f.truncate(size)
            for at in range(0, size, 4 * units.Mi):
                if self.rng.random() < density:
                    payload = self.rng.randbytes(units.Mi)
                    f.seek(at)
                    f.write(payload)
                    model.apply(at, payload)
        return volume, path, model

    def src_host(self, path, backend=BACKEND):
        return {'host': 'sandbox@%s#%s' % (backend, backend),
                'capabilities': {'volume_backend_name': backend,
                                 'storage_protocol': 'nfs'},
                'volume_path': path}

    def test_readable_at_once_then_copied_with_writes(self):
        volume, path, model = self.file_volume()
        source_sha = _file_sha256(path)

        moved = self.target_driver.migrate_volume_target(
            self.ctxt, volume, self.src_host(path))

        self.assertEqual((True, True, {}), moved)
        status = self.target_driver.engine.status(self.dst_ioctx,
                                                  volume.name)
        self.assertTrue(status.import_only)
        self.assertEqual(model.sha256(),
                         base.image_sha256(self.dst_ioctx, volume.name))
        record = self.target_driver.engine.read_record(self.dst_ioctx,
                                                       volume.name)
        self.assertEqual(kinds.SHARED_FILE, record['kind'])
        self.assertEqual(path, record['source']['path'])

        # a duplicate request changes nothing
        self.assertEqual((True, True, {}),
                         self.target_driver.migrate_volume_target(
                             self.ctxt, volume, self.src_host(path)))

        with rbd.Image(self.dst_ioctx, volume.name) as hypervisor:
            for at in (0, 300 * units.Mi + 5, units.Gi - 64 * units.Ki):
                payload = self.rng.randbytes(64 * units.Ki)
                hypervisor.write(payload, at)
                model.apply(at, payload)
            hypervisor.flush()
        final = self.target_driver.complete_migration_target(
            self.ctxt, volume)

        self.assertTrue(final['source_left'])
        self.assertEqual(state.MigrationState.NONE,
                         self.target_driver.engine.status(
                             self.dst_ioctx, volume.name).state)
        self.assertEqual(model.sha256(),
                         base.image_sha256(self.dst_ioctx, volume.name))
        # librbd only ever read the source
        self.assertEqual(source_sha, _file_sha256(path))

    def test_abort_after_exposure_refused_unless_forced(self):
        volume, path, _model = self.file_volume(density=0.1)
        self.target_driver.migrate_volume_target(self.ctxt, volume,
                                                 self.src_host(path))
        self.assertRaises(exception.MigrationAbortRefused,
                          self.target_driver.abort_migration_target,
                          self.ctxt, volume)
        self.assertRaises(exception.MigrationAbortRefused,
                          self.target_driver.delete_volume, volume)
        self.assertIn(volume.name, rbd.RBD().list(self.dst_ioctx))
        self.assertTrue(self.target_driver.abort_migration_target(
            self.ctxt, volume, force=True))
        self.assertNotIn(volume.name, rbd.RBD().list(self.dst_ioctx))
        self.assertTrue(os.path.exists(path))

    def _assert_declined(self, volume, host):
        self.assertEqual((False, False, None),
                         self.target_driver.migrate_volume_target(
                             self.ctxt, volume, host))
        self.assertNotIn(volume.name, rbd.RBD().list(self.dst_ioctx))

    def test_declined_when_not_usable_here(self):
        volume, path, _model = self.file_volume(density=0.01)
        # not declared shared on this host
        self._assert_declined(volume, self.src_host(path, backend='other'))
        # not at that path here
        self._assert_declined(volume, self.src_host(path + '.missing'))
        # not the volume's size
        with open(path, 'r+b') as f:
            f.truncate(units.Gi + 512)
        self._assert_declined(volume, self.src_host(path))
        # a qcow2 file
        with open(path, 'r+b') as f:
            f.truncate(units.Gi)
            f.write(b'QFI\xfb\x00\x00\x00\x03')
        self._assert_declined(volume, self.src_host(path))
