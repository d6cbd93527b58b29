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

"""What the sandbox writes: Cinder configuration, api-paste.ini, openrc.

Pure functions of the sandbox's layout and ports; :mod:`.cloud` writes
their output and starts the services. Backend and manager settings come
from :mod:`.settings`, shared with the devstack plugin.
"""

import collections
import configparser
import io
import os
import shlex

from cinder_asyncmig.sandbox import settings

#: Names of the sandbox's Cinder services, for ``Sandbox.service(name)``.
API = 'api'
SCHEDULER = 'scheduler'
VOLUME_SOURCE = 'volume-source'
VOLUME_TARGET = 'volume-target'

#: The ``host`` of every service; volume services are ``host@backend``.
HOST = 'sandbox'

#: noauth identities: an admin, and a member of another project. Project
#: ids must look like Keystone's (``[0-9a-f-]+``, Cinder's
#: ``project_id_regex``): the client puts them in the URL.
ADMIN_USER = 'admin'
ADMIN_PROJECT = 'ad' * 16
MEMBER_USER = 'demo'
MEMBER_PROJECT = 'de' * 16

#: python-cinderclient 9.x and Cinder 29 both top out at 3.71.
API_MICROVERSION = '3.71'

#: A volume type fitting both backends. ``cinder migrate`` keeps the
#: volume's type and the scheduler checks it against the destination, so
#: a volume of a type pinned to the source (``volume_backend_name``) can
#: only move by retype; volumes of this type can be migrated both ways.
#: It is the default type, and new volumes of it land on the source: the
#: scheduler weighs backends by ``goodness_function`` only.
MIGRATABLE_TYPE = 'rbd-migratable'
GOODNESS = {'source': '100', 'target': '50'}

ServiceSpec = collections.namedtuple('ServiceSpec', 'name binary backend')

SERVICES = (
    ServiceSpec(API, 'cinder-api', None),
    ServiceSpec(SCHEDULER, 'cinder-scheduler', None),
    ServiceSpec(VOLUME_SOURCE, 'cinder-volume', settings.SOURCE),
    ServiceSpec(VOLUME_TARGET, 'cinder-volume', settings.TARGET),
)

#: What the services need to know of the rest of the sandbox.
Deployment = collections.namedtuple('Deployment', [
    'directory',        # the sandbox directory
    'api_port',
    'transport_url',
    'database_url',
    'ceph_conf',
    'rbd_user',
    'rbd_keyring',
    'rbd_secret_uuid',
    'volume_manager',
    'bin_dir',          # where the cinder console scripts are
    'privileged',       # root: volume services get a host's /etc/ceph
])


def service_spec(name):
    """Return the :class:`ServiceSpec` called ``name``."""
    for spec in SERVICES:
        if spec.name == name:
            return spec
    raise KeyError('no sandbox service %r; the services are %s' % (
        name, ', '.join(s.name for s in SERVICES)))


def service_spec_of(backend):
    """Return the :class:`ServiceSpec` of the volume service of backend."""
    for spec in SERVICES:
        if spec.backend == backend:
            return spec
    raise KeyError(backend.name)


def service_host(spec):
    """The host of a service as the service list shows it."""
    if spec.backend is None:
        return HOST
    return '%s@%s' % (HOST, spec.backend.name)


def pool_host(backend):
    """The ``host@backend#pool`` of a backend, for ``cinder migrate``.

    Cinder's RBD driver reports no pools, so the pool is the backend name.
    """
    return '%s@%s#%s' % (HOST, backend.name, backend.name)


def path(deployment, *parts):
    """A path inside the sandbox directory."""
    return os.path.join(deployment.directory, *parts)


def config_path(deployment, spec):
    return path(deployment, 'etc', 'cinder-%s.conf' % spec.name)


def log_path(deployment, spec):
    return path(deployment, 'log', 'cinder-%s.log' % spec.name)


def host_ceph_dir(deployment):
    """The sandbox's /etc/ceph, seen there by the volume services."""
    return path(deployment, 'etc', 'ceph')


