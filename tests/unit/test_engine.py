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

"""Engine logic and error paths, with a fake librbd API.

The fake keeps a migration's state the way librbd does and raises the
real exception classes of Debian's rbd binding, so these tests check what
an operator would see: which error, and whether the images changed.
"""

from unittest import mock

import rbd
import testtools

from cinder_asyncmig.engine import features
from cinder_asyncmig.engine import migration
from cinder_asyncmig.engine import specs
from cinder_asyncmig.engine import state
from cinder_asyncmig import exception


class FakeRBD(object):
    """Just enough of rbd.RBD for the engine, state kept in a dict."""

    def __init__(self, images):
        self.images = images

    def version(self):
        return (1, 16, 0)

    def migration_status(self, ioctx, name):
        if name not in self.images:
            raise rbd.ImageNotFound('no image', errno=2)
        image = self.images[name]
        if 'migration' not in image:
            raise rbd.InvalidArgument('not migrating', errno=22)
        return dict(image['migration'])

    def migration_abort(self, ioctx, name, on_progress=None):
        del self.images[name]

    def migration_prepare(self, *args, **kwargs):
        raise self.fail_with

    def migration_prepare_import(self, spec, ioctx, name, **kwargs):
        self.images[name] = {'migration': {
            'state': rbd.RBD_IMAGE_MIGRATION_STATE_PREPARED,
            'source_pool_id': -1}, 'watchers': []}


class FakeImage(object):
    def __init__(self, rbd_api, name):
        self.image = rbd_api.images[name]

    def watchers_list(self):
        return [{'addr': a} for a in self.image['watchers']]

    def close(self):
        pass


def _engine(images):
    api = FakeRBD(images)
    module = mock.Mock(wraps=rbd)
    for name in dir(rbd):
        if not name.startswith('_') and name not in ('RBD', 'Image'):
            setattr(module, name, getattr(rbd, name))
    module.RBD.return_value = api
    module.Image.side_effect = lambda ioctx, name, read_only=False: (
        FakeImage(api, name))
    return migration.Engine(module), api


def _import_only(watchers=()):
    return {'migration': {'state': rbd.RBD_IMAGE_MIGRATION_STATE_EXECUTING,
                          'source_pool_id': -1},
            'watchers': list(watchers)}


def _linked(watchers=()):
    return {'migration': {'state': rbd.RBD_IMAGE_MIGRATION_STATE_PREPARED,
                          'source_pool_id': 3, 'source_image_name': 'src'},
            'watchers': list(watchers)}


class StatusTest(testtools.TestCase):

    def test_missing_image_has_no_status(self):
        engine, _api = _engine({})
        self.assertIsNone(engine.status(None, 'vol'))

    def test_image_not_migrating(self):
        engine, _api = _engine({'vol': {'watchers': []}})
        self.assertIs(state.MigrationState.NONE,
                      engine.status(None, 'vol').state)

    def test_linked_and_import_only_told_apart(self):
        engine, _api = _engine({'a': _linked(), 'b': _import_only()})
        a, b = engine.status(None, 'a'), engine.status(None, 'b')
        self.assertFalse(a.import_only)
        self.assertEqual('src', a.source_image)
        self.assertTrue(b.import_only)
        self.assertIs(state.MigrationState.EXECUTING, b.state)

    def test_every_librbd_state_is_mapped(self):
        for name in dir(rbd):
            if name.startswith('RBD_IMAGE_MIGRATION_STATE_'):
                mapped = state.MigrationState.from_librbd(
                    rbd, getattr(rbd, name))
                self.assertEqual(name.rsplit('_', 1)[1].lower(),
                                 mapped.value)


class AbortRuleTest(testtools.TestCase):

    def test_import_only_abort_refused_once_exposed(self):
        engine, api = _engine({'vol': _import_only()})
        exc = self.assertRaises(exception.MigrationAbortRefused,
                                engine.abort, None, 'vol')
        self.assertIn('would be lost', str(exc))
        self.assertIn('vol', api.images)

    def test_import_only_abort_forced(self):
        engine, api = _engine({'vol': _import_only()})
        self.assertTrue(engine.abort(None, 'vol', force=True))
        self.assertNotIn('vol', api.images)

    def test_import_only_abort_before_anyone_saw_it(self):
        engine, api = _engine({'vol': _import_only()})
        self.assertTrue(engine.abort(None, 'vol', exposed=False))
        self.assertNotIn('vol', api.images)

    def test_linked_abort_allowed(self):
        engine, api = _engine({'vol': _linked()})
        self.assertTrue(engine.abort(None, 'vol'))
        self.assertNotIn('vol', api.images)

    def test_abort_refused_while_open(self):
        engine, api = _engine({'vol': _linked(watchers=['1.2.3.4:0/1'])})
        exc = self.assertRaises(exception.MigrationConflict,
                                engine.abort, None, 'vol')
        self.assertIn('open by 1 client', str(exc))
        self.assertIn('vol', api.images)

    def test_nothing_to_abort(self):
        engine, _api = _engine({'vol': {'watchers': []}})
        self.assertFalse(engine.abort(None, 'vol'))


