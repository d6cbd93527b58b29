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

"""cinder-asyncmig-sandbox: real Cinder services on loopback.

    cinder-asyncmig-sandbox up [--dir DIR] [--memstore-gib N | --disk-gib N]
                               [--ceph-release R] [--cluster-release R]
                               [--xcluster-memstore-gib N]
                               [--volume-manager CLASS]
    cinder-asyncmig-sandbox env --dir DIR [--member]
    cinder-asyncmig-sandbox status --dir DIR
    cinder-asyncmig-sandbox down --dir DIR
    cinder-asyncmig-sandbox down --under DIR   (every sandbox below DIR)
    cinder-asyncmig-sandbox demo [--dir DIR] [--size-gib N] [--keep]
    cinder-asyncmig-sandbox tempest [--dir DIR] [--volume-manager CLASS]
                                    [--regex R] [--concurrency N] [--keep]

``up`` prints the sandbox directory on stdout (``. DIR/openrc`` then points
the ``cinder`` client and ``rbd`` at it) and a summary on stderr.
``--ceph-release`` runs ``up`` or ``demo`` in that release's root (see
``cinder-asyncmig-roots``): Ceph and the Cinder services then use its
librbd; ``--cluster-release`` picks the Ceph daemons' release alone.
``tempest`` brings a sandbox up, runs tempest's volume API tests against
it (:mod:`cinder_asyncmig.sandbox.tempest`) and takes it down; it exits
with tempest's status.
"""

import argparse
import json
import logging
import os
import shlex
import sys

from oslo_utils import units

from cinder_asyncmig.sandbox import ceph
from cinder_asyncmig.sandbox import cloud
from cinder_asyncmig.sandbox import demo as sandbox_demo
from cinder_asyncmig.sandbox import process
from cinder_asyncmig.sandbox import roots
from cinder_asyncmig.sandbox import tempest
from cinder_asyncmig import settings


