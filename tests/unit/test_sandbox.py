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

"""The sandbox's settings, configuration files and openrc, no services."""

import configparser
import contextlib
import io
import json
import os
import subprocess
import tempfile

import fixtures
from os_brick.remotefs import remotefs as brick_remotefs
from oslo_config import cfg
import testtools

from cinder_asyncmig.cmd import config as config_cmd
from cinder_asyncmig.sandbox import cinderconf
from cinder_asyncmig.sandbox import cloud
from cinder_asyncmig.sandbox import etcd
from cinder_asyncmig.sandbox import keystone
from cinder_asyncmig.sandbox import mariadb
from cinder_asyncmig.sandbox import rabbitmq
from cinder_asyncmig.sandbox import tempest
from cinder_asyncmig import settings
from cinder_asyncmig.sources import kinds as source_kinds


def _deployment(directory, privileged=False, target_cluster=False):
    coordination = None
    if target_cluster:
        coordination = 'etcd3+http://127.0.0.1:12379?lock_timeout=30'
    return cinderconf.Deployment(
        target_cluster=target_cluster, coordination_url=coordination,
        directory=directory, api_port=18776,
        transport_url='rabbit://cinder:pw@127.0.0.1:15672/cinder',
        database_url='mysql+pymysql://cinder:pw@127.0.0.1:13306/cinder',
        ceph_conf=os.path.join(directory, 'ceph', 'ceph.conf'),
        rbd_user='cinder',
        rbd_keyring=os.path.join(directory, 'ceph',
                                 'ceph.client.cinder.keyring'),
        rbd_secret_uuid='5b3a4c4e-0000-4000-8000-000000000001',
        volume_manager=settings.VOLUME_MANAGER,
        bin_dir='/venv/bin', privileged=privileged,
        xcluster_ceph_conf=os.path.join(directory, 'xcluster', 'ceph.conf'),
        xcluster_keyring=os.path.join(directory, 'xcluster',
                                      'ceph.client.cinder.keyring'),
        xcluster_secret_uuid='5b3a4c4e-0000-4000-8000-000000000002',
        auth_url='http://127.0.0.1:15000/v3',
        identities={
            'admin': {'password': 'adminpw', 'user_id': 'a0' * 16,
                      'project_id': 'ad' * 16},
            'member': {'password': 'demopw', 'user_id': 'd0' * 16,
                       'project_id': 'de' * 16},
            'service': {'password': 'cinderpw', 'user_id': 'c0' * 16,
                        'project_id': '5e' * 16}})


def _parse(text):
    # not strict: a multi-valued option is one line per value
    parser = configparser.RawConfigParser(strict=False)
    parser.read_string(text)
    return parser


