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

"""What a Cinder host installs: the plugin without the sandbox."""

import os
import subprocess
import sys

import testtools

from cinder_asyncmig.sandbox import roots

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# what cinder-volume, cinder-api, OpenStackClient and devstack load
_ON_A_CINDER_HOST = ('cinder_asyncmig.volume.manager',
                     'cinder_asyncmig.volume.drivers.rbd',
                     'cinder_asyncmig.api.async_migration',
                     'cinder_asyncmig.osc.migration',
                     'cinder_asyncmig.cmd.config')


class PackagingTest(testtools.TestCase):

    def test_sandbox_requirements_are_an_extra_only(self):
        extra = {r.split('>')[0].split('<')[0].lower()
                 for r in roots.sandbox_requirements()}
        self.assertIn('pymysql', extra)
        self.assertIn('python-cinderclient', extra)
        with open(os.path.join(REPO, 'requirements.txt')) as f:
            required = {line.split('#')[0].split('>')[0].strip().lower()
                        for line in f if line.split('#')[0].strip()}
        self.assertEqual(set(), extra & required)

    def test_a_cinder_host_loads_nothing_of_the_sandbox(self):
        # as the services start: Cinder's objects registered first
        code = ('import sys\n'
                'from cinder import objects\n'
                'objects.register_all()\n'
                'for name in %r:\n'
                '    __import__(name)\n'
                'print("\\n".join(sorted(sys.modules)))\n' %
                (_ON_A_CINDER_HOST,))
        loaded = subprocess.run(
            [sys.executable, '-c', code], cwd=REPO, check=True,
            capture_output=True, text=True).stdout.split()
        self.assertEqual([], [m for m in loaded if m.split('.')[0] in (
            'pymysql', 'keystone', 'etcd3gw', 'cinderclient', 'tempest')
            or m.startswith('cinder_asyncmig.sandbox')])
