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

"""The devstack plugin's functions against a real Ceph cluster.

devstack cannot run here, so this runs what the plugin does in its
``stack post-config`` phase, ``configure_asyncmig_ceph`` and
``configure_asyncmig_cinder`` of ``devstack/plugin.sh``, in bash, on a
cluster laid out as devstack-plugin-ceph leaves it: a ``volumes`` pool and
a ``client.cinder`` user limited to it. devstack's own helpers the plugin
calls (``iniset``, ``iniget``, ``sudo``...) are small stand-ins here. The
Cinder backend the plugin wrote is then built from ``cinder.conf`` and
takes over a volume of devstack's pool.

In the ``e2e-reef-on-tentacle`` leg this is devstack-plugin-ceph's set-up
of 2026: a Tentacle cluster, Reef clients.
"""

import configparser
import os
import random
import subprocess
import sys
import tempfile
import uuid

from cinder import context
from cinder.volume.drivers import rbd as cinder_rbd
from oslo_utils import units
import rbd
import testtools

from cinder_asyncmig.sandbox import backends
from cinder_asyncmig.sandbox import ceph
from cinder_asyncmig.volume.drivers import rbd as target_rbd
from tests.e2e import test_async_migration as base_e2e
from tests.functional import base as ceph_base

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# devstack's helpers as the plugin uses them, and its settings
_DEVSTACK = r'''
set -eu
function define_plugin { :; }
function plugin_requires { :; }
function enable_service { :; }
function is_service_enabled { return 1; }
function echo_summary { echo "$@"; }
function sudo { "$@"; }
function get_python_exec_prefix { echo "$BIN"; }
function iniset {
    "$PYTHON" - "$@" <<'EOF'
import configparser, sys
path, section, key, value = sys.argv[1:]
config = configparser.RawConfigParser(strict=False)
config.optionxform = str
config.read(path)
if section != 'DEFAULT' and not config.has_section(section):
    config.add_section(section)
config.set(section, key, value)
with open(path, 'w') as f:
    config.write(f)
EOF
}
function iniset_multiline {
    "$PYTHON" - "$@" <<'EOF'
import sys
path, section, key = sys.argv[1:4]
header = '[%s]' % section
with open(path) as f:
    lines = f.read().splitlines()
current, kept = None, []
for line in lines:
    if line.startswith('['):
        current = line.strip()
    elif current == header and line.split('=')[0].strip() == key:
        continue
    kept.append(line)
at = kept.index(header) + 1
kept[at:at] = ['%s = %s' % (key, value) for value in sys.argv[4:]]
with open(path, 'w') as f:
    f.write('\n'.join(kept) + '\n')
EOF
}
function iniget {
    "$PYTHON" - "$@" <<'EOF'
import configparser, sys
path, section, key = sys.argv[1:]
config = configparser.RawConfigParser(strict=False)
config.read(path)
print(config.get(section, key, fallback=''))
EOF
}
DEST=$(dirname "$ASYNCMIG_DIR")
source "$ASYNCMIG_DIR/devstack/settings"
source "$ASYNCMIG_DIR/devstack/plugin.sh"
configure_asyncmig_ceph
configure_asyncmig_cinder
'''