class SettingsTest(testtools.TestCase):

    def test_target_backend_options(self):
        result = settings.backend_options(
            settings.TARGET, '/etc/ceph/ceph.conf', 'cinder', 'uuid-1',
            state_dir='/var/lib/cinder/asyncmig')
        self.assertEqual({'rbd-async'}, {s for s, _k, _v in result})
        values = {k: v for _s, k, v in result}
        self.assertEqual(settings.TARGET_DRIVER, values['volume_driver'])
        self.assertEqual('rbd-async', values['volume_backend_name'])
        self.assertEqual('volumes-async', values['rbd_pool'])
        self.assertEqual('cinder', values['rbd_user'])
        self.assertEqual('uuid-1', values['rbd_secret_uuid'])
        self.assertEqual('/var/lib/cinder/asyncmig',
                         values['async_migration_state_dir'])
        self.assertEqual(','.join(source_kinds.ALL),
                         values['async_migration_source_kinds'])
        # no peers, nothing shared: devstack's output
        self.assertNotIn('async_migration_shared_file_backends', values)
        self.assertNotIn('rbd_cluster_name', values)

    def test_source_kinds_are_the_drivers(self):
        values = dict(settings.TARGET.options)
        kinds = values['async_migration_source_kinds'].split(',')
        self.assertEqual(set(source_kinds.ALL), set(kinds))

    def test_target_names_the_file_backends_among_its_peers(self):
        values = {k: v for _s, k, v in settings.backend_options(
            settings.TARGET, '/c', 'u', 's', peers=settings.BACKENDS)}
        self.assertEqual('nfs-src',
                         values['async_migration_shared_file_backends'])
        self.assertEqual(['nfs-src'],
                         settings.shared_file_backends(settings.BACKENDS))

    def test_xcluster_is_the_stock_driver_on_a_named_cluster(self):
        values = {k: v for _s, k, v in settings.backend_options(
            settings.XCLUSTER, '/x/ceph.conf', 'cinder', 's2',
            peers=settings.BACKENDS)}
        self.assertEqual(settings.STOCK_RBD_DRIVER, values['volume_driver'])
        self.assertEqual('xcluster', values['rbd_cluster_name'])
        self.assertEqual('volumes-xcluster', values['rbd_pool'])
        self.assertEqual('/x/ceph.conf', values['rbd_ceph_conf'])
        self.assertFalse([k for k in values if k.startswith('async_')])

    def test_nfs_backend_sparse_raw_open_files_no_snapshots(self):
        result = settings.nfs_backend_options(settings.FILE, '127.0.0.1',
                                              '/srv/share', '/m')
        self.assertEqual({'nfs-src'}, {s for s, _k, _v in result})
        values = {k: v for _s, k, v in result}
        self.assertEqual({
            'volume_driver': 'cinder.volume.drivers.nfs.NfsDriver',
            'volume_backend_name': 'nfs-src',
            'nas_host': '127.0.0.1',
            'nas_share_path': '/srv/share',
            'nfs_mount_point_base': '/m',
            'nfs_sparsed_volumes': 'True',
            'nfs_qcow2_volumes': 'False',
            'nfs_snapshot_support': 'False',
            'nas_secure_file_operations': 'false',
            'nas_secure_file_permissions': 'false'}, values)

    def test_rbd_options_refuse_a_file_backend(self):
        exc = self.assertRaises(ValueError, settings.backend_options,
                                settings.FILE, '/c', 'u', 's')
        self.assertIn('not an RBD backend', str(exc))

    def test_devstack_has_the_one_cluster_pair(self):
        self.assertEqual((settings.SOURCE, settings.TARGET),
                         settings.DEVSTACK_BACKENDS)

    def test_source_is_the_stock_driver_without_plugin_options(self):
        values = {k: v for _s, k, v in settings.backend_options(
            settings.SOURCE, '/c', 'u', 's', state_dir='/ignored')}
        self.assertEqual(settings.STOCK_RBD_DRIVER, values['volume_driver'])
        self.assertFalse([k for k in values if k.startswith('async_')])

    def test_name_and_pool_override(self):
        result = settings.backend_options(settings.TARGET, '/c', 'u', 's',
                                          pool='fast', name='ceph-fast')
        values = {k: v for _s, k, v in result}
        self.assertEqual({'ceph-fast'}, {s for s, _k, _v in result})
        self.assertEqual('ceph-fast', values['volume_backend_name'])
        self.assertEqual('fast', values['rbd_pool'])

    def test_backend_by_name_or_role(self):
        self.assertIs(settings.TARGET, settings.backend('target'))
        self.assertIs(settings.SOURCE, settings.backend('rbd-src'))
        self.assertRaises(KeyError, settings.backend, 'lvm')

    def test_iniset_lines_keep_spaces_in_values(self):
        text = settings.iniset_lines([('DEFAULT', 'k', 'a b  c'),
                                      ('rbd-async', 'rbd_pool', 'p')])
        out = subprocess.run(
            ['bash', '-c', 'while read -r s k v; do '
             'printf "%s|%s|%s\\n" "$s" "$k" "$v"; done'],
            input=text, capture_output=True, text=True, check=True).stdout
        self.assertEqual('DEFAULT|k|a b  c\nrbd-async|rbd_pool|p\n', out)

    def test_iniset_lines_repeat_a_multi_valued_option(self):
        self.assertEqual(
            'DEFAULT osapi_volume_extension a.b\n'
            'DEFAULT osapi_volume_extension c.D\n',
            settings.iniset_lines([('DEFAULT', 'osapi_volume_extension',
                                    ['a.b', 'c.D'])]))
        self.assertRaises(ValueError, settings.iniset_lines,
                          [('DEFAULT', 'k', ['fine', 'line\nbreak'])])

    def test_iniset_lines_refuse_what_read_cannot_split(self):
        self.assertRaises(ValueError, settings.iniset_lines,
                          [('DEFAULT', 'two words', 'v')])
        self.assertRaises(ValueError, settings.iniset_lines,
                          [('DEFAULT', 'k', 'line\nbreak')])

    def test_render_ini_default_first_last_value_wins(self):
        text = settings.render_ini([('b', 'x', '1'), ('DEFAULT', 'y', '2'),
                                    ('b', 'x', '3')])
        self.assertTrue(text.startswith('[DEFAULT]\n'))
        parsed = _parse(text)
        self.assertEqual('3', parsed.get('b', 'x'))
        self.assertEqual('2', parsed.get('DEFAULT', 'y'))