class ErrorMappingTest(testtools.TestCase):

    scenarios = [
        (rbd.NoSpace, exception.MigrationNoSpace, 'pool is full'),
        (rbd.ImageExists, exception.MigrationConflict, 'already exists'),
        (rbd.ImageBusy, exception.MigrationConflict, 'open by another'),
        (rbd.PermissionError, exception.MigrationEngineError,
         'profile rbd'),
        (rbd.ImageNotFound, exception.MigrationEngineError, 'not found'),
        (rbd.InvalidArgument, exception.MigrationEngineError,
         'current migration state'),
        (rbd.Timeout, exception.MigrationEngineError, 'errno 110'),
    ]

    def test_librbd_errors_map_by_type(self):
        for librbd_error, plugin_error, text in self.scenarios:
            engine, api = _engine({})
            api.fail_with = librbd_error('error aborting migration',
                                         errno=110)
            exc = self.assertRaises(plugin_error, engine.prepare_linked,
                                    None, 'src', None, 'dst')
            self.assertIn(text, str(exc))
            self.assertIs(api.fail_with, exc.__cause__)
            # librbd's misleading message never reaches the user
            self.assertNotIn('aborting', str(exc))


class PrepareImportTest(testtools.TestCase):

    def test_cross_cluster_native_refused_on_pacific(self):
        engine, api = _engine({})
        spec = specs.native('p', 'i', 's', cluster_name='other')
        exc = self.assertRaises(exception.MigrationFeatureUnsupported,
                                engine.prepare_import, spec, None, 'dst')
        self.assertIn('Ceph 20', str(exc))
        self.assertEqual({}, api.images)

    def test_native_without_snapshot_refused(self):
        engine, api = _engine({})
        self.assertRaises(exception.MigrationSourceRefused,
                          engine.prepare_import,
                          specs.native('p', 'i', None), None, 'dst')
        self.assertEqual({}, api.images)

    def test_raw_file_import(self):
        engine, api = _engine({})
        engine.prepare_import(specs.raw_file('/x'), None, 'dst')
        self.assertTrue(engine.status(None, 'dst').import_only)


class FeaturesTest(testtools.TestCase):

    def test_pacific(self):
        f = features.CephFeatures.from_librbd_version((1, 16, 0))
        self.assertEqual(16, f.release)
        self.assertTrue(f.live_migration)
        self.assertTrue(f.import_only)
        self.assertFalse(f.native_cross_cluster)
        self.assertFalse(f.nbd_stream)

    def test_tentacle(self):
        f = features.CephFeatures.from_librbd_version((1, 20, 0))
        self.assertTrue(f.native_cross_cluster)
        f.require('native_cross_cluster')

    def test_require_names_versions(self):
        f = features.CephFeatures.from_librbd_version((1, 12, 0))
        exc = self.assertRaises(exception.MigrationFeatureUnsupported,
                                f.require, 'live_migration')
        self.assertIn('Ceph 14 or later', str(exc))
        self.assertIn('Ceph 12', str(exc))

    def test_unknown_major(self):
        self.assertRaises(ValueError,
                          features.CephFeatures.from_librbd_version,
                          (2, 0, 0))


class SpecsAndProgressTest(testtools.TestCase):

    def test_native_spec(self):
        spec = specs.native('p', 'i', 's', namespace='ns')
        self.assertEqual({'type': 'native', 'pool_name': 'p',
                          'image_name': 'i', 'snap_name': 's',
                          'pool_namespace': 'ns'}, spec)
        self.assertFalse(specs.is_cross_cluster(spec))
        self.assertEqual(specs.encode(spec), specs.encode(dict(spec)))

    def test_http_spec(self):
        self.assertEqual({'type': 'raw', 'stream': {
            'type': 'http', 'url': 'https://h/x'}},
            specs.raw_http('https://h/x'))

    def test_progress_from_objects(self):
        p = state.Progress.from_objects(3, 12, 1025 * 2 ** 20)
        self.assertEqual(1025 * 2 ** 20 // 4, p.bytes_copied)
        self.assertEqual(25.0, p.percent)
        self.assertEqual(0, state.Progress.from_objects(0, 0, 10)
                         .bytes_copied)
        self.assertEqual(100.0, state.Progress(0, 0).percent)
        self.assertEqual({'bytes_copied': 5, 'bytes_total': 10,
                          'percent': 50.0, 'rate_bytes_per_sec': 2},
                         state.Progress(5, 10, 2.7).as_dict())


class WorkerErrorTest(testtools.TestCase):

    def test_worker_error_mapped_like_in_process_errors(self):
        engine, _api = _engine({})
        exc = self.assertRaises(exception.MigrationNoSpace,
                                engine.raise_execute_error, 'vol',
                                'NoSpace', 28)
        self.assertIsInstance(exc.__cause__, rbd.NoSpace)
        self.assertIn('pool is full', str(exc))

    def test_unknown_worker_error_type(self):
        engine, _api = _engine({})
        for name in ('NoSuchClass', 'object', None):
            exc = self.assertRaises(exception.MigrationEngineError,
                                    engine.raise_execute_error, 'vol', name,
                                    5)
            self.assertIn('errno 5', str(exc))
