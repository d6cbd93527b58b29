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

"""Cinder RBD backends on a throwaway cluster, without Cinder services.

Builds volume drivers the way cinder-volume does for a backend section
(options in the backend's group, ``do_setup``, ``check_for_setup_error``)
so the demo and the functional tests drive real driver code.
"""

import uuid

from cinder import context
from cinder import objects
from cinder.volume import configuration
from cinder.volume import driver as cinder_driver
from cinder.volume.drivers import rbd as cinder_rbd
from oslo_config import cfg

from cinder_asyncmig import opts

CONF = cfg.CONF


def make_driver(driver_class, cluster, pool, **overrides):
    """Return a set-up RBD driver for ``pool`` of ``cluster``.

    :param driver_class: Cinder's ``RBDDriver`` or a subclass.
    :param cluster: a :class:`cinder_asyncmig.sandbox.ceph.CephCluster`.
    :param overrides: more options of the backend section.
    """
    objects.register_all()
    group = 'backend-%s' % pool
    settings = dict(rbd_pool=pool, rbd_user=cluster.client,
                    rbd_ceph_conf=cluster.conf_path,
                    rbd_secret_uuid=str(uuid.uuid4()),
                    volume_backend_name=group,
                    rados_connect_timeout=30, **overrides)
    config = configuration.Configuration(cinder_driver.volume_opts,
                                         config_group=group)
    config.append_config_values(cinder_rbd.RBD_OPTS)
    config.append_config_values(opts.target_opts)
    config.append_config_values(opts.exporter_opts)
    # RBDDriver copies some options when it is built: override first
    for key, value in settings.items():
        CONF.set_override(key, value, group=group)
    drv = driver_class(configuration=config, host=host_of(pool))
    drv.do_setup(context.get_admin_context())
    drv.check_for_setup_error()
    return drv


def host_of(pool):
    """The ``host@backend#pool`` string of a sandbox backend."""
    return 'sandbox@backend-%s#%s' % (pool, pool)


def host_dict(drv):
    """What the scheduler knows of a backend: its host and capabilities."""
    return {'host': drv.host,
            'capabilities': drv.get_volume_stats(refresh=True)}


def new_volume(ctxt, drv, size_gib):
    """Create a volume on ``drv`` and return its (unsaved) object."""
    volume = objects.Volume(ctxt, id=str(uuid.uuid4()), size=size_gib,
                            host=drv.host, status='available',
                            _name_id=None, migration_status=None,
                            volume_type_id=None,
                            volume_type=None, encryption_key_id=None,
                            admin_metadata={}, metadata={},
                            volume_attachment=objects.VolumeAttachmentList())
    drv.create_volume(volume)
    return volume