def common_settings(deployment):
    """Settings every service of the sandbox shares.

    There is no ``log_file``: oslo.log then writes to stdout, which the
    sandbox sends to the service's log file, together with whatever is
    printed before logging is set up.
    """
    state = path(deployment, 'state')
    common = [
        ('DEFAULT', 'debug', 'True'),
        ('DEFAULT', 'state_path', state),
        ('DEFAULT', 'host', HOST),
        ('DEFAULT', 'my_ip', '127.0.0.1'),
        ('DEFAULT', 'transport_url', deployment.transport_url),
        ('DEFAULT', 'default_volume_type', MIGRATABLE_TYPE),
        ('DEFAULT', 'scheduler_default_weighers', 'GoodnessWeigher'),
        ('database', 'connection', deployment.database_url),
        ('oslo_concurrency', 'lock_path', os.path.join(state, 'lock')),
        ('coordination', 'backend_url',
         'file://%s' % os.path.join(state, 'coordination')),
    ]
    return common + list(settings.SERVICE_TIMING)


def api_settings(deployment):
    """The cinder-api settings: noauth, loopback, one worker."""
    return [
        ('DEFAULT', 'auth_strategy', 'noauth'),
        ('DEFAULT', 'api_paste_config',
         path(deployment, 'etc', 'api-paste.ini')),
        ('DEFAULT', 'resource_query_filters_file',
         path(deployment, 'etc', 'resource_filters.json')),
        ('DEFAULT', 'osapi_volume_listen', '127.0.0.1'),
        ('DEFAULT', 'osapi_volume_listen_port', str(deployment.api_port)),
        ('DEFAULT', 'osapi_volume_workers', '1'),
    ]


def volume_settings(deployment, backend):
    """The settings of a cinder-volume serving one backend."""
    state_dir = None
    if backend.driver == settings.TARGET_DRIVER:
        state_dir = path(deployment, 'state', 'asyncmig-%s' % backend.name)
    privsep = []
    if deployment.privileged:
        # os-brick and Cinder start their privsep daemons with
        # "sudo cinder-rootwrap", which finds neither in the virtualenv;
        # the sandbox already runs as root
        helper = '%s --config-file %s' % (
            os.path.join(deployment.bin_dir, 'privsep-helper'),
            config_path(deployment, service_spec_of(backend)))
        privsep = [(section, 'helper_command', helper)
                   for section in ('privsep_osbrick', 'cinder_sys_admin')]
    return ([('DEFAULT', 'enabled_backends', backend.name)] + privsep +
            settings.manager_options(deployment.volume_manager) +
            settings.backend_options(
                backend, deployment.ceph_conf, deployment.rbd_user,
                deployment.rbd_secret_uuid, state_dir=state_dir) +
            [(backend.name, 'goodness_function', GOODNESS[backend.role])])


def volume_types():
    """The sandbox's volume types as ``(name, description, extra_specs)``.

    One per backend, pinned to it, and :data:`MIGRATABLE_TYPE`.
    """
    types = [(b.name, 'volumes of the %s backend only' % b.role,
              {'volume_backend_name': b.name}) for b in settings.BACKENDS]
    types.append((MIGRATABLE_TYPE,
                  'volumes that can migrate between the backends',
                  # the CapabilitiesFilter's syntax: "<or> a <or> b"
                  {'volume_backend_name': ' '.join(
                      '<or> %s' % b.name for b in settings.BACKENDS)}))
    return types


def service_settings(deployment, spec):
    """Every setting of one service's configuration file."""
    result = common_settings(deployment)
    if spec.name == API:
        result += api_settings(deployment)
    if spec.backend is not None:
        result += volume_settings(deployment, spec.backend)
    return result


