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

"""Tempest's volume API tests against a sandbox (tempest from PyPI).

:func:`settings` is the ``tempest.conf`` of a sandbox: Keystone's admin
for dynamic credentials, Cinder with the two RBD backends of devstack's
pair (``multi_backend``: the source and the async target), and no Nova,
Glance, Swift or Neutron, which the sandbox does not run; the tests that
need them skip themselves. :func:`run` runs a selection of tests with
``tempest run`` in a directory of the sandbox.
"""

import os
import subprocess

from cinder_asyncmig.sandbox import cinderconf
from cinder_asyncmig.sandbox import keystone
from cinder_asyncmig.sandbox import process
from cinder_asyncmig import settings as sandbox_settings

#: Every test of Cinder's API in tempest.
DEFAULT_REGEX = r'^tempest\.api\.volume\.'

#: Tests that need Glance without checking ``service_available.glance``
#: (tempest 47: they create a volume from an image, or their class builds
#: an image client), so they fail rather than skip in a cloud without
#: Glance. They are left out of every run, the stock baseline's too.
NEEDS_GLANCE = (
    r'tempest\.api\.volume\.test_volumes_extend\.VolumesExtendTest\.'
    r'test_volume_extend\b',
    r'tempest\.api\.volume\.test_volumes_get\.VolumesGetTest\.',
    r'tempest\.api\.volume\.test_volumes_negative\.VolumesNegativeTest\.',
)


def settings(deployment, log_dir):
    """The settings of ``tempest.conf`` for a sandbox.

    :param deployment: the sandbox's :class:`cinderconf.Deployment`.
    :param log_dir: where tempest's log goes.
    """
    admin = keystone.ADMIN
    backends = (sandbox_settings.SOURCE, sandbox_settings.TARGET)
    return [
        ('DEFAULT', 'log_file', os.path.join(log_dir, 'tempest.log')),
        ('auth', 'use_dynamic_credentials', 'True'),
        ('auth', 'admin_username', admin.user),
        ('auth', 'admin_password',
         deployment.identities[admin.key]['password']),
        ('auth', 'admin_project_name', admin.project),
        ('auth', 'admin_domain_name', 'Default'),
        ('auth', 'create_isolated_networks', 'False'),
        ('identity', 'uri_v3', deployment.auth_url),
        ('identity', 'auth_version', 'v3'),
        ('identity', 'region', keystone.REGION),
        ('identity', 'v3_endpoint_type', 'public'),
        ('identity-feature-enabled', 'api_v2', 'False'),
        # Cinder's policies check the token's scope (oslo.policy no longer
        # lets a service turn that off)
        ('enforce_scope', 'cinder', 'True'),
        ('enforce_scope', 'keystone', 'True'),
        ('service_available', 'cinder', 'True'),
        ('service_available', 'nova', 'False'),
        ('service_available', 'glance', 'False'),
        ('service_available', 'swift', 'False'),
        ('service_available', 'neutron', 'False'),
        ('volume', 'catalog_type', 'block-storage'),
        ('volume', 'endpoint_type', 'publicURL'),
        ('volume', 'region', keystone.REGION),
        ('volume', 'backend_names', ','.join(b.name for b in backends)),
        # what Cinder's RBD driver reports, the target's included
        ('volume', 'storage_protocol', 'ceph'),
        ('volume', 'vendor_name', 'Open Source'),
        ('volume', 'min_microversion', '3.0'),
        ('volume', 'max_microversion', cinderconf.API_MICROVERSION),
        ('volume', 'volume_size', '1'),
        ('volume-feature-enabled', 'multi_backend', 'True'),
        # no cinder-backup in the sandbox
        ('volume-feature-enabled', 'backup', 'False'),
        # no Nova: nothing attaches a volume to a server
        ('volume-feature-enabled', 'extend_attached_volume', 'False'),
        # Cinder's RBD driver manages and unmanages images by name
        ('volume-feature-enabled', 'manage_volume', 'True'),
        ('volume-feature-enabled', 'manage_snapshot', 'True'),
    ]


def run(sandbox, regex=DEFAULT_REGEX, concurrency=4, out=None):
    """Run tempest tests against ``sandbox``; its output goes to ``out``.

    :param regex: the tests to run (``tempest run --regex``).
    :param concurrency: test processes at once.
    :returns: tempest's exit status.
    """
    deployment = sandbox.deployment
    workspace = os.path.join(sandbox.directory, 'tempest')
    os.makedirs(workspace, exist_ok=True)
    config = os.path.join(workspace, 'tempest.conf')
    # the admin's password
    process.write_private(config, sandbox_settings.render_ini(
        settings(deployment, os.path.join(sandbox.directory, 'log'))))
    argv = [os.path.join(deployment.bin_dir, 'tempest'), 'run',
            '--config-file', config, '--regex', regex,
            '--exclude-regex', '|'.join(NEEDS_GLANCE),
            '--concurrency', str(concurrency)]
    return subprocess.run(argv, cwd=workspace, env=sandbox.cli_env(),
                          stdout=out, stderr=subprocess.STDOUT,
                          check=False).returncode