class DevstackPluginTest(testtools.TestCase):

    def setUp(self):
        super(DevstackPluginTest, self).setUp()
        self.dir = tempfile.mkdtemp(prefix='devstack-',
                                    dir=base_e2e._test_dir())
        # devstack-plugin-ceph's layout: Cinder's pool and user
        self.cluster = ceph.CephCluster.up(
            os.path.join(self.dir, 'ceph'), memstore_bytes=2 * units.Gi,
            pools=('volumes',), client='cinder')
        self.addCleanup(self.cluster.down)
        self.cinder_conf = os.path.join(self.dir, 'cinder.conf')
        with open(self.cinder_conf, 'w') as f:
            f.write('[DEFAULT]\nenabled_backends = ceph\n')

    def plugin(self):
        # what setup_develop installs: the console script
        bin_dir = os.path.join(self.dir, 'bin')
        os.makedirs(bin_dir, exist_ok=True)
        script = os.path.join(bin_dir, 'cinder-asyncmig-config')
        with open(script, 'w') as f:
            f.write('#!/bin/sh\nexec "%s" -m cinder_asyncmig.cmd.config '
                    '"$@"\n' % sys.executable)
        os.chmod(script, 0o755)
        env = dict(os.environ, PYTHON=sys.executable, ASYNCMIG_DIR=REPO,
                   BIN=bin_dir,
                   CEPH_CONF_FILE=self.cluster.conf_path,
                   CINDER_CEPH_USER='cinder',
                   CINDER_CEPH_UUID=str(uuid.uuid4()),
                   CINDER_CONF=self.cinder_conf,
                   DATA_DIR=os.path.join(self.dir, 'data'),
                   STACK_USER='root')
        result = subprocess.run(['bash', '-c', _DEVSTACK], env=env,
                                capture_output=True, text=True, timeout=300)
        self.assertEqual(0, result.returncode, result.stderr[-3000:])

    def test_post_config_sets_up_a_working_target_backend(self):
        self.plugin()
        # again, as a re-stack does: nothing doubles
        self.plugin()
        conf = configparser.RawConfigParser(strict=False)
        conf.read(self.cinder_conf)
        # a multi-valued option: one line per value, once each
        with open(self.cinder_conf) as f:
            extensions = [line.split('=', 1)[1].strip() for line in f
                          if line.startswith('osapi_volume_extension')]
        self.assertEqual(['cinder.api.contrib.standard_extensions',
                          'cinder_asyncmig.api.async_migration.'
                          'Async_migration'], extensions)
        self.assertEqual('ceph,rbd-async',
                         conf.get('DEFAULT', 'enabled_backends'))
        self.assertEqual(
            'cinder_asyncmig.volume.manager.AsyncMigrationVolumeManager',
            conf.get('DEFAULT', 'volume_manager'))
        section = dict(conf.items('rbd-async'))
        self.assertEqual('volumes-async', section['rbd_pool'])
        self.assertEqual(self.cluster.conf_path, section['rbd_ceph_conf'])
        self.assertTrue(os.path.isdir(section['async_migration_state_dir']))
        # the pool exists for RBD, and Cinder's user may use both pools
        self.assertIn('rbd', self.cluster.ceph(
            'osd', 'pool', 'application', 'get', 'volumes-async',
            admin=True))
        caps = self.cluster.ceph('auth', 'get', 'client.cinder', admin=True)
        self.assertIn('pool=volumes-async', caps)
        self.assertEqual(1, caps.count('pool=volumes-async'))

        # the backend the plugin wrote takes over a volume of devstack's
        options = {k: v for k, v in section.items()
                   if k.startswith('async_migration_')}
        target = backends.make_driver(
            target_rbd.AsyncMigrationRBDDriver, self.cluster,
            section['rbd_pool'], **options)
        self.assertTrue(target.get_volume_stats(
            refresh=True)['async_migration_target'])
        source = backends.make_driver(cinder_rbd.RBDDriver, self.cluster,
                                      'volumes')
        ctxt = context.get_admin_context()
        volume = backends.new_volume(ctxt, source, 1)
        model = ceph_base.ImageModel(units.Gi)
        client = self.cluster.connect()
        self.addCleanup(client.shutdown)
        src = client.open_ioctx('volumes')
        self.addCleanup(src.close)
        ceph_base.fill_with_holes(model, src, volume.name,
                                  random.Random(self.id()), density=0.3)
        self.assertEqual((True, True, {}), target.migrate_volume_target(
            ctxt, volume, backends.host_dict(source)))
        final = target.complete_migration_target(ctxt, volume)
        self.assertEqual('success', final['phase'])
        dst = client.open_ioctx('volumes-async')
        self.addCleanup(dst.close)
        self.assertEqual(model.sha256(),
                         ceph_base.image_sha256(dst, volume.name))
        self.assertNotIn(volume.name, rbd.RBD().list(src))