def service_argv(deployment, spec):
    """The command line of one service.

    With root, a volume service runs in a mount namespace of its own where
    the sandbox's ``etc/ceph`` is ``/etc/ceph``: os-brick reads the Ceph
    keyring from ``/etc/ceph/<cluster>.client.<user>.keyring`` when it
    attaches an RBD volume (generic migration does), as on a real host,
    and nothing of the sandbox lands in the machine's /etc/ceph. ``exec``
    keeps one pid from ``unshare`` to cinder-volume.
    """
    argv = [os.path.join(deployment.bin_dir, spec.binary),
            '--config-file', config_path(deployment, spec)]
    if spec.backend is None or not deployment.privileged:
        return argv
    return ['unshare', '--mount', '--propagation', 'private', '--',
            '/bin/sh', '-c', 'mount --bind "$0" /etc/ceph && exec "$@"',
            host_ceph_dir(deployment)] + argv


def api_paste(installed_text, admin_users=(ADMIN_USER,)):
    """Return Cinder's api-paste.ini with the sandbox's noauth filter.

    :param installed_text: the api-paste.ini Cinder installs.
    :param admin_users: user ids that get the admin role.
    """
    paste = configparser.RawConfigParser()
    paste.optionxform = str
    paste.read_string(installed_text)
    if not paste.has_section('filter:noauth'):
        raise ValueError('api-paste.ini has no [filter:noauth]')
    paste.remove_section('filter:noauth')
    paste.add_section('filter:noauth')
    paste.set('filter:noauth', 'paste.filter_factory',
              'cinder_asyncmig.sandbox.noauth:NoAuthMiddleware.factory')
    paste.set('filter:noauth', 'admin_users', ' '.join(admin_users))
    out = io.StringIO()
    paste.write(out)
    return out.getvalue()


def openrc_env(deployment, member=False):
    """The variables of the sandbox's openrc.

    :param member: for the non-admin identity instead of the admin.
    :returns: a dict of variable names to values.
    """
    user, project = ((MEMBER_USER, MEMBER_PROJECT) if member
                     else (ADMIN_USER, ADMIN_PROJECT))
    source, target = settings.SOURCE, settings.TARGET
    return {
        'OS_AUTH_TYPE': 'noauth',
        'OS_USER_ID': user,
        'OS_PROJECT_ID': project,
        'CINDER_ENDPOINT': 'http://127.0.0.1:%d/v3' % deployment.api_port,
        'OS_VOLUME_API_VERSION': API_MICROVERSION,
        'ASYNCMIG_SANDBOX_DIR': deployment.directory,
        'ASYNCMIG_ADMIN_USER_ID': ADMIN_USER,
        'ASYNCMIG_ADMIN_PROJECT_ID': ADMIN_PROJECT,
        'ASYNCMIG_MEMBER_USER_ID': MEMBER_USER,
        'ASYNCMIG_MEMBER_PROJECT_ID': MEMBER_PROJECT,
        'ASYNCMIG_SOURCE_HOST': pool_host(source),
        'ASYNCMIG_TARGET_HOST': pool_host(target),
        'ASYNCMIG_SOURCE_TYPE': source.name,
        'ASYNCMIG_TARGET_TYPE': target.name,
        'ASYNCMIG_MIGRATABLE_TYPE': MIGRATABLE_TYPE,
        'ASYNCMIG_SOURCE_POOL': source.pool,
        'ASYNCMIG_TARGET_POOL': target.pool,
        'CEPH_CONF': deployment.ceph_conf,
        'CEPH_ARGS': '--id %s --keyring %s' % (deployment.rbd_user,
                                               deployment.rbd_keyring),
    }


def render_openrc(deployment, member=False):
    """Return the text of an openrc file for ``.``-sourcing."""
    env = openrc_env(deployment, member=member)
    who = 'non-admin (%s)' % MEMBER_USER if member else 'admin'
    lines = ['# cinder-asyncmig sandbox in %s, as the %s user.' %
             (deployment.directory, who),
             '# Generated by cinder-asyncmig-sandbox; . this file.',
             'export PATH=%s:"$PATH"' % shlex.quote(deployment.bin_dir),
             '# loopback never goes through a proxy of the environment',
             'export no_proxy=127.0.0.1,localhost${no_proxy:+,$no_proxy}',
             'export NO_PROXY=127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}']
    lines += ['export %s=%s' % (key, shlex.quote(value))
              for key, value in sorted(env.items())]
    return '\n'.join(lines) + '\n'