class CinderConfTest(testtools.TestCase):

    def setUp(self):
        super(CinderConfTest, self).setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.deployment = _deployment(self.dir)

    def _conf(self, name, deployment=None):
        spec = cinderconf.service_spec(name)
        return _parse(settings.render_ini(cinderconf.service_settings(
            deployment or self.deployment, spec)))

    def test_api_is_behind_keystone_on_loopback(self):
        conf = self._conf(cinderconf.API)
        self.assertEqual('keystone', conf.get('DEFAULT', 'auth_strategy'))
        self.assertEqual('http://127.0.0.1:15000/v3',
                         conf.get('keystone_authtoken', 'auth_url'))
        self.assertEqual('cinder', conf.get('keystone_authtoken', 'username'))
        self.assertEqual('cinderpw',
                         conf.get('keystone_authtoken', 'password'))
        self.assertEqual('service',
                         conf.get('keystone_authtoken', 'project_name'))
        self.assertEqual('127.0.0.1',
                         conf.get('DEFAULT', 'osapi_volume_listen'))
        self.assertEqual('18776',
                         conf.get('DEFAULT', 'osapi_volume_listen_port'))
        self.assertEqual(os.path.join(self.dir, 'etc', 'api-paste.ini'),
                         conf.get('DEFAULT', 'api_paste_config'))

    def test_api_loads_cinders_extensions_and_the_plugins(self):
        path = os.path.join(self.dir, 'cinder-api.conf')
        with open(path, 'w') as f:
            f.write(settings.render_ini(cinderconf.service_settings(
                self.deployment, cinderconf.service_spec(cinderconf.API))))
        # read the way cinder-api reads it
        conf = cfg.ConfigOpts()
        conf.register_opt(cfg.MultiStrOpt('osapi_volume_extension'))
        conf(args=[], default_config_files=[path])
        self.assertEqual(
            ['cinder.api.contrib.standard_extensions',
             'cinder_asyncmig.api.async_migration.Async_migration'],
            conf.osapi_volume_extension)

    def test_volume_services_get_one_backend_and_the_manager(self):
        privileged = _deployment(self.dir, privileged=True)
        specs = [s for s in cinderconf.services(privileged)
                 if s.backend is not None]
        self.assertEqual([cinderconf.VOLUME_SOURCE, cinderconf.VOLUME_TARGET,
                          cinderconf.VOLUME_XCLUSTER, cinderconf.VOLUME_FILE],
                         [s.name for s in specs])
        self.assertEqual(list(settings.BACKENDS), [s.backend for s in specs])
        for spec in specs:
            backend = spec.backend
            conf = self._conf(spec.name, privileged)
            self.assertEqual(backend.name,
                             conf.get('DEFAULT', 'enabled_backends'))
            self.assertEqual(settings.VOLUME_MANAGER,
                             conf.get('DEFAULT', 'volume_manager'))
            self.assertEqual(backend.driver,
                             conf.get(backend.name, 'volume_driver'))
            if backend.pool:
                self.assertEqual(backend.pool,
                                 conf.get(backend.name, 'rbd_pool'))
            others = {b.name for b in settings.BACKENDS if b != backend}
            self.assertFalse(others & set(conf.sections()))

    def test_target_exporters_use_the_sandbox_ports_on_loopback(self):
        deployment = self.deployment._replace(exporter_ports=[21000, 21015])
        conf = self._conf(cinderconf.VOLUME_TARGET, deployment)
        section = settings.TARGET.name
        self.assertEqual('127.0.0.1', conf.get(
            section, 'async_migration_exporter_bind_address'))
        self.assertEqual(('21000', '21015'), (
            conf.get(section, 'async_migration_exporter_port_min'),
            conf.get(section, 'async_migration_exporter_port_max')))
        source = self._conf(cinderconf.VOLUME_SOURCE, deployment)
        self.assertFalse(source.has_option(
            settings.SOURCE.name, 'async_migration_exporter_port_min'))

    def test_xcluster_service_uses_the_second_cluster(self):
        conf = self._conf(cinderconf.VOLUME_XCLUSTER)
        section = settings.XCLUSTER.name
        self.assertEqual(self.deployment.xcluster_ceph_conf,
                         conf.get(section, 'rbd_ceph_conf'))
        self.assertEqual('xcluster', conf.get(section, 'rbd_cluster_name'))
        self.assertEqual(self.deployment.xcluster_secret_uuid,
                         conf.get(section, 'rbd_secret_uuid'))
        self.assertNotEqual(self.deployment.rbd_secret_uuid,
                            conf.get(section, 'rbd_secret_uuid'))
        source = self._conf(cinderconf.VOLUME_SOURCE)
        self.assertEqual(self.deployment.ceph_conf,
                         source.get('rbd-src', 'rbd_ceph_conf'))
        self.assertFalse(source.has_option('rbd-src', 'rbd_cluster_name'))

    def test_file_service_shares_a_directory_of_the_sandbox(self):
        privileged = _deployment(self.dir, privileged=True)
        conf = self._conf(cinderconf.VOLUME_FILE, privileged)
        self.assertEqual('127.0.0.1', conf.get('nfs-src', 'nas_host'))
        self.assertEqual(os.path.join(self.dir, 'nfs', 'share'),
                         conf.get('nfs-src', 'nas_share_path'))
        self.assertEqual(os.path.join(self.dir, 'state', 'mnt'),
                         conf.get('nfs-src', 'nfs_mount_point_base'))
        target = self._conf(cinderconf.VOLUME_TARGET, privileged)
        self.assertEqual('nfs-src', target.get(
            'rbd-async', 'async_migration_shared_file_backends'))

    def test_mount_point_is_where_os_brick_looks(self):
        base = cinderconf.nfs_mount_point_base(self.deployment)
        client = brick_remotefs.RemoteFsClient('nfs', None,
                                               nfs_mount_point_base=base)
        share = cinderconf.nfs_share(self.deployment)
        self.assertEqual('127.0.0.1:%s' % cinderconf.file_share_dir(
            self.deployment), share)
        self.assertEqual(client.get_mount_point(share),
                         cinderconf.nfs_mount_point(self.deployment))

    def test_file_share_is_mounted_for_its_host_and_the_target(self):
        privileged = _deployment(self.dir, privileged=True)
        share = (cinderconf.file_share_dir(privileged),
                 cinderconf.nfs_mount_point(privileged))
        etc_ceph = (cinderconf.host_ceph_dir(privileged), '/etc/ceph')
        for name, mounts in (
                (cinderconf.VOLUME_SOURCE, [etc_ceph]),
                (cinderconf.VOLUME_XCLUSTER, [etc_ceph]),
                (cinderconf.VOLUME_FILE, [etc_ceph, share]),
                (cinderconf.VOLUME_TARGET, [etc_ceph, share])):
            spec = cinderconf.service_spec(name)
            self.assertEqual(mounts, cinderconf.bind_mounts(privileged,
                                                            spec), name)
            argv = cinderconf.service_argv(privileged, spec)
            pairs = argv[argv.index('sandbox-mounts') + 1:argv.index('--', 5)]
            self.assertEqual([p for m in mounts for p in m], pairs)

    def test_mount_script_binds_every_pair_then_runs_the_service(self):
        # a stand-in for mount(8) that records its arguments
        bin_dir = os.path.join(self.dir, 'bin')
        os.makedirs(bin_dir)
        log = os.path.join(self.dir, 'mounts')
        with open(os.path.join(bin_dir, 'mount'), 'w') as f:
            f.write('#!/bin/sh\necho "$@" >> %s\n' % log)
        os.chmod(os.path.join(bin_dir, 'mount'), 0o755)
        out = subprocess.run(
            ['/bin/sh', '-c', cinderconf.MOUNT_SCRIPT, 'sandbox-mounts',
             '/a', '/etc/ceph', '/b c', '/m/d', '--', 'echo', 'run', '--x'],
            env={'PATH': '%s:/usr/bin:/bin' % bin_dir},
            capture_output=True, text=True, check=True).stdout
        self.assertEqual('run --x\n', out)
        with open(log) as f:
            self.assertEqual('--bind /a /etc/ceph\n--bind /b c /m/d\n',
                             f.read())

    def test_a_failed_mount_stops_the_service_start(self):
        result = subprocess.run(
            ['/bin/sh', '-c', cinderconf.MOUNT_SCRIPT, 'sandbox-mounts',
             '/a', '/b', '--', 'echo', 'run'],
            env={'PATH': '/nonexistent'}, capture_output=True, text=True,
            check=False)
        self.assertNotEqual(0, result.returncode)
        self.assertEqual('', result.stdout)

    def test_hosts_etc_ceph_names_both_clusters(self):
        files = dict(cinderconf.host_ceph_files(self.deployment))
        self.assertEqual({
            'ceph.conf': self.deployment.ceph_conf,
            'ceph.client.cinder.keyring': self.deployment.rbd_keyring,
            'xcluster.conf': self.deployment.xcluster_ceph_conf,
            'xcluster.client.cinder.keyring':
                self.deployment.xcluster_keyring}, files)

    def test_without_root_no_file_backend(self):
        self.assertFalse(self.deployment.privileged)
        names = [s.name for s in cinderconf.services(self.deployment)]
        self.assertNotIn(cinderconf.VOLUME_FILE, names)
        self.assertIn(cinderconf.VOLUME_XCLUSTER, names)
        target = self._conf(cinderconf.VOLUME_TARGET)
        self.assertFalse(target.has_option(
            'rbd-async', 'async_migration_shared_file_backends'))
        types = [n for n, _d, _s in cinderconf.volume_types(
            cinderconf.backends(self.deployment))]
        self.assertNotIn('nfs-src', types)
        privileged = _deployment(self.dir, privileged=True)
        self.assertEqual(
            [s for s in cinderconf.SERVICES
             if s.name != cinderconf.VOLUME_TARGET_PEER],
            list(cinderconf.services(privileged)))

    def test_a_target_cluster_is_two_hosts_on_etcd(self):
        deployment = _deployment(self.dir, target_cluster=True)
        specs = [s for s in cinderconf.services(deployment)
                 if s.backend == settings.TARGET]
        self.assertEqual([cinderconf.VOLUME_TARGET,
                          cinderconf.VOLUME_TARGET_PEER],
                         [s.name for s in specs])
        confs = [self._conf(s.name, deployment) for s in specs]
        self.assertEqual(['sandbox', 'sandbox-peer'],
                         [c.get('DEFAULT', 'host') for c in confs])
        self.assertEqual({cinderconf.TARGET_CLUSTER},
                         {c.get('DEFAULT', 'cluster') for c in confs})
        # each host keeps its copy workers' state apart
        self.assertEqual(2, len({c.get('rbd-async',
                                       'async_migration_state_dir')
                                 for c in confs}))
        # every service locks through etcd; no source is in the cluster
        for spec in cinderconf.services(deployment):
            conf = self._conf(spec.name, deployment)
            self.assertEqual(deployment.coordination_url,
                             conf.get('coordination', 'backend_url'))
            if spec.backend not in (None, settings.TARGET):
                self.assertFalse(conf.has_option('DEFAULT', 'cluster'))
        self.assertEqual('sandbox-peer@rbd-async',
                         cinderconf.service_host(specs[1]))
        self.assertEqual(len(settings.BACKENDS) - 1,
                         len(cinderconf.backends(deployment)))
        # and without a cluster, neither the peer nor etcd
        self.assertNotIn(cinderconf.VOLUME_TARGET_PEER,
                         [s.name for s in cinderconf.services(
                             self.deployment)])
        self.assertTrue(self._conf(cinderconf.VOLUME_TARGET).get(
            'coordination', 'backend_url').startswith('file://'))

    def test_record_from_before_the_second_cluster_still_loads(self):
        old = self.deployment._asdict()
        for key in ('xcluster_ceph_conf', 'xcluster_keyring',
                    'xcluster_secret_uuid'):
            del old[key]
        deployment = cinderconf.Deployment(**old)
        self.assertIsNone(deployment.xcluster_ceph_conf)
        self.assertNotIn(settings.XCLUSTER, cinderconf.backends(deployment))
        self.assertEqual(2, len(cinderconf.host_ceph_files(deployment)))
        self.assertNotIn('ASYNCMIG_XCLUSTER_HOST',
                         cinderconf.openrc_env(deployment))

    def test_every_path_is_inside_the_sandbox(self):
        for spec in cinderconf.SERVICES:
            for _section, _key, value in cinderconf.service_settings(
                    self.deployment, spec):
                value = str(value)
                if value.startswith('/'):
                    self.assertTrue(value.startswith(self.dir), value)
                if value.startswith('file://'):
                    self.assertTrue(value.startswith('file://' + self.dir))
        state_dir = self._conf(cinderconf.VOLUME_TARGET).get(
            'rbd-async', 'async_migration_state_dir')
        self.assertTrue(state_dir.startswith(self.dir))

    def test_services_share_everything_but_their_role(self):
        confs = [self._conf(spec.name)
                 for spec in cinderconf.services(self.deployment)]
        for key in ('transport_url', 'host', 'report_interval',
                    'service_down_time', 'default_volume_type'):
            self.assertEqual(1, len({c.get('DEFAULT', key) for c in confs}),
                             key)
        self.assertEqual(self.deployment.database_url,
                         confs[0].get('database', 'connection'))

    def test_service_down_time_allows_heartbeats_to_be_late(self):
        conf = self._conf(cinderconf.SCHEDULER)
        self.assertGreaterEqual(conf.getint('DEFAULT', 'service_down_time'),
                                3 * conf.getint('DEFAULT', 'report_interval'))

    def test_privileged_volume_services_run_privsep_and_own_etc_ceph(self):
        privileged = _deployment(self.dir, privileged=True)
        spec = cinderconf.service_spec(cinderconf.VOLUME_TARGET)
        conf = self._conf(spec.name, privileged)
        helper = conf.get('privsep_osbrick', 'helper_command')
        self.assertEqual('/venv/bin/privsep-helper --config-file %s' %
                         cinderconf.config_path(privileged, spec), helper)
        self.assertEqual(helper, conf.get('cinder_sys_admin',
                                          'helper_command'))
        argv = cinderconf.service_argv(privileged, spec)
        self.assertEqual('unshare', argv[0])
        self.assertIn(cinderconf.host_ceph_dir(privileged), argv)
        self.assertEqual(['/venv/bin/cinder-volume', '--config-file',
                          cinderconf.config_path(privileged, spec)],
                         argv[-3:])
        api = cinderconf.service_spec(cinderconf.API)
        self.assertEqual('/venv/bin/cinder-api',
                         cinderconf.service_argv(privileged, api)[0])

    def test_unprivileged_volume_services_run_plain(self):
        spec = cinderconf.service_spec(cinderconf.VOLUME_SOURCE)
        self.assertFalse(self._conf(spec.name).has_section('privsep_osbrick'))
        self.assertEqual('/venv/bin/cinder-volume',
                         cinderconf.service_argv(self.deployment, spec)[0])

    def test_pool_hosts_name_the_backends(self):
        self.assertEqual('sandbox@rbd-src#rbd-src',
                         cinderconf.pool_host(settings.SOURCE))
        self.assertEqual('sandbox@rbd-xcluster#rbd-xcluster',
                         cinderconf.pool_host(settings.XCLUSTER))
        # Cinder's NFS driver reports no pools: the pool is the backend
        self.assertEqual('sandbox@nfs-src#nfs-src',
                         cinderconf.pool_host(settings.FILE))
        self.assertEqual('sandbox@rbd-async',
                         cinderconf.service_host(cinderconf.service_spec(
                             cinderconf.VOLUME_TARGET)))

    def test_volume_types(self):
        types = {name: specs for name, _d, specs in cinderconf.volume_types()}
        self.assertEqual({'volume_backend_name': 'rbd-src'}, types['rbd-src'])
        self.assertEqual({'volume_backend_name': 'rbd-async'},
                         types['rbd-async'])
        self.assertEqual('<or> rbd-src <or> rbd-async',
                         types[cinderconf.MIGRATABLE_TYPE][
                             'volume_backend_name'])
        # the other sources: their backend, or the target to migrate to
        self.assertEqual('<or> rbd-xcluster <or> rbd-async',
                         types['rbd-xcluster']['volume_backend_name'])
        self.assertEqual('<or> nfs-src <or> rbd-async',
                         types['nfs-src']['volume_backend_name'])
        self.assertEqual(5, len(types))
        conf = self._conf(cinderconf.API)
        self.assertEqual(cinderconf.MIGRATABLE_TYPE,
                         conf.get('DEFAULT', 'default_volume_type'))

    def test_new_volumes_land_on_a_source_rather_than_the_target(self):
        # GoodnessWeigher: the target only wins where it is alone
        privileged = _deployment(self.dir, privileged=True)
        goodness = {}
        for spec in cinderconf.SERVICES:
            if spec.backend is not None:
                conf = self._conf(spec.name, privileged)
                goodness[spec.backend.name] = int(conf.get(
                    spec.backend.name, 'goodness_function'))
        for backend in settings.BACKENDS:
            if backend != settings.TARGET:
                self.assertGreater(goodness[backend.name],
                                   goodness[settings.TARGET.name])


