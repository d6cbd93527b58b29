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

"""Source kinds: their order, and which one takes a source over."""

import json
import logging
import os
from unittest import mock

import fixtures
from oslo_utils import units
import testtools

from cinder_asyncmig.engine import features
from cinder_asyncmig.engine import migration
from cinder_asyncmig.engine import specs
from cinder_asyncmig.engine import state
from cinder_asyncmig import exception
from cinder_asyncmig.sources import base
from cinder_asyncmig.sources import kinds
from cinder_asyncmig.sources import native
from cinder_asyncmig.sources import registry
from tests.unit import test_driver

OTHER_FSID = '6a8c3b8e-2222-4c1f-9a39-000000000002'
OFF = 'off here (async_migration_source_kinds)'


class _Kind(base.SourceKind):
    """A kind that declines with a fixed reason, or takes any source."""

    def __init__(self, name, reason=None):
        self.name = name
        self.reason = reason

    def decline_reason(self, offer):
        return self.reason

    def prepare(self, offer):
        return True, True, {}


class _FakeRados(object):
    """librados as the native kind uses it: clusters known by name."""

    Error = type('Error', (Exception,), {})
    ObjectNotFound = type('ObjectNotFound', (Error,), {})

    def __init__(self, known, rados_id=None, clustername=None,
                 conffile=None):
        self.fsid = known.get(clustername)

    @classmethod
    def module(cls, known):
        return mock.Mock(Error=cls.Error, ObjectNotFound=cls.ObjectNotFound,
                         Rados=lambda **kw: cls(known, **kw))

    def conf_set(self, key, value):
        pass

    def connect(self):
        if self.fsid is None:
            raise self.ObjectNotFound('no conf')

    def get_fsid(self):
        return self.fsid

    def open_ioctx(self, pool):
        return mock.Mock()

    def shutdown(self):
        pass


class ChooseTest(testtools.TestCase):

    def test_first_kind_that_can_take_it_wins(self):
        kinds_ = [_Kind('a', 'too far'), _Kind('b'), _Kind('c')]
        kind, reasons = registry.choose(kinds_, ['a', 'b', 'c'], None)
        self.assertIs(kinds_[1], kind)
        self.assertEqual(['a: too far'], reasons)

    def test_disabled_kind_is_skipped(self):
        kinds_ = [_Kind('a'), _Kind('b')]
        kind, reasons = registry.choose(kinds_, ['b'], None)
        self.assertIs(kinds_[1], kind)
        self.assertEqual(['a: ' + OFF], reasons)

    def test_every_reason_when_none_can(self):
        kinds_ = [_Kind('a', 'too far'), _Kind('b'), _Kind('c', 'too old')]
        self.assertEqual(
            (None, ['a: too far', 'b: ' + OFF, 'c: too old']),
            registry.choose(kinds_, ['a', 'c'], None))


class _Engine(object):
    """librbd's migration as the kinds use it, kept in dicts."""

    def __init__(self, release=16):
        self.features = features.CephFeatures(release=release)
        self.specs = {}
        self.records = {}
        # the source images of another cluster: name -> watchers
        self.images = {}
        self.snapshots = set()

    def status(self, ioctx, name):
        if name not in self.specs:
            return None
        return state.MigrationStatus(state.MigrationState.PREPARED,
                                     source_pool_id=-1)

    def prepare_import(self, spec, ioctx, name):
        self.specs[name] = spec

    def inspect(self, ioctx, name):
        if name in self.specs:
            return mock.Mock(size=units.Gi)
        if name not in self.images:
            return None
        return mock.Mock(size=units.Gi, watchers=self.images[name],
                         migrating=False)

    def freeze(self, ioctx, name, snapshot):
        self.snapshots.add((name, snapshot))

    def thaw(self, ioctx, name, snapshot):
        self.snapshots.discard((name, snapshot))

    def read_record(self, ioctx, name):
        return dict(self.records.get(name, {}))

    def write_record(self, ioctx, name, record):
        self.records[name] = record