def _parser():
    parser = argparse.ArgumentParser(prog='cinder-asyncmig-sandbox',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('-v', '--verbose', action='store_true',
                        help='log the start-up steps')
    sub = parser.add_subparsers(dest='command', required=True)

    up = sub.add_parser('up', help='create and start a sandbox')
    up.add_argument('--dir', help='directory for everything of the '
                                  'sandbox; must be empty or absent '
                                  '(default: a new temporary directory)')
    up.add_argument('--memstore-gib', type=float,
                    default=cloud.DEFAULT_MEMSTORE_BYTES / units.Gi,
                    help='RAM the Ceph OSD may use for data (GiB)')
    up.add_argument('--disk-gib', type=float,
                    help='keep the first Ceph cluster\'s data on disk '
                         'instead: bluestore in a sparse file of this size '
                         '(GiB), for volumes larger than the RAM')
    up.add_argument('--xcluster-memstore-gib', type=float,
                    default=cloud.DEFAULT_XCLUSTER_MEMSTORE_BYTES / units.Gi,
                    help='the same for the second Ceph cluster (GiB)')
    up.add_argument('--volume-manager',
                    help='[DEFAULT] volume_manager of the volume services '
                         '(default: %s, or Cinder\'s stock manager with a '
                         'warning when it cannot be imported)' %
                         settings.VOLUME_MANAGER)
    up.add_argument('--timeout', type=float, default=cloud.DEFAULT_TIMEOUT,
                    help='seconds each start-up step may take')
    up.add_argument('--cluster-release', choices=list(roots.RELEASES),
                    help='Ceph release of the clusters\' daemons (default: '
                         'the one of the Cinder services)')
    up.add_argument('--target-cluster', action='store_true',
                    help='run the target backend as a Cinder cluster of '
                         'two volume services, coordinated through etcd')

    env = sub.add_parser('env', help='print the openrc exports')
    env.add_argument('--dir', required=True)
    env.add_argument('--member', action='store_true',
                     help='for the non-admin user')

    status = sub.add_parser('status', help='print pids, ports and the '
                                           'service list as JSON')
    status.add_argument('--dir', required=True)

    down = sub.add_parser('down', help='stop a sandbox and remove its '
                                       'directory')
    where = down.add_mutually_exclusive_group(required=True)
    where.add_argument('--dir', help='the sandbox directory')
    where.add_argument('--under',
                       help='stop every sandbox whose directory is right '
                            'below this one (left over by killed tests)')

    demo = sub.add_parser('demo', help='bring a sandbox up and run one '
                                       'async migration through it')
    demo.add_argument('--dir', help='sandbox directory (default: a new '
                                    'temporary one)')
    demo.add_argument('--size-gib', type=int, default=2,
                      help='size of the migrated volume')
    demo.add_argument('--keep', action='store_true',
                      help='leave the sandbox running afterwards')
    peer = sub.add_parser('tempest', help='bring a sandbox up and run '
                                          'tempest\'s volume API tests')
    peer.add_argument('--dir', help='sandbox directory (default: a new '
                                    'temporary one)')
    peer.add_argument('--volume-manager', default=settings.VOLUME_MANAGER,
                      help='[DEFAULT] volume_manager of the volume services; '
                           '"stock" for Cinder\'s own (%s), the baseline' %
                           settings.STOCK_VOLUME_MANAGER)
    peer.add_argument('--regex', default=tempest.DEFAULT_REGEX,
                      help='the tests to run (default: %(default)s)')
    peer.add_argument('--concurrency', type=int, default=4,
                      help='test processes at once (tempest\'s tests wait '
                           'on Cinder most of the time)')
    peer.add_argument('--keep', action='store_true',
                      help='leave the sandbox running afterwards')
    for command in (up, demo):
        command.add_argument(
            '--ceph-release', choices=list(roots.RELEASES),
            help="run Ceph and the Cinder services of this release's root "
                 "(default: the host's %s)" % roots.HOST)

    return parser


def _exports(env):
    return ''.join('export %s=%s\n' % (k, shlex.quote(v))
                   for k, v in sorted(env.items()))


def _up(args):
    sandbox = cloud.Sandbox.up(
        args.dir, memstore_bytes=int(args.memstore_gib * units.Gi),
        volume_manager=args.volume_manager, timeout=args.timeout,
        xcluster_memstore_bytes=int(args.xcluster_memstore_gib * units.Gi),
        cluster_release=args.cluster_release,
        disk_bytes=int(args.disk_gib * units.Gi) if args.disk_gib else None,
        target_cluster=args.target_cluster)
    for warning in sandbox.warnings:
        sys.stderr.write('WARNING: %s\n' % warning)
    timings = sandbox.state['timings']
    sys.stderr.write(
        'sandbox up in %.1f s at %s (%s)\n'
        'cinder-api on %s, volume manager %s\n'
        'use it with: . %s\n' % (
            timings['total'], sandbox.directory,
            ', '.join('%s %.1f s' % item for item in sorted(timings.items())
                      if item[0] != 'total'),
            sandbox.api_url, sandbox.deployment.volume_manager,
            sandbox.openrc))
    sys.stdout.write('%s\n' % sandbox.directory)


def _tempest(args):
    manager = args.volume_manager
    if manager == 'stock':
        manager = settings.STOCK_VOLUME_MANAGER
    sandbox = cloud.Sandbox.up(args.dir, volume_manager=manager)
    sys.stderr.write('tempest against the sandbox in %s, volume manager '
                     '%s\n' % (sandbox.directory,
                               sandbox.deployment.volume_manager))
    try:
        return tempest.run(sandbox, regex=args.regex,
                           concurrency=args.concurrency)
    finally:
        if not args.keep:
            sandbox.down()


def _status(args):
    sandbox = cloud.Sandbox.load(args.dir)
    state = sandbox.state
    report = {'directory': sandbox.directory, 'ports': state['ports'],
              'api': sandbox.api_url, 'services': {}}
    for name in cloud.SERVICES:
        if name in state['services']:
            service = sandbox.service(name)
            report['services'][name] = {'pid': service.pid,
                                        'running': service.running(),
                                        'processes': service.processes(),
                                        'log': service.log}
    report['ceph'] = {name: {'directory': cluster.directory,
                             'fsid': cluster.fsid,
                             'conf': cluster.conf_path,
                             'pools': cluster.pools,
                             'pids': cluster.daemon_pids()}
                      for name, cluster in sandbox.clusters().items()}
    try:
        report['service_list'] = [
            {k: e[k] for k in ('binary', 'host', 'status', 'state',
                               'updated_at')}
            for e in sandbox.service_list()]
    except (cloud.SandboxError, OSError) as exc:
        report['service_list'] = 'unavailable: %s' % exc
    sys.stdout.write(json.dumps(report, indent=2) + '\n')


def _down(args):
    if args.dir:
        cloud.Sandbox.load(args.dir).down()
        return
    for sandbox in cloud.Sandbox.find(args.under):
        sys.stderr.write('stopping the sandbox in %s\n' % sandbox.directory)
        sandbox.down()


def main(argv=None):
    args = _parser().parse_args(argv)
    release = getattr(args, 'ceph_release', None)
    if release and roots.needs_root(release):
        if args.dir:
            # the root sees the directory only if it exists here
            os.makedirs(args.dir, exist_ok=True)
        try:
            return roots.run_module(release, __spec__.name,
                                    sys.argv[1:] if argv is None else argv,
                                    binds=[args.dir])
        except roots.RootError as exc:
            sys.stderr.write('cinder-asyncmig-sandbox %s: %s\n' % (
                args.command, exc))
            return 1
    logging.basicConfig(level=logging.INFO if args.verbose
                        else logging.ERROR,
                        format='%(asctime)s %(name)s: %(message)s')
    commands = {'up': _up, 'status': _status, 'down': _down,
                'demo': lambda a: sandbox_demo.run(a.dir, a.size_gib,
                                                   a.keep),
                'tempest': _tempest,
                'env': lambda a: sys.stdout.write(_exports(
                    cloud.Sandbox.load(a.dir).env(member=a.member)))}
    try:
        if commands[args.command](args):
            return 1
    except (cloud.SandboxError, process.DaemonError, ceph.CephClusterError,
            ValueError) as exc:
        sys.stderr.write('cinder-asyncmig-sandbox %s: %s\n' %
                         (args.command, exc))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