class OpenrcTest(testtools.TestCase):

    def setUp(self):
        super(OpenrcTest, self).setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.deployment = _deployment(self.dir, privileged=True)

    def _sourced(self, member=False):
        path = os.path.join(self.dir, 'openrc')
        with open(path, 'w') as f:
            f.write(cinderconf.render_openrc(self.deployment, member=member))
        out = subprocess.run(
            ['bash', '-c', '. "$0" && env -0', path],
            capture_output=True, check=True, env={'PATH': '/usr/bin:/bin'}
        ).stdout.decode()
        return dict(line.split('=', 1) for line in out.split('\0') if line)

    def test_sourced_openrc_exports_the_variables(self):
        env = self._sourced()
        expected = cinderconf.openrc_env(self.deployment)
        for key, value in expected.items():
            self.assertEqual(value, env[key], key)
        self.assertEqual('http://127.0.0.1:15000/v3', env['OS_AUTH_URL'])
        self.assertEqual('admin', env['OS_USERNAME'])
        self.assertEqual('adminpw', env['OS_PASSWORD'])
        self.assertEqual('admin', env['OS_PROJECT_NAME'])
        self.assertEqual('ad' * 16, env['ASYNCMIG_ADMIN_PROJECT_ID'])
        self.assertEqual('sandbox@rbd-async#rbd-async',
                         env['ASYNCMIG_TARGET_HOST'])
        self.assertEqual('volumes-src', env['ASYNCMIG_SOURCE_POOL'])
        self.assertEqual(self.deployment.ceph_conf, env['CEPH_CONF'])
        self.assertEqual('--id cinder --keyring %s' %
                         self.deployment.rbd_keyring, env['CEPH_ARGS'])
        self.assertTrue(env['PATH'].startswith('/venv/bin:'))
        self.assertEqual('127.0.0.1,localhost', env['no_proxy'])

    def test_openrc_names_the_other_sources(self):
        env = self._sourced()
        self.assertEqual('sandbox@rbd-xcluster#rbd-xcluster',
                         env['ASYNCMIG_XCLUSTER_HOST'])
        self.assertEqual('sandbox@nfs-src#nfs-src', env['ASYNCMIG_FILE_HOST'])
        self.assertEqual('rbd-xcluster', env['ASYNCMIG_XCLUSTER_TYPE'])
        self.assertEqual('nfs-src', env['ASYNCMIG_FILE_TYPE'])
        self.assertEqual('volumes-xcluster', env['ASYNCMIG_XCLUSTER_POOL'])
        self.assertEqual(self.deployment.xcluster_ceph_conf,
                         env['ASYNCMIG_XCLUSTER_CEPH_CONF'])
        self.assertEqual('--id cinder --keyring %s' %
                         self.deployment.xcluster_keyring,
                         env['ASYNCMIG_XCLUSTER_CEPH_ARGS'])
        self.assertEqual(os.path.join(self.dir, 'nfs', 'share'),
                         env['ASYNCMIG_FILE_DIR'])
        self.assertEqual(cinderconf.nfs_mount_point(self.deployment),
                         env['ASYNCMIG_FILE_MOUNT_POINT'])

    def test_no_file_backend_variables_without_root(self):
        env = cinderconf.openrc_env(_deployment(self.dir))
        self.assertFalse([k for k in env if k.startswith('ASYNCMIG_FILE_')])
        self.assertIn('ASYNCMIG_XCLUSTER_HOST', env)

    def test_member_openrc_differs_in_the_identity_only(self):
        admin = cinderconf.openrc_env(self.deployment)
        member = cinderconf.openrc_env(self.deployment, member=True)
        self.assertEqual({'OS_USERNAME', 'OS_PASSWORD', 'OS_PROJECT_NAME'},
                         {k for k in admin if admin[k] != member[k]})
        self.assertEqual(('demo', 'demopw', 'demo'),
                         (member['OS_USERNAME'], member['OS_PASSWORD'],
                          member['OS_PROJECT_NAME']))
        sourced = self._sourced(member=True)
        self.assertEqual(member, {k: sourced[k] for k in member})


