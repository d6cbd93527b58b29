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

"""librbd's behaviours the engine relies on, checked on each release.

Every test here runs on Pacific, Reef and Tentacle (the test legs): where
a release behaves differently, :mod:`cinder_asyncmig.engine.features`
says so and the test checks that it says right.
"""

import errno
import json
import os
import subprocess
import sys

from oslo_utils import units
import rbd

from cinder_asyncmig.engine import specs
from cinder_asyncmig.engine import state
from tests.functional import base

SIZE = 16 * units.Mi


class LibrbdReleaseTest(base.FunctionalTestCase):

    def setUp(self):
        super(LibrbdReleaseTest, self).setUp()
        self.name = 'probe-%s' % self.id().rsplit('.', 1)[-1][5:30]
        self.model = base.ImageModel(SIZE)
        rbd.RBD().create(self.src_ioctx, self.name, SIZE, old_format=False,
                         features=rbd.RBD_FEATURE_LAYERING)
        self.model.write(self.src_ioctx, self.name, 0, os.urandom(SIZE))
        self.addCleanup(self._remove)
        self.features = self.target_driver.engine.features

    def _remove(self):
        for ioctx in (self.dst_ioctx, self.src_ioctx):
            try:
                rbd.RBD().migration_abort(ioctx, self.name)
            except rbd.Error:
                pass
            try:
                with rbd.Image(ioctx, self.name) as img:
                    for snap in img.list_snaps():
                        if img.is_protected_snap(snap['name']):
                            img.unprotect_snap(snap['name'])
                        img.remove_snap(snap['name'])
                rbd.RBD().remove(ioctx, self.name)
            except rbd.ImageNotFound:
                pass

    def _native_spec(self, image, snapshot='frozen'):
        return specs.native(self.src_pool, image, snapshot)

    def test_status_names_the_source(self):
        rbd.RBD().migration_prepare(self.src_ioctx, self.name,
                                    self.dst_ioctx, self.name)
        raw = rbd.RBD().migration_status(self.dst_ioctx, self.name)
        # the binding's dest_pool_id is the source's pool id (16.2.15,
        # 18.2.7, 20.2.4): the engine leaves it out
        self.assertEqual(self.src_ioctx.get_pool_id(), raw['dest_pool_id'])
        status = self.target_driver.engine.status(self.dst_ioctx, self.name)
        self.assertFalse(hasattr(status, 'dest_pool_id'))
        self.assertIs(state.MigrationState.PREPARED, status.state)
        self.assertEqual(self.src_ioctx.get_pool_id(), status.source_pool_id)
        self.assertEqual(self.name, status.source_image)

    def test_abort_needs_the_destination_closed(self):
        rbd.RBD().migration_prepare(self.src_ioctx, self.name,
                                    self.dst_ioctx, self.name)
        with rbd.Image(self.dst_ioctx, self.name):
            self.assertRaises(rbd.ImageBusy, rbd.RBD().migration_abort,
                              self.dst_ioctx, self.name)
        rbd.RBD().migration_abort(self.dst_ioctx, self.name)
        self.assertEqual(self.model.sha256(),
                         base.image_sha256(self.src_ioctx, self.name))

    def test_progress_callback_cannot_cancel_execute(self):
        # ceph's rbd_support task queue returns -ECANCELED; through the
        # Python binding the value is ignored, so the copy worker is
        # stopped by signal, never by its callback
        rbd.RBD().migration_prepare(self.src_ioctx, self.name,
                                    self.dst_ioctx, self.name)
        calls = []

        def cancel(offset, total):
            calls.append(offset)
            return -errno.ECANCELED

        rbd.RBD().migration_execute(self.dst_ioctx, self.name,
                                    on_progress=cancel)
        self.assertTrue(calls)
        self.assertIs(state.MigrationState.EXECUTED,
                      self.target_driver.engine.status(self.dst_ioctx,
                                                       self.name).state)

    def test_native_import_copies_the_current_source_data(self):
        # Ceph tracker 67401: execute reads the source image's head, not
        # the snapshot the spec names, so a source must not be written
        # while it is imported
        with rbd.Image(self.src_ioctx, self.name) as img:
            img.create_snap('frozen')
        rbd.RBD().migration_prepare_import(
            specs.encode(self._native_spec(self.name)), self.dst_ioctx,
            self.name)
        self.model.write(self.src_ioctx, self.name, 0, b'\xab' * units.Mi)
        rbd.RBD().migration_execute(self.dst_ioctx, self.name)
        self.assertEqual(self.model.sha256(),
                         base.image_sha256(self.dst_ioctx, self.name))

    def test_native_spec_of_a_missing_source(self):
        # run where a crash cannot take the test process down
        code = (
            'import rados, rbd, sys\n'
            'c = rados.Rados(conffile=sys.argv[1], rados_id=sys.argv[2])\n'
            'c.connect()\n'
            'dst = c.open_ioctx(sys.argv[3])\n'
            'try:\n'
            '    rbd.RBD().migration_prepare_import(sys.argv[4], dst, "x")\n'
            'except rbd.ImageNotFound:\n'
            '    sys.exit(3)\n')
        spec = json.dumps(self._native_spec('missing-' + self.name))
        result = subprocess.run(
            [sys.executable, '-c', code, self.cluster.conf_path,
             self.cluster.client, self.dst_pool, spec],
            capture_output=True, timeout=120, check=False)
        if self.features.native_missing_source_crashes:
            self.assertLess(result.returncode, 0,
                            '%s did not crash' % base.release_label())
        else:
            self.assertEqual(3, result.returncode, result.stderr[-2000:])
        self.assertEqual([], rbd.RBD().list(self.dst_ioctx))

    def test_error_types_of_the_steps(self):
        # the engine maps librbd's errors by type only: the types it gets
        # for each refusal, the same on 16.2.15, 18.2.7 and 20.2.4
        api = rbd.RBD()
        io = self.src_ioctx
        rbd.RBD().create(io, self.name + '-taken', SIZE)
        self.addCleanup(api.remove, io, self.name + '-taken')
        found = {}

        def probe(label, step, *args):
            try:
                step(*args)
                found[label] = None
            except rbd.Error as exc:
                found[label] = (type(exc), exc.errno)
        probe('execute, not migrating', api.migration_execute, io, self.name)
        probe('commit, not migrating', api.migration_commit, io, self.name)
        probe('abort, not migrating', api.migration_abort, io, self.name)
        probe('status, not migrating', api.migration_status, io, self.name)
        probe('status, no image', api.migration_status, io, 'no-' + self.name)
        probe('prepare onto an image', api.migration_prepare, io, self.name,
              io, self.name + '-taken')
        with rbd.Image(io, self.name):
            probe('prepare, source open', api.migration_prepare, io,
                  self.name, self.dst_ioctx, self.name)
        probe('import, bad JSON', api.migration_prepare_import, '{',
              self.dst_ioctx, self.name)
        probe('import, unknown format', api.migration_prepare_import,
              json.dumps({'type': 'nope'}), self.dst_ioctx, self.name)
        probe('import, no such file', api.migration_prepare_import,
              specs.encode(specs.raw_file('/nonexistent/' + self.name)),
              self.dst_ioctx, self.name)
        probe('import, nothing listening', api.migration_prepare_import,
              specs.encode(specs.raw_http('http://127.0.0.1:9/x')),
              self.dst_ioctx, self.name)
        api.migration_prepare(io, self.name, self.dst_ioctx, self.name)
        probe('commit before execute', api.migration_commit, self.dst_ioctx,
              self.name)
        probe('remove a destination', api.remove, self.dst_ioctx, self.name)
        einval = (rbd.InvalidArgument, errno.EINVAL)
        self.assertEqual({
            'execute, not migrating': einval,
            'commit, not migrating': einval,
            'abort, not migrating': einval,
            'status, not migrating': einval,
            'status, no image': (rbd.ImageNotFound, errno.ENOENT),
            'prepare onto an image': (rbd.ImageExists, errno.EEXIST),
            'prepare, source open': (rbd.ImageBusy, errno.EBUSY),
            'import, bad JSON': (rbd.OSError, errno.EBADMSG),
            'import, unknown format': (rbd.FunctionNotSupported,
                                       errno.ENOSYS),
            'import, no such file': (rbd.ImageNotFound, errno.ENOENT),
            'import, nothing listening': (rbd.OSError, errno.ECONNREFUSED),
            'commit before execute': einval,
            'remove a destination': (rbd.ImageBusy, errno.EBUSY),
        }, found, base.release_label())