class DriverChoiceTest(test_driver.DriverTestCase):
    """Which kind the target driver picks, and what it records."""

    def setUp(self):
        super(DriverChoiceTest, self).setUp()
        self.fake_cluster()
        self.log = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        self.state_dir = self.useFixture(fixtures.TempDir()).path
        self.set('async_migration_state_dir', self.state_dir)
        self.set('async_migration_shared_file_backends', ['nfs'])
        self.set('async_migration_source_kinds', list(kinds.ALL))

    def make_driver(self):
        self.engine = _Engine()
        with mock.patch.object(migration, 'Engine',
                               return_value=self.engine):
            return super(DriverChoiceTest, self).make_driver()

    def file_host(self):
        """An NFS volume whose file this host reads at the same path."""
        path = os.path.join(self.state_dir, self.volume.name)
        with open(path, 'wb') as f:
            f.truncate(self.volume.size * units.Gi)
        return {'host': 'h@nfs#nfs', 'volume_path': path,
                'capabilities': {'volume_backend_name': 'nfs',
                                 'storage_protocol': 'nfs'}}

    def migrate(self, host):
        return self.driver.migrate_volume_target(self.ctxt, self.volume,
                                                 host)

    def test_kinds_best_first(self):
        self.assertEqual(
            [kinds.RBD_LINKED, kinds.RBD_NATIVE, kinds.SHARED_FILE,
             kinds.EXPORTER],
            [kind.name for kind in registry.load(self.driver)])

    def test_linked_wins_over_the_exporter(self):
        # in the target's pool already: only the linked kind says so
        self.assertEqual((True, False, None),
                         self.migrate(self._host(pool='dst')))
        self.assertEqual({}, self.engine.records)

    def test_shared_file_wins_over_the_exporter(self):
        host = self.file_host()
        self.assertEqual((True, True, {}), self.migrate(host))
        record = self.engine.records[self.volume.name]
        self.assertEqual(kinds.SHARED_FILE, record['kind'])
        self.assertEqual({'backend': 'nfs', 'path': host['volume_path']},
                         record['source'])
        self.assertEqual(specs.raw_file(host['volume_path']),
                         self.engine.specs[self.volume.name])
        # the better kinds say why not
        self.assertIn('with source kind %s; the better kinds cannot: %s: '
                      'the source backend reports no RBD location' % (
                          kinds.SHARED_FILE, kinds.RBD_LINKED),
                      self.log.output)
        # a repeated request changes nothing
        self.assertEqual((True, True, {}), self.migrate(host))
        self.assertEqual(record, self.engine.records[self.volume.name])

    def test_disabled_kind_is_skipped(self):
        self.set('async_migration_source_kinds',
                 [kinds.RBD_LINKED, kinds.RBD_NATIVE])
        self.assertEqual((False, False, None),
                         self.migrate(self.file_host()))
        self.assertEqual({}, self.engine.records)
        self.assertIn('%s: %s' % (kinds.SHARED_FILE, OFF), self.log.output)

    def test_every_declining_kind_says_why(self):
        host = self.file_host()
        host['capabilities']['volume_backend_name'] = 'not-shared'
        self.set('async_migration_source_kinds',
                 [k for k in kinds.ALL if k != kinds.EXPORTER])
        self.assertEqual((False, False, None), self.migrate(host))
        self.assertIn(
            'Not taking over volume %(vol)s asynchronously: '
            '%(linked)s: the source backend reports no RBD location; '
            '%(native)s: the source backend reports no RBD location; '
            '%(file)s: the source backend is not a file backend listed in '
            'async_migration_shared_file_backends; %(exporter)s: %(off)s. '
            'Cinder falls back to another migration.' % {
                'vol': self.volume.id, 'linked': kinds.RBD_LINKED,
                'native': kinds.RBD_NATIVE, 'file': kinds.SHARED_FILE,
                'exporter': kinds.EXPORTER, 'off': OFF},
            self.log.output)

    def test_other_cluster_needs_newer_ceph(self):
        self.set('async_migration_source_kinds',
                 [kinds.RBD_LINKED, kinds.RBD_NATIVE])
        self.assertEqual((False, False, None),
                         self.migrate(self._host(fsid=OTHER_FSID)))
        self.assertIn('%s: its RBD source is in another Ceph cluster (fsid '
                      '%s)' % (kinds.RBD_LINKED, OTHER_FSID),
                      self.log.output)
        self.assertIn('%s: its RBD source is in another Ceph cluster (fsid '
                      '%s) and librbd here is Ceph 16; native cross-cluster '
                      'import needs 20.2' % (kinds.RBD_NATIVE, OTHER_FSID),
                      self.log.output)

    def native(self, known_clusters):
        """Tentacle's librbd here; this host knows ``known_clusters``."""
        self.engine.features = features.CephFeatures(release=20)
        kind = [k for k in self.driver._kinds
                if k.name == kinds.RBD_NATIVE][0]
        kind.rados = _FakeRados.module(known_clusters)
        return kind

    def xcluster_host(self):
        host = self._host(fsid=OTHER_FSID)
        host['capabilities']['location_info'] = (
            'xcluster:/etc/ceph/xcluster.conf:%s:cinder:src' % OTHER_FSID)
        return host

    def test_other_cluster_this_host_cannot_reach_is_exported(self):
        self.native({})
        self.set('async_migration_source_kinds',
                 [kinds.RBD_NATIVE, kinds.EXPORTER])
        with mock.patch('cinder_asyncmig.sources.exported.ExportedSource'
                        '.start', side_effect=ValueError('exporter')):
            self.assertRaises(ValueError, self.migrate, self.xcluster_host())
        self.assertIn('%s: this host cannot connect to the Ceph cluster '
                      'xcluster as client.cinder the way librbd would '
                      '(/etc/ceph/xcluster.conf and the client\'s keyring): '
                      'ObjectNotFound' % kinds.RBD_NATIVE, self.log.output)

    def test_other_cluster_known_here_under_another_fsid(self):
        self.native({'xcluster': test_driver.FSID})
        self.set('async_migration_source_kinds', [kinds.RBD_NATIVE])
        self.assertEqual((False, False, None),
                         self.migrate(self.xcluster_host()))
        self.assertIn("the Ceph cluster this host knows as xcluster has the "
                      "fsid %s, not the source's %s" % (
                          test_driver.FSID, OTHER_FSID), self.log.output)
        self.assertEqual(set(), self.engine.snapshots)

    def test_other_cluster_imported_from_a_protected_snapshot(self):
        kind = self.native({'xcluster': OTHER_FSID})
        self.engine.images[self.volume.name] = ()
        self.assertEqual((True, True, {}), self.migrate(self.xcluster_host()))
        self.assertEqual(
            specs.native('src', self.volume.name, native.SNAPSHOT,
                         cluster_name='xcluster', client_name='client.cinder'),
            self.engine.specs[self.volume.name])
        record = self.engine.records[self.volume.name]
        self.assertEqual(kinds.RBD_NATIVE, record['kind'])
        self.assertEqual({'fsid': OTHER_FSID, 'pool': 'src',
                          'image': self.volume.name,
                          'cluster_name': 'xcluster', 'user': 'cinder',
                          'snapshot': native.SNAPSHOT}, record['source'])
        self.assertEqual({(self.volume.name, native.SNAPSHOT)},
                         self.engine.snapshots)
        # no key anywhere in what librbd or the record keep
        self.assertNotIn('key', json.dumps([record, self.engine.specs]))
        # once the migration is over, the snapshot goes
        self.engine.specs.clear()
        kind.stop(self.ctxt, self.volume, record)
        self.assertEqual(set(), self.engine.snapshots)

    def test_missing_source_refused_before_librbd_sees_it(self):
        self.native({'xcluster': OTHER_FSID})
        self.assertRaises(exception.MigrationSourceNotFound, self.migrate,
                          self.xcluster_host())
        self.assertEqual(({}, {}, set()), (self.engine.specs,
                                           self.engine.records,
                                           self.engine.snapshots))

    def test_source_open_by_a_client_refused(self):
        self.native({'xcluster': OTHER_FSID})
        self.engine.images[self.volume.name] = ('10.0.0.9:0/1',)
        self.assertRaisesRegex(exception.MigrationSourceRefused,
                               'open by 1 client', self.migrate,
                               self.xcluster_host())
        self.assertEqual(({}, set()), (self.engine.specs,
                                       self.engine.snapshots))

    def test_failed_prepare_removes_the_snapshot(self):
        self.native({'xcluster': OTHER_FSID})
        self.engine.images[self.volume.name] = ()
        with mock.patch.object(self.engine, 'prepare_import',
                               side_effect=exception.MigrationNoSpace(
                                   image=self.volume.name, step='prepare')):
            self.assertRaises(exception.MigrationNoSpace, self.migrate,
                              self.xcluster_host())
        self.assertEqual(({}, set()), (self.engine.records,
                                       self.engine.snapshots))

    def test_image_of_this_cluster_is_never_exported(self):
        # an import-only abort would lose what a linked one gives back
        self.set('async_migration_source_kinds',
                 [kinds.RBD_NATIVE, kinds.EXPORTER])
        self.assertEqual((False, False, None), self.migrate(self._host()))
        self.assertIn('%s: its RBD source is in this Ceph cluster, which '
                      'only %s takes over' % (kinds.EXPORTER,
                                              kinds.RBD_LINKED),
                      self.log.output)
        self.assertEqual([], os.listdir(self.state_dir))