class TempestConfTest(testtools.TestCase):

    def test_tempest_sees_both_backends_and_no_other_service(self):
        deployment = _deployment('/sb')
        conf = _parse(settings.render_ini(tempest.settings(deployment,
                                                           '/sb/log')))
        self.assertEqual('rbd-src,rbd-async',
                         conf.get('volume', 'backend_names'))
        self.assertEqual('True', conf.get('volume-feature-enabled',
                                          'multi_backend'))
        self.assertEqual(('admin', 'adminpw', 'admin'),
                         (conf.get('auth', 'admin_username'),
                          conf.get('auth', 'admin_password'),
                          conf.get('auth', 'admin_project_name')))
        self.assertEqual(deployment.auth_url, conf.get('identity', 'uri_v3'))
        self.assertEqual(cinderconf.API_MICROVERSION,
                         conf.get('volume', 'max_microversion'))
        self.assertEqual({'cinder': 'True', 'nova': 'False',
                          'glance': 'False', 'swift': 'False',
                          'neutron': 'False'},
                         {name: conf.get('service_available', name)
                          for name in ('cinder', 'nova', 'glance', 'swift',
                                       'neutron')})


class DaemonsConfTest(testtools.TestCase):

    def setUp(self):
        super(DaemonsConfTest, self).setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path

    def test_mariadb_stays_on_loopback_and_out_of_etc(self):
        db = mariadb.MariaDB(os.path.join(self.dir, 'db'), 13306, self.dir)
        argv = db.daemon.argv
        self.assertIn('--no-defaults', argv)
        self.assertIn('--bind-address=127.0.0.1', argv)
        self.assertIn('--port=13306', argv)
        self.assertIn('--socket=%s' % db.socket, argv)
        self.assertEqual(db.datadir, db.daemon.marker)
        self.assertEqual(
            'mysql+pymysql://u:p@127.0.0.1:13306/d?charset=utf8mb4',
            db.url('d', 'u', 'p'))

    def test_keystone_stays_on_loopback_with_its_own_keys(self):
        server = keystone.Keystone(os.path.join(self.dir, 'ks'), 15000,
                                   '/venv/bin', self.dir)
        argv = server.daemon.argv
        self.assertEqual(['/venv/bin/python', '-m', keystone.__name__,
                          server.directory, '15000'], argv)
        self.assertEqual(server.directory, server.daemon.marker)
        conf = _parse(settings.render_ini(server.settings('mysql://k')))
        self.assertEqual('fernet', conf.get('token', 'provider'))
        for section in ('fernet_tokens', 'fernet_receipts'):
            self.assertTrue(conf.get(section, 'key_repository').startswith(
                server.directory + os.sep))
        self.assertEqual('http://127.0.0.1:15000/v3', server.url)

    def test_etcd_stays_on_loopback_in_its_directory(self):
        server = etcd.Etcd(os.path.join(self.dir, 'etcd'), 12379, 12380,
                           self.dir)
        argv = server.daemon.argv
        for flag, value in (('--listen-client-urls', 'http://127.0.0.1:12379'),
                            ('--listen-peer-urls', 'http://127.0.0.1:12380'),
                            ('--data-dir', os.path.join(server.directory,
                                                        'data'))):
            self.assertEqual(value, argv[argv.index(flag) + 1])
        self.assertEqual(server.directory, server.daemon.marker)
        self.assertEqual('etcd3+http://127.0.0.1:12379?lock_timeout=30',
                         server.backend_url)
        again = etcd.Etcd.from_dict(server.to_dict())
        self.assertEqual(server.to_dict(), again.to_dict())

    def test_rabbitmq_ports_are_its_own(self):
        home = os.path.join(self.dir, 'mq')
        os.makedirs(home)
        mq = rabbitmq.RabbitMQ(home, {'amqp': 1, 'dist': 2, 'epmd': 3},
                               'cinder', 'pw', 'cinder', self.dir)
        env = mq.server.env
        self.assertEqual('3', env['ERL_EPMD_PORT'])
        self.assertEqual('2', env['RABBITMQ_DIST_PORT'])
        self.assertEqual('1', env['RABBITMQ_NODE_PORT'])
        self.assertIn('-start_epmd false',
                      env['RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS'])
        self.assertEqual(['epmd', '-port', '3'], mq.epmd.argv)
        self.assertEqual(home, env['HOME'])
        self.assertEqual('rabbit://cinder:pw@127.0.0.1:1/cinder',
                         mq.transport_url)
        mq.write_config()
        with open(env['RABBITMQ_CONFIG_FILE']) as f:
            conf = f.read()
        self.assertIn('listeners.tcp.1 = 127.0.0.1:1\n', conf)
        self.assertIn('default_vhost = cinder\n', conf)

    def test_records_round_trip(self):
        db = mariadb.MariaDB(os.path.join(self.dir, 'db'), 13306, self.dir)
        again = mariadb.MariaDB.from_dict(db.to_dict())
        self.assertEqual(db.daemon.to_dict(), again.daemon.to_dict())
        mq = rabbitmq.RabbitMQ(self.dir, {'amqp': 1, 'dist': 2, 'epmd': 3},
                               'u', 'p', 'v', self.dir)
        again = rabbitmq.RabbitMQ.from_dict(mq.to_dict())
        self.assertEqual(mq.to_dict(), again.to_dict())


