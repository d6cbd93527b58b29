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

import json
import os
import subprocess
from unittest import mock

import fixtures
import testtools

from cinder_asyncmig.cmd import ceph as ceph_cmd
from cinder_asyncmig.cmd import roots as roots_cmd
from cinder_asyncmig.cmd import sandbox as sandbox_cmd
from cinder_asyncmig.sandbox import roots


class RootsTest(testtools.TestCase):

    def setUp(self):
        super(RootsTest, self).setUp()
        self.cache = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.EnvironmentVariable(roots.ROOTS_DIR_ENV,
                                                     self.cache))
        # as on the host, whatever root the tests themselves run in
        self.useFixture(fixtures.MockPatchObject(roots, 'current',
                                                 return_value=roots.HOST))

    def _fake_built(self, name, recipe=None):
        marker = os.path.join(self.cache, name, roots.MARKER.lstrip('/'))
        os.makedirs(os.path.dirname(marker))
        with open(marker, 'w') as f:
            json.dump({'release': name,
                       'recipe': recipe or roots._recipe(name)}, f)

    def test_the_host_release_runs_as_it_is(self):
        argv, env = roots.command(roots.HOST, ['rbd', 'ls'])
        self.assertEqual(['rbd', 'ls'], argv)
        self.assertIsNone(env)

    def test_unknown_release(self):
        exc = self.assertRaises(roots.RootError, roots.command, 'quincy',
                                ['true'])
        self.assertIn("unknown Ceph release 'quincy'", str(exc))
        self.assertIn('reef', str(exc))

    def test_a_root_not_built_says_how_to_build_it(self):
        exc = self.assertRaises(roots.RootError, roots.command, 'tentacle',
                                ['true'])
        self.assertIn('cinder-asyncmig-roots build tentacle', str(exc))

    def test_a_root_of_an_older_recipe_is_not_used(self):
        self._fake_built('reef', recipe='0' * 16)
        self.assertFalse(roots.is_built('reef'))
        self.assertRaises(roots.RootError, roots.command, 'reef', ['true'])

    def test_inside_a_root_another_root_counts_as_built(self):
        # nested: the recipe's files are not in the root, only the marker
        self._fake_built('tentacle', recipe='0' * 16)
        self.assertFalse(roots.is_built('tentacle'))
        with mock.patch.object(roots, 'current', return_value='reef'):
            self.assertTrue(roots.is_built('tentacle'))
            self.assertFalse(roots.is_built('pacific'))

    def test_command_enters_the_root_with_binds_at_their_own_paths(self):
        self._fake_built('tentacle')
        work = self.useFixture(fixtures.TempDir()).path
        argv, env = roots.command('tentacle', ['ceph-mon', '-f'],
                                  binds=[work, os.path.join(work, 'sub')],
                                  cwd=work)
        self.assertEqual(['unshare', '--mount', '--propagation', 'private',
                          '--', '/bin/sh', '-c'], argv[:7])
        sep = argv.index('--', 5)
        pairs = argv[10:sep]
        mounts = dict(zip(pairs[1::2], pairs[0::2]))
        self.assertEqual(os.path.join(self.cache, 'tentacle'), argv[9])
        # at its own path, or inside a bound parent (/tmp)
        self.assertTrue([d for d in mounts if mounts[d] == d and (
            work == d or work.startswith(d + '/'))], mounts)
        self.assertEqual('/tmp', mounts['/tmp'])
        self.assertEqual(os.path.dirname(roots.__file__).rsplit('/', 1)[0],
                         mounts[os.path.join(roots.SRC, 'cinder_asyncmig')])
        # a directory inside another bind is not bound twice
        self.assertNotIn(os.path.join(work, 'sub'), mounts)
        self.assertEqual(['ceph-mon', '-f'], argv[-2:])
        self.assertTrue(env['PATH'].startswith(roots.VENV + '/bin:'))
        self.assertEqual(roots.SRC, env['PYTHONPATH'])
        self.assertNotIn('VIRTUAL_ENV', env)

    def test_host_only_packages_stay_out_of_roots(self):
        bindep = self.useFixture(fixtures.TempDir()).join('bindep.txt')
        with open(bindep, 'w') as f:
            f.write('# tools\ndebootstrap [platform:dpkg host]\n\n'
                    'ceph-osd [platform:dpkg]\nfio\n')
        self.assertEqual(['ceph-osd', 'fio'], roots.root_packages(bindep))

    def test_the_host_release_has_no_root_to_build(self):
        exc = self.assertRaises(roots.RootError, roots.build, roots.HOST)
        self.assertIn('host', str(exc))

    def test_a_cached_root_is_reused(self):
        self._fake_built('reef')
        with mock.patch.object(subprocess, 'run') as run:
            self.assertEqual(os.path.join(self.cache, 'reef'),
                             roots.build('reef'))
        self.assertEqual([], run.call_args_list)

    def test_failed_build_keeps_nothing(self):
        with mock.patch.object(subprocess, 'run', return_value=(
                subprocess.CompletedProcess([], 1))):
            exc = self.assertRaises(roots.RootError, roots.build, 'reef')
        self.assertIn('debootstrap trixie failed', str(exc))
        self.assertEqual([], [n for n in os.listdir(self.cache)
                              if not n.endswith('.lock')])

    def test_cli_lists_releases(self):
        self._fake_built('reef')
        out = self.useFixture(fixtures.StringStream('stdout'))
        with mock.patch('sys.stdout', out.stream):
            self.assertEqual(0, roots_cmd.main(['list']))
        lines = out.getDetails()['stdout'].as_text().splitlines()
        self.assertEqual(['pacific', 'reef', 'tentacle'],
                         [line.split()[0] for line in lines])
        self.assertIn('the host', lines[0])
        self.assertIn(os.path.join(self.cache, 'reef'), lines[1])
        self.assertIn('not built', lines[2])

    def test_launchers_say_how_to_build_a_missing_root(self):
        work = self.useFixture(fixtures.TempDir()).path
        for main, command in ((ceph_cmd.main, 'cinder-asyncmig-ceph up'),
                              (sandbox_cmd.main,
                               'cinder-asyncmig-sandbox up')):
            err = self.useFixture(fixtures.StringStream('stderr'))
            with mock.patch('sys.stderr', err.stream):
                self.assertEqual(1, main(['up', '--dir', work,
                                          '--ceph-release', 'reef']))
            text = err.getDetails()['stderr'].as_text()
            self.assertIn(command, text)
            self.assertIn('cinder-asyncmig-roots build reef', text)
            # nothing was started or written
            self.assertEqual([], os.listdir(work))
