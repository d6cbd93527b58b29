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

"""The backends and volume manager of a deployment, in one place.

Both the sandbox (``cinder-asyncmig-sandbox up``) and the devstack plugin
(``devstack/plugin.sh``, through ``cinder-asyncmig-sandbox print-settings``)
write cinder.conf from the functions below, so what is tested is what is
deployed. A setting is a ``(section, key, value)`` triple, the arguments of
devstack's ``iniset``.
"""

import collections

STOCK_VOLUME_MANAGER = 'cinder.volume.manager.VolumeManager'
VOLUME_MANAGER = 'cinder_asyncmig.volume.manager.AsyncMigrationVolumeManager'

STOCK_RBD_DRIVER = 'cinder.volume.drivers.rbd.RBDDriver'
TARGET_DRIVER = 'cinder_asyncmig.volume.drivers.rbd.AsyncMigrationRBDDriver'

#: One Cinder backend: its section (also its ``volume_backend_name`` and
#: the name of its volume type), its role in a migration, its Ceph pool,
#: its driver, and options beyond the RBD ones as ``(key, value)`` pairs.
Backend = collections.namedtuple('Backend',
                                 'name role pool driver options')

SOURCE = Backend(name='rbd-src', role='source', pool='volumes-src',
                 driver=STOCK_RBD_DRIVER, options=())
TARGET = Backend(name='rbd-async', role='target', pool='volumes-async',
                 driver=TARGET_DRIVER,
                 options=(('async_migration_source_kinds', 'rbd-linked'),))
BACKENDS = (SOURCE, TARGET)

#: Sandbox only: quick heartbeats so that a killed cinder-volume shows
#: ``down`` within seconds, and no start-up delays meant for big clouds.
SERVICE_TIMING = (
    ('DEFAULT', 'report_interval', '2'),
    ('DEFAULT', 'service_down_time', '8'),
    ('DEFAULT', 'periodic_interval', '5'),
    ('DEFAULT', 'periodic_fuzzy_delay', '0'),
    ('DEFAULT', 'scheduler_driver_init_wait_time', '10'),
)


def backend(name):
    """Return the backend called ``name`` (``KeyError`` if none)."""
    for candidate in BACKENDS:
        if name in (candidate.name, candidate.role):
            return candidate
    raise KeyError(name)


def backend_options(spec, ceph_conf, rbd_user, secret_uuid, pool=None,
                    name=None, state_dir=None):
    """Return the settings of one backend's section.

    :param spec: a :class:`Backend`.
    :param ceph_conf: ceph.conf of the cluster (``rbd_ceph_conf``).
    :param rbd_user: Ceph client name without ``client.``; it needs
                     ``profile rbd`` on every pool of the deployment.
    :param secret_uuid: libvirt secret of that client (``rbd_secret_uuid``).
    :param pool: Ceph pool, if not the spec's.
    :param name: section and backend name, if not the spec's.
    :param state_dir: the target driver's ``async_migration_state_dir``
                      (its default, under ``state_path``, when None).
    :returns: a list of ``(section, key, value)``.
    """
    section = name or spec.name
    values = [
        ('volume_driver', spec.driver),
        ('volume_backend_name', section),
        ('rbd_pool', pool or spec.pool),
        ('rbd_ceph_conf', ceph_conf),
        ('rbd_user', rbd_user),
        ('rbd_secret_uuid', secret_uuid),
    ]
    values.extend(spec.options)
    if state_dir and spec.driver == TARGET_DRIVER:
        values.append(('async_migration_state_dir', state_dir))
    return [(section, key, value) for key, value in values]


def manager_options(volume_manager=VOLUME_MANAGER):
    """Return the settings that select the volume manager."""
    return [('DEFAULT', 'volume_manager', volume_manager)]


def iniset_lines(settings):
    """Render settings as ``section key value`` lines for ``iniset``.

    The value is last, so ``read -r section key value`` keeps its spaces.
    """
    for section, key, value in settings:
        for part in (section, key):
            if not part or any(c.isspace() for c in part):
                raise ValueError('section and key must be single words: '
                                 '%r %r' % (section, key))
        if '\n' in str(value):
            raise ValueError('value of %s.%s spans lines' % (section, key))
    return ''.join('%s %s %s\n' % setting for setting in settings)


def render_ini(settings):
    """Render settings as an ini file, sections in order of appearance.

    ``DEFAULT`` comes first; a key set twice in a section keeps its last
    value, the way repeated ``iniset`` calls behave.
    """
    sections = {'DEFAULT': {}}
    for section, key, value in settings:
        sections.setdefault(section, {})[key] = value
    chunks = []
    for section, values in sections.items():
        if values or section != 'DEFAULT':
            chunks.append('[%s]\n%s' % (section, ''.join(
                '%s = %s\n' % (key, value) for key, value in values.items())))
    return '\n'.join(chunks)