class SandboxApiTest(testtools.TestCase):

    def test_up_refuses_a_used_directory(self):
        directory = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, directory)
        marker = os.path.join(directory, 'something')
        open(marker, 'w').close()
        self.addCleanup(os.unlink, marker)
        exc = self.assertRaises(cloud.SandboxError, cloud.Sandbox.up,
                                directory)
        self.assertIn('not empty', str(exc))
        self.assertEqual(['something'], os.listdir(directory))

    def test_load_without_record(self):
        directory = self.useFixture(fixtures.TempDir()).path
        exc = self.assertRaises(cloud.SandboxError, cloud.Sandbox.load,
                                directory)
        self.assertIn('no sandbox record', str(exc))

    def test_sandbox_from_before_the_second_cluster(self):
        directory = self.useFixture(fixtures.TempDir()).path
        state = {'ceph_dir': os.path.join(directory, 'ceph'),
                 'services': {}, 'mariadb': None, 'rabbitmq': None}
        sandbox = cloud.Sandbox(directory, state)
        self.assertEqual({}, sandbox.pids())
        exc = self.assertRaises(cloud.SandboxError, getattr, sandbox,
                                'xcluster')
        self.assertIn('no second cluster', str(exc))
        sandbox.down()
        self.assertFalse(os.path.exists(directory))

    def test_down_finds_both_clusters_in_the_record(self):
        # as after a crash: records, no daemon left
        directory = self.useFixture(fixtures.TempDir()).path
        state = {'services': {}, 'mariadb': None, 'rabbitmq': None}
        for key, name in (('ceph_dir', 'ceph'), ('xcluster_dir', 'xcluster')):
            state[key] = os.path.join(directory, name)
            os.makedirs(state[key])
            with open(os.path.join(state[key], 'cluster.json'), 'w') as f:
                json.dump({'fsid': name, 'pools': [], 'daemons': {}}, f)
        sandbox = cloud.Sandbox(directory, state)
        clusters = sandbox.clusters()
        self.assertEqual({'ceph': 'ceph', 'ceph-xcluster': 'xcluster'},
                         {k: c.fsid for k, c in clusters.items()})
        self.assertEqual('xcluster', sandbox.xcluster.fsid)
        self.assertEqual({'ceph': [], 'ceph-xcluster': []}, sandbox.pids())
        sandbox.down()
        self.assertFalse(os.path.exists(directory))

    def test_explicit_volume_manager_is_taken_as_is(self):
        self.assertEqual(('x.Y', None),
                         cloud.resolve_volume_manager('x.Y'))

    def test_api_timestamps_are_utc(self):
        self.assertEqual(86400.5,
                         cloud._utc_epoch('1970-01-02T00:00:00.500000'))


