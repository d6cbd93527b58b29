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

"""Linked (same cluster) take-over on a real Ceph cluster with cephx."""

import json
import os
import random
import signal
import subprocess
import sys
import time

from oslo_utils import units
import rados
import rbd
import testtools
from testtools import content

from cinder_asyncmig import children
from cinder_asyncmig.engine import migration
from cinder_asyncmig.engine import specs
from cinder_asyncmig.engine import state
from cinder_asyncmig.engine import worker as copy_worker
from cinder_asyncmig import exception
from cinder_asyncmig.sandbox import process
from cinder_asyncmig.volume import throttle
from tests.functional import base


class LinkedMigrationTest(base.FunctionalTestCase):

    def setUp(self):
        super(LinkedMigrationTest, self).setUp()
        self.rng = random.Random(self.id())

    def _prepared(self, size_bytes, density=0.6):
        volume = self.make_volume(size_gib=max(1, size_bytes // units.Gi),
                                  size_bytes=size_bytes)
        model = base.ImageModel(size_bytes)
        base.fill_with_holes(model, self.src_ioctx, volume.name, self.rng,
                             density)
        moved = self.target_driver.migrate_volume_target(
            self.ctxt, volume, self.src_host())
        self.assertEqual((True, True, {}), moved)
        return volume, model

    def _complete_to_success(self, volume, model, watch):
        """Complete the migration; return its seconds once bytes match."""
        started = time.monotonic()
        final = self.target_driver.complete_migration_target(
            self.ctxt, volume, watch)
        took = time.monotonic() - started
        self.assertEqual('success', final['phase'])
        self.assertEqual(model.sha256(),
                         base.image_sha256(self.dst_ioctx, volume.name))
        self.assertEqual([], self._worker_files(volume))
        return took

    def _worker_files(self, volume):
        return [name for name in os.listdir(self.state_dir)
                if volume.name in name]

    def _dst_names(self):
        return rbd.RBD().list(self.dst_ioctx)

    def _src_names(self):
        return rbd.RBD().list(self.src_ioctx)

    def _status(self, volume):
        return self.target_driver.engine.status(self.dst_ioctx, volume.name)

    def test_dense_unaligned_volume_readable_at_once(self):
        size = 1025 * units.Mi
        volume = self.make_volume(size_gib=2, size_bytes=size)
        model = base.ImageModel(size)
        base.fill_with_holes(model, self.src_ioctx, volume.name, self.rng)
        expected = model.sha256()
        self.assertEqual(expected,
                         base.image_sha256(self.src_ioctx, volume.name))

        moved = self.target_driver.migrate_volume_target(
            self.ctxt, volume, self.src_host())

        self.assertEqual((True, True, {}), moved)
        self.assertEqual(state.MigrationState.PREPARED,
                         self._status(volume).state)
        # nothing is copied yet: every read goes through to the source
        self.assertEqual(expected,
                         base.image_sha256(self.dst_ioctx, volume.name))

        seen = []
        final = self.target_driver.complete_migration_target(
            self.ctxt, volume, seen.append)

        self.assertEqual('success', final['phase'])
        self.assertEqual(size, final['bytes_copied'])
        self.assertEqual(100.0, final['percent'])
        self.assertEqual(state.MigrationState.NONE,
                         self._status(volume).state)
        self.assertEqual(expected,
                         base.image_sha256(self.dst_ioctx, volume.name))
        self.assertNotIn(volume.name, self._src_names())
        self.assertEqual({}, self.target_driver.engine.read_record(
            self.dst_ioctx, volume.name))
        percents = [p['percent'] for p in seen if p.get('phase') == 'copying']
        self.assertEqual(sorted(percents), percents)

    def test_writes_before_and_during_copy_survive(self):
        volume, model = self._prepared(1024 * units.Mi, density=1.0)
        # a hypervisor attached at the destination writes at once ...
        with rbd.Image(self.dst_ioctx, volume.name) as hypervisor:
            for at in (0, 5 * units.Mi + 17, 1000 * units.Mi):
                payload = self.rng.randbytes(64 * units.Ki)
                hypervisor.write(payload, at)
                model.apply(at, payload)
            during = []

            # ... and while the background copy runs
            def write_during_copy(progress):
                if (progress.get('phase') == 'copying' and
                        0 < progress['percent'] < 100 and len(during) < 20):
                    at = self.rng.randrange(0, 1024 * units.Mi - units.Mi)
                    payload = self.rng.randbytes(units.Mi)
                    hypervisor.write(payload, at)
                    model.apply(at, payload)
                    during.append(at)

            self.target_driver.complete_migration_target(
                self.ctxt, volume, write_during_copy)
            hypervisor.flush()

        self.assertNotEqual([], during, 'no write landed during the copy')
        self.assertEqual(state.MigrationState.NONE,
                         self._status(volume).state)
        self.assertEqual(model.sha256(),
                         base.image_sha256(self.dst_ioctx, volume.name))

    def test_copy_held_to_its_cap_which_changes_while_it_runs(self):
        volume, model = self._prepared(1024 * units.Mi, density=1.0)
        cap = 128 * units.Mi
        volume.metadata = {throttle.RATE_KEY: str(cap)}
        status_path = self.target_driver._status_path(volume.name)
        capped, lifted = [], []

        def watch(progress):
            if progress.get('phase') != 'copying':
                return
            sample = (time.monotonic(), progress['bytes_copied'],
                      copy_worker.read_status(status_path).get(
                          'max_bytes_per_sec'))
            if lifted or progress['percent'] >= 50:
                if not lifted:
                    self.target_driver.set_copy_rate(volume, 0)
                lifted.append(sample)
            else:
                capped.append(sample)

        final = self.target_driver.complete_migration_target(
            self.ctxt, volume, watch)

        self.assertEqual('success', final['phase'])
        self.assertEqual(model.sha256(),
                         base.image_sha256(self.dst_ioctx, volume.name))
        # from the worker's first report on (it starts in a fraction of
        # a second, during which the progress is 0)
        capped = [sample for sample in capped if sample[2] is not None]
        self.assertGreater(len(capped), 2)
        # never ahead of the cap by more than librbd's one batch of
        # concurrent object copies (10 objects of 4 MiB)
        started, base_bytes, _ = capped[0]
        for at, copied, reported in capped[1:]:
            self.assertEqual(cap, reported)
            self.assertLessEqual(copied - base_bytes,
                                 cap * (at - started) + 40 * units.Mi)
        # and the worker took the lifted cap while it copied
        self.assertIn(0, [reported for _at, _copied, reported in lifted])
        self.assertFalse(os.path.exists(copy_worker.rate_path(status_path)))

    def test_cap_counts_data_not_holes(self):
        # 1 GiB holding three objects: a pace by size would take 256 s at
        # 4 MiB/s (1 GiB / 4 MiB/s), a pace by data 3 s
        volume = self.make_volume(size_gib=1)
        model = base.ImageModel(units.Gi)
        for object_no in (0, 100, 255):
            model.write(self.src_ioctx, volume.name, object_no * 4 * units.Mi,
                        self.rng.randbytes(units.Mi))
        self.assertEqual((True, True, {}),
                         self.target_driver.migrate_volume_target(
                             self.ctxt, volume, self.src_host()))
        cap = 4 * units.Mi
        volume.metadata = {throttle.RATE_KEY: str(cap)}
        status_path = self.target_driver._status_path(volume.name)
        reports = []

        def watch(progress):
            if progress.get('phase') == 'copying':
                reports.append((time.monotonic(),
                                copy_worker.read_status(status_path)))

        started = time.monotonic()
        took = self._complete_to_success(volume, model, watch)

        # the worker writes its status once before it knows the data
        self.assertEqual({12 * units.Mi},
                         {r['data_total'] for _at, r in reports
                          if 'data_total' in r})
        for at, report in reports:
            self.assertLessEqual(report.get('data_done', 0),
                                 cap * (at - started) + 40 * units.Mi)
        # not a speed limit: a pace that counted holes cannot end sooner
        self.assertLess(took, units.Gi / cap)

    def test_copy_in_the_lock_holder_is_reported_not_paced(self):
        # a hypervisor writes: it holds the exclusive lock, and librbd runs
        # the copy in it, where the worker's pace cannot reach
        volume, model = self._prepared(1024 * units.Mi, density=1.0)
        cap = 8 * units.Mi
        volume.metadata = {throttle.RATE_KEY: str(cap)}
        hypervisor = 'client.%d' % self.rados.get_instance_id()
        seen, ops = [], set()
        with rbd.Image(self.dst_ioctx, volume.name) as image:
            payload = self.rng.randbytes(64 * units.Ki)
            image.write(payload, 0)
            model.apply(0, payload)

            def watch(progress):
                seen.append(progress)
                if progress.get('phase') == 'copying':
                    ops.add(image.metadata_get(migration.COPY_OPS_KEY))

            took = self._complete_to_success(volume, model, watch)

        holders = {p.get('copy_in') for p in seen
                   if p.get('phase') == 'copying'} - {None}
        self.assertEqual([hypervisor], [h.split()[0] for h in holders])
        # the holder's progress reaches the worker, as librbd notifies it
        # (how often depends on the holder's pace: a busy machine saw two
        # reports in 1 GiB)
        copied = [p['bytes_copied'] for p in seen
                  if p.get('phase') == 'copying' and p.get('copy_in')]
        self.assertEqual(sorted(copied), copied)
        self.assertTrue(set(copied) - {0, units.Gi}, copied)
        # what the hypervisor's librbd read for the copy: one at a time
        self.assertEqual({'1'}, ops)
        with rbd.Image(self.dst_ioctx, volume.name, read_only=True) as image:
            self.assertNotIn(migration.COPY_OPS_KEY,
                             dict(image.metadata_list()))
        # not a speed limit: execute returns only once this process has
        # taken every progress report, which a pace would hold to the cap
        self.assertLess(took, units.Gi / cap)

    def _kill_worker_mid_copy(self, volume, killed):
        status_path = self.target_driver._status_path(volume.name)

        def kill(progress):
            if (not killed and progress.get('phase') == 'copying' and
                    0 < progress['percent'] < 90):
                report = copy_worker.read_status(status_path)
                os.kill(report['pid'], signal.SIGKILL)
                killed.append((report['pid'], report['addr'],
                               time.monotonic(), progress['percent']))
        return kill

    def test_worker_killed_mid_copy_resumes(self):
        volume, model = self._prepared(1024 * units.Mi, density=1.0)
        killed, copied = [], []
        kill = self._kill_worker_mid_copy(volume, killed)

        def watch(progress):
            if progress.get('phase') == 'copying':
                copied.append(progress['bytes_copied'])
            kill(progress)
        final = self.target_driver.complete_migration_target(
            self.ctxt, volume, watch)
        # the new worker's execute counts from object 0 again: the
        # progress waits for it to pass what was copied, never goes back
        self.assertEqual(sorted(copied), copied)

        self.assertEqual(1, len(killed), 'the worker was never killed')
        pid, addr, _at, _percent = killed[0]
        self.assertFalse(children.alive(pid))
        # the dead worker was blocklisted instead of waited for
        self.assertIn(addr, self.cluster.blocklist())
        self.assertEqual('success', final['phase'])
        self.assertEqual(model.sha256(),
                         base.image_sha256(self.dst_ioctx, volume.name))
        self.assertNotIn(volume.name, self._src_names())

    def test_blocklisted_worker_ends_and_the_copy_resumes(self):
        # what a peer of a target cluster does to the copy worker of a
        # member that lost the migration, its service dead or cut off
        volume, model = self._prepared(256 * units.Mi, density=1.0)
        status_path = self.target_driver._status_path(volume.name)
        cluster, conf, user, _secret = (
            self.target_driver._get_config_tuple())
        orphan = copy_worker.ExecuteWorker.start(
            volume.name, self.dst_pool, status_path, conf=conf, user=user,
            cluster=cluster, max_bytes_per_sec=8 * units.Mi)
        self.addCleanup(orphan.stop)
        process.wait_for('the copy under way',
                         lambda: orphan.read().get('done'), 60)
        addr = orphan.read()['addr']
        self.rados.blocklist_add(addr, 600)
        self.addCleanup(self.cluster.ceph, 'osd', 'blocklist', 'rm', addr)
        left = children.wait_gone([orphan.pid], 30)
        with open(copy_worker.log_path(status_path)) as f:
            self.addDetail('worker-log', content.text_content(f.read()))
        self.assertEqual([], left)
        self.assertEqual(
            (copy_worker.FAILED, 'ConnectionShutdown'),
            (orphan.read()['phase'], orphan.read().get('error_type')))
        self._complete_to_success(volume, model, lambda progress: None)

    def test_progress_after_a_restart_starts_where_the_copy_was(self):
        # slowed so that the record is written mid-copy (every 10 s)
        volume, model = self._prepared(1024 * units.Mi, density=1.0)
        volume.metadata = {throttle.RATE_KEY: str(48 * units.Mi)}
        status_path = self.target_driver._status_path(volume.name)

        class ServiceDied(Exception):
            pass

        def die(progress):
            # the service and its worker die together
            if progress.get('phase') == 'copying' and (
                    progress['percent'] >= 60):
                os.kill(copy_worker.read_status(status_path)['pid'],
                        signal.SIGKILL)
                raise ServiceDied()

        self.assertRaises(ServiceDied,
                          self.target_driver.complete_migration_target,
                          self.ctxt, volume, die)
        recorded = self.target_driver.engine.read_record(
            self.dst_ioctx, volume.name)['progress']['bytes_copied']
        self.assertGreater(recorded, 0)
        volume.metadata = {}
        copied = []

        def watch(progress):
            if progress.get('phase') == 'copying':
                copied.append(progress['bytes_copied'])
        final = self.target_driver.complete_migration_target(self.ctxt,
                                                             volume, watch)
        self.assertEqual('success', final['phase'])
        self.assertGreaterEqual(min(copied), recorded)
        self.assertEqual(sorted(copied), copied)
        self.assertEqual(model.sha256(),
                         base.image_sha256(self.dst_ioctx, volume.name))

    def test_service_crash_then_completion_adopts_running_worker(self):
        volume, model = self._prepared(1024 * units.Mi, density=1.0)
        status_path = self.target_driver._status_path(volume.name)

        class ServiceDied(Exception):
            pass

        def die(progress):
            if (progress.get('phase') == 'copying' and
                    copy_worker.read_status(status_path).get('pid')):
                raise ServiceDied()

        self.assertRaises(ServiceDied,
                          self.target_driver.complete_migration_target,
                          self.ctxt, volume, die)
        first = copy_worker.read_status(status_path)
        seen = set()

        def watch(progress):
            # the worker's files go with the migration's end
            seen.add(copy_worker.read_status(status_path).get('pid'))
        final = self.target_driver.complete_migration_target(self.ctxt,
                                                             volume, watch)
        self.assertEqual('success', final['phase'])
        # the worker of the first call finished the copy: no second worker
        self.assertEqual({first['pid']}, seen - {None})
        self.assertEqual([], self._worker_files(volume))
        self.assertEqual(model.sha256(),
                         base.image_sha256(self.dst_ioctx, volume.name))

    def test_sparse_100g_volume_keeps_allocation(self):
        size = 100 * units.Gi
        volume = self.make_volume(size_gib=100)
        model_written = 0
        for i in range(25):
            at = self.rng.randrange(0, size // base.CHUNK) * base.CHUNK
            with rbd.Image(self.src_ioctx, volume.name) as img:
                img.write(self.rng.randbytes(base.CHUNK), at)
            model_written += base.CHUNK

        def used(pool):
            out = json.loads(self.cluster.rbd(
                'du', '--format', 'json', '%s/%s' % (pool, volume.name)))
            return out['images'][0]['used_size']

        src_used = used(self.src_pool)
        self.assertLessEqual(src_used, 110 * units.Mi)
        self.target_driver.migrate_volume_target(self.ctxt, volume,
                                                 self.src_host())
        self.target_driver.complete_migration_target(self.ctxt, volume)

        dst_used = used(self.dst_pool)
        self.assertLessEqual(abs(dst_used - src_used), src_used * 0.10,
                             'source uses %d bytes, destination %d' %
                             (src_used, dst_used))

    def test_extend_during_migration(self):
        volume, model = self._prepared(1024 * units.Mi, density=0.3)
        volume.size = 1
        self.target_driver.extend_volume(volume, 2)
        model.resize(2 * units.Gi)
        model.write(self.dst_ioctx, volume.name, 1500 * units.Mi,
                    self.rng.randbytes(units.Mi))

        self.target_driver.complete_migration_target(self.ctxt, volume)

        with rbd.Image(self.dst_ioctx, volume.name, read_only=True) as img:
            self.assertEqual(2 * units.Gi, img.size())
        self.assertEqual(model.sha256(),
                         base.image_sha256(self.dst_ioctx, volume.name))

    def test_linked_abort_before_writes_restores_source(self):
        volume, model = self._prepared(256 * units.Mi)

        self.assertTrue(self.target_driver.abort_migration_target(
            self.ctxt, volume))

        self.assertNotIn(volume.name, self._dst_names())
        self.assertIn(volume.name, self._src_names())
        self.assertEqual(model.sha256(),
                         base.image_sha256(self.src_ioctx, volume.name))

    def test_abort_mid_copy_leaves_no_worker_files(self):
        volume, model = self._prepared(256 * units.Mi)

        def stop_mid_copy(progress):
            if progress.get('percent', 0) > 0:
                raise RuntimeError('the service stops here')
        self.assertRaises(RuntimeError,
                          self.target_driver.complete_migration_target,
                          self.ctxt, volume, stop_mid_copy)
        self.assertNotEqual([], self._worker_files(volume))

        self.assertTrue(self.target_driver.abort_migration_target(
            self.ctxt, volume))

        self.assertEqual([], self._worker_files(volume))

    def test_linked_abort_after_writes_keeps_them(self):
        volume, model = self._prepared(256 * units.Mi)
        for at in (0, 100 * units.Mi + 3, 256 * units.Mi - 4096):
            model.write(self.dst_ioctx, volume.name, at,
                        self.rng.randbytes(4096))

        class ServiceDied(Exception):
            pass

        def die_mid_copy(progress):
            if progress.get('percent', 0) > 0:
                raise ServiceDied()

        # part of the data is already copied, and the copy worker still
        # runs, when the abort comes
        self.assertRaises(ServiceDied,
                          self.target_driver.complete_migration_target,
                          self.ctxt, volume, die_mid_copy)

        self.assertTrue(self.target_driver.abort_migration_target(
            self.ctxt, volume))

        self.assertNotIn(volume.name, self._dst_names())
        self.assertEqual(model.sha256(),
                         base.image_sha256(self.src_ioctx, volume.name))

    def test_delete_during_migration_rolls_back(self):
        volume, model = self._prepared(128 * units.Mi)
        model.write(self.dst_ioctx, volume.name, 4096,
                    self.rng.randbytes(8192))

        self.target_driver.delete_volume(volume)

        self.assertNotIn(volume.name, self._dst_names())
        self.assertEqual(model.sha256(),
                         base.image_sha256(self.src_ioctx, volume.name))

    def test_abort_refused_while_attached(self):
        volume, model = self._prepared(64 * units.Mi)
        with rbd.Image(self.dst_ioctx, volume.name):
            self.assertRaises(exception.MigrationConflict,
                              self.target_driver.abort_migration_target,
                              self.ctxt, volume)
        self.assertEqual(state.MigrationState.PREPARED,
                         self._status(volume).state)
        self.target_driver.complete_migration_target(self.ctxt, volume)
        self.assertEqual(model.sha256(),
                         base.image_sha256(self.dst_ioctx, volume.name))

    def test_duplicate_request_is_idempotent(self):
        volume, model = self._prepared(64 * units.Mi)
        again = self.target_driver.migrate_volume_target(
            self.ctxt, volume, self.src_host())
        self.assertEqual((True, True, {}), again)
        self.target_driver.complete_migration_target(self.ctxt, volume)
        self.assertEqual(model.sha256(),
                         base.image_sha256(self.dst_ioctx, volume.name))
        # completing a committed migration again is a no-op
        final = self.target_driver.complete_migration_target(self.ctxt,
                                                             volume)
        self.assertEqual('success', final['phase'])


class RefusalTest(base.FunctionalTestCase):
    """Bad input: a clear error, nothing created, the source unchanged."""

    def setUp(self):
        super(RefusalTest, self).setUp()
        self.rng = random.Random(self.id())
        self.volume = self.make_volume(size_gib=1, size_bytes=64 * units.Mi)
        self.model = base.ImageModel(64 * units.Mi)
        self.model.write(self.src_ioctx, self.volume.name, 0,
                         self.rng.randbytes(units.Mi))

    def _assert_untouched(self):
        self.assertEqual([], rbd.RBD().list(self.dst_ioctx))
        self.assertIn(self.volume.name, rbd.RBD().list(self.src_ioctx))
        self.assertIsNone(self.target_driver.engine.status(
            self.dst_ioctx, self.volume.name))
        with rbd.Image(self.src_ioctx, self.volume.name,
                       read_only=True) as img:
            self.assertFalse(img.features() & rbd.RBD_FEATURE_MIGRATING)
        self.assertEqual(self.model.sha256(), base.image_sha256(
            self.src_ioctx, self.volume.name))

    def test_source_open_by_another_client(self):
        with rbd.Image(self.src_ioctx, self.volume.name):
            exc = self.assertRaises(
                exception.MigrationSourceRefused,
                self.target_driver.migrate_volume_target,
                self.ctxt, self.volume, self.src_host())
        self.assertIn('open by 1 client', str(exc))
        self._assert_untouched()

    def test_missing_source(self):
        missing = self.make_volume(size_gib=1)
        rbd.RBD().remove(self.src_ioctx, missing.name)
        exc = self.assertRaises(exception.MigrationSourceNotFound,
                                self.target_driver.migrate_volume_target,
                                self.ctxt, missing, self.src_host())
        self.assertIn(missing.name, str(exc))
        self._assert_untouched()

    def test_cross_cluster_native_import_needs_newer_ceph(self):
        spec = specs.native(self.src_pool, self.volume.name, 'snap',
                            cluster_name='other', client_name='client.x')
        if self.target_driver.engine.features.native_cross_cluster:
            self.skipTest('cross-cluster import is supported by %s' %
                          base.release_label())
        exc = self.assertRaises(exception.MigrationFeatureUnsupported,
                                self.target_driver.engine.prepare_import,
                                spec, self.dst_ioctx, self.volume.name)
        self.assertIn('Ceph 20', str(exc))
        self._assert_untouched()

    def test_destination_name_taken(self):
        rbd.RBD().create(self.dst_ioctx, self.volume.name, units.Mi)
        self.addCleanup(rbd.RBD().remove, self.dst_ioctx, self.volume.name)
        self.assertRaises(exception.MigrationConflict,
                          self.target_driver.migrate_volume_target,
                          self.ctxt, self.volume, self.src_host())
        self.assertIn(self.volume.name, rbd.RBD().list(self.src_ioctx))

    def test_not_rbd_source_declined(self):
        moved = self.target_driver.migrate_volume_target(
            self.ctxt, self.volume,
            {'host': 'x@nfs', 'capabilities': {'storage_protocol': 'nfs'}})
        self.assertEqual((False, False, None), moved)
        self._assert_untouched()

    def test_other_cluster_declined(self):
        host = self.src_host()
        loc = host['capabilities']['location_info'].split(':')
        loc[2] = '00000000-0000-0000-0000-000000000000'
        host['capabilities']['location_info'] = ':'.join(loc)
        moved = self.target_driver.migrate_volume_target(self.ctxt,
                                                         self.volume, host)
        self.assertEqual((False, False, None), moved)
        self._assert_untouched()


class ImportOnlyAbortTest(base.FunctionalTestCase):
    """An import-only abort would drop writes: refused unless forced."""

    def test_abort_refused_then_forced(self):
        rng = random.Random(self.id())
        path = os.path.join(self.state_dir, 'raw-source.img')
        with open(path, 'wb') as f:
            f.write(rng.randbytes(8 * units.Mi))
        engine = self.target_driver.engine
        engine.prepare_import(specs.raw_file(path), self.dst_ioctx, 'imp')
        with rbd.Image(self.dst_ioctx, 'imp') as img:
            img.write(b'written at the destination', 0)

        exc = self.assertRaises(exception.MigrationAbortRefused,
                                engine.abort, self.dst_ioctx, 'imp')
        self.assertIn('would be lost', str(exc))
        self.assertTrue(engine.status(self.dst_ioctx, 'imp').import_only)
        with rbd.Image(self.dst_ioctx, 'imp', read_only=True) as img:
            self.assertEqual(b'written at the destination', img.read(0, 26))

        self.assertTrue(engine.abort(self.dst_ioctx, 'imp', force=True))
        self.assertNotIn('imp', rbd.RBD().list(self.dst_ioctx))


class ConcurrentClustersTest(base.FunctionalTestCase):
    """A second cluster runs beside the first and goes without a trace."""

    def test_second_cluster_up_and_down(self):
        other = base.ceph.CephCluster.up(memstore_bytes=256 * units.Mi,
                                         pools=['p'])
        try:
            self.assertNotEqual(self.cluster.fsid, other.fsid)
            self.assertNotEqual(self.cluster.mon_port, other.mon_port)
            client = other.connect()
            try:
                ioctx = client.open_ioctx('p')
                rbd.RBD().create(ioctx, 'x', units.Mi)
                self.assertEqual(['x'], rbd.RBD().list(ioctx))
                ioctx.close()
                # the limited key cannot write to pools it was not given
                other.ceph('osd', 'pool', 'create', 'q', '8')
                ioctx = client.open_ioctx('q')
                self.assertRaises(rados.PermissionError,
                                  ioctx.write_full, 'obj', b'x')
                ioctx.close()
            finally:
                client.shutdown()
            pids = list(other._daemon_pids())
        finally:
            other.down()
        self.assertFalse(os.path.exists(other.directory))
        self.assertFalse([p for p in pids if children.alive(p)])
        self.assertTrue(self.cluster.is_running())

    def test_cluster_on_disk_holds_more_than_its_ram(self):
        # bluestore in a sparse file: data beyond any memstore's size
        other = base.ceph.CephCluster.up(disk_bytes=64 * units.Gi,
                                         pools=['p'])
        block = os.path.join(other.directory, 'osd.0.block')
        try:
            self.assertEqual(64 * units.Gi, os.stat(block).st_size)
            client = other.connect()
            try:
                ioctx = client.open_ioctx('p')
                model = base.ImageModel(256 * units.Mi)
                rbd.RBD().create(ioctx, 'x', 256 * units.Mi)
                payload = os.urandom(64 * units.Mi)
                model.write(ioctx, 'x', 100 * units.Mi + 7, payload)
                self.assertEqual(model.sha256(),
                                 base.image_sha256(ioctx, 'x'))
                ioctx.close()
            finally:
                client.shutdown()
            # on disk, not in the OSD's memory
            self.assertGreater(os.stat(block).st_blocks * 512,
                               64 * units.Mi)
        finally:
            other.down()
        self.assertFalse(os.path.exists(other.directory))


class EventletModeTest(testtools.TestCase):
    """The driver under eventlet monkey patching, as cinder-volume runs."""

    def test_demo_migration_under_eventlet(self):
        code = ('from cinder import monkey_patch; monkey_patch.patch(); '
                'import sys; from cinder_asyncmig.cmd import demo; '
                'sys.exit(demo.main(["--size-gib", "1"]))')
        env = dict(os.environ)
        env.pop('OS_CINDER_DISABLE_EVENTLET_PATCHING', None)
        result = subprocess.run([sys.executable, '-c', code], env=env,
                                capture_output=True, text=True, timeout=600)
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
        self.assertRegex(result.stdout, r'sha256 destination +[0-9a-f]{64}'
                                        r'  OK')
        self.assertIn('removed at commit', result.stdout)
        self.assertNotIn('hypervisor writes      0 during', result.stdout)
