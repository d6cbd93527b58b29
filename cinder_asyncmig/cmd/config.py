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

"""cinder-asyncmig-config: the cinder.conf settings of a deployment.

    cinder-asyncmig-config [--format iniset|ini] [--backend ROLE ...]
                           [--name NAME] [--pool POOL] [--ceph-conf PATH]
                           [--rbd-user USER] [--secret-uuid UUID]
                           [--state-dir DIR] [--volume-manager CLASS]
    cinder-asyncmig-config --api [--format iniset|ini]

It prints the backend and volume manager settings (or, with ``--api``,
cinder-api's) of :mod:`cinder_asyncmig.settings`, as ``section key value``
lines for devstack's ``iniset`` or as an ini file: the backends devstack
deploys (the source and the target on one Ceph cluster), not the ones only
the sandbox has. The devstack plugin writes cinder.conf with it; it needs
nothing of the sandbox.
"""

import argparse
import sys

from cinder_asyncmig import settings


def _parser():
    parser = argparse.ArgumentParser(
        prog='cinder-asyncmig-config',
        description='Print the cinder.conf settings of the plugin\'s '
                    'backends and volume manager.')
    parser.add_argument('--format', choices=('iniset', 'ini'),
                        default='iniset',
                        help='"section key value" lines, or an ini file')
    parser.add_argument('--api', action='store_true',
                        help='print the cinder-api settings instead: '
                             'Cinder\'s API extensions and the plugin\'s')
    parser.add_argument('--backend', action='append',
                        choices=[b.role for b in settings.DEVSTACK_BACKENDS],
                        help='backend(s) to print (default: all)')
    parser.add_argument('--name', help='section and backend name, if not '
                                       'the default (one backend only)')
    parser.add_argument('--pool', help='Ceph pool, if not the default (one '
                                       'backend only)')
    parser.add_argument('--ceph-conf', default='/etc/ceph/ceph.conf')
    parser.add_argument('--rbd-user', default='cinder')
    parser.add_argument('--secret-uuid', default='',
                        help='libvirt secret of the Ceph user')
    parser.add_argument('--state-dir',
                        help='async_migration_state_dir of the target')
    parser.add_argument('--volume-manager', default=settings.VOLUME_MANAGER)
    return parser


def _backend_settings(args):
    roles = args.backend or [b.role for b in settings.DEVSTACK_BACKENDS]
    if (args.name or args.pool) and len(roles) != 1:
        raise ValueError('--name and --pool need exactly one --backend')
    result = settings.manager_options(args.volume_manager)
    for role in roles:
        result += settings.backend_options(
            settings.backend(role), args.ceph_conf, args.rbd_user,
            args.secret_uuid, pool=args.pool, name=args.name,
            state_dir=args.state_dir)
    return result


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        result = (settings.api_options() if args.api
                  else _backend_settings(args))
    except ValueError as exc:
        sys.stderr.write('cinder-asyncmig-config: %s\n' % exc)
        return 1
    if args.format == 'ini':
        sys.stdout.write(settings.render_ini(result))
    else:
        sys.stdout.write(settings.iniset_lines(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