class _FakeDaemon(object):

    def __init__(self, started_at):
        self.started_at = started_at

    def check(self):
        pass


class _ListedSandbox(cloud.Sandbox):
    """A sandbox whose service list comes from ``lists``, one per call."""

    def __init__(self, lists, started_at):
        super(_ListedSandbox, self).__init__('/nonexistent', {})
        self.lists = list(lists)
        self.started_at = started_at
        self.calls = 0

    def service(self, name):
        return cloud.Service(self, cinderconf.service_spec(name),
                             _FakeDaemon(self.started_at))

    def service_list(self):
        self.calls += 1
        return self.lists.pop(0)


def _listing(second, states):
    return [{'binary': 'cinder-volume', 'host': 'sandbox@%s' % backend,
             'state': state,
             'updated_at': '1970-01-01T00:00:%02d.000000' % second}
            for backend, state in states.items()]


class WaitServicesUpTest(testtools.TestCase):

    NAMES = [cinderconf.VOLUME_SOURCE, cinderconf.VOLUME_XCLUSTER,
             cinderconf.VOLUME_FILE]

    def test_services_are_watched_together(self):
        up = {'rbd-src': 'up', 'rbd-xcluster': 'up', 'nfs-src': 'up'}
        sandbox = _ListedSandbox([_listing(second, up)
                                  for second in (11, 13, 15)], 10)
        sandbox.wait_services_up(self.NAMES, timeout=10)
        # two heartbeats of each, seen in two listings, not two each
        self.assertEqual(2, sandbox.calls)

    def test_the_slowest_and_a_previous_life_are_waited_for(self):
        lists = [
            # the heartbeat of nfs-src's previous life does not count
            _listing(5, {'nfs-src': 'up'}) +
            _listing(11, {'rbd-src': 'up', 'rbd-xcluster': 'up'}),
            _listing(5, {'nfs-src': 'up'}) +
            _listing(13, {'rbd-src': 'up', 'rbd-xcluster': 'up'}),
            _listing(12, {'nfs-src': 'down', 'rbd-src': 'up',
                          'rbd-xcluster': 'up'}),
            _listing(14, {'nfs-src': 'up', 'rbd-src': 'up',
                          'rbd-xcluster': 'up'}),
        ]
        sandbox = _ListedSandbox(lists, 10)
        sandbox.wait_services_up(self.NAMES, timeout=10)
        self.assertEqual(4, sandbox.calls)


class PrintSettingsTest(testtools.TestCase):

    def _run(self, *args):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = config_cmd.main(list(args))
        return rc, out.getvalue()

    def test_devstack_target_settings(self):
        rc, out = self._run('--backend', 'target', '--ceph-conf', '/e/c.conf',
                            '--rbd-user', 'cinder', '--secret-uuid', 'u1',
                            '--pool', 'fast', '--name', 'ceph-async')
        self.assertEqual(0, rc)
        lines = out.splitlines()
        self.assertEqual('DEFAULT volume_manager %s' %
                         settings.VOLUME_MANAGER, lines[0])
        self.assertIn('ceph-async volume_driver %s' %
                      settings.TARGET_DRIVER, lines)
        self.assertIn('ceph-async rbd_pool fast', lines)
        self.assertIn('ceph-async rbd_ceph_conf /e/c.conf', lines)
        self.assertFalse([line for line in lines
                          if line.startswith('rbd-src ')])

    def test_same_settings_as_the_sandbox(self):
        rc, out = self._run('--format', 'ini', '--backend', 'target',
                            '--ceph-conf', '/c', '--rbd-user', 'cinder',
                            '--secret-uuid', 's')
        self.assertEqual(0, rc)
        expected = settings.render_ini(
            settings.manager_options() +
            settings.backend_options(settings.TARGET, '/c', 'cinder', 's'))
        self.assertEqual(expected, out)

    def test_devstack_gets_no_sandbox_only_backend(self):
        rc, out = self._run()
        self.assertEqual(0, rc)
        sections = {line.split()[0] for line in out.splitlines()}
        self.assertEqual({'DEFAULT', 'rbd-src', 'rbd-async'}, sections)
        self.assertNotIn('async_migration_shared_file_backends', out)
        with contextlib.redirect_stderr(io.StringIO()):
            exc = self.assertRaises(SystemExit, self._run,
                                    '--backend', 'file')
        self.assertEqual(2, exc.code)

    def test_name_needs_one_backend(self):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc, _out = self._run('--name', 'x')
        self.assertEqual(1, rc)
        self.assertIn('exactly one --backend', err.getvalue())
