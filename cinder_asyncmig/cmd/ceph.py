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

"""cinder-asyncmig-ceph: start and stop throwaway one-node Ceph clusters.

    cinder-asyncmig-ceph up --dir DIR [--memstore-gib N] [--pool P ...]
                            [--ceph-release R] [--cluster-release R]
    cinder-asyncmig-ceph env --dir DIR [--admin]
    cinder-asyncmig-ceph down --dir DIR
    cinder-asyncmig-ceph down --under DIR   (every cluster below DIR)

``up`` and ``env`` print shell exports (``CEPH_CONF``, ``CEPH_ARGS``) so
that ``eval "$(cinder-asyncmig-ceph env --dir DIR)"`` points ``rbd`` and
``ceph`` at the cluster as its limited client.

``--ceph-release`` runs the command in that release's root (see
``cinder-asyncmig-roots``), daemons and clients alike; ``--cluster-release``
picks the daemons' release alone.
"""

import argparse
import os
import shlex
import sys
import time

from oslo_utils import units

from cinder_asyncmig.sandbox import ceph
from cinder_asyncmig.sandbox import roots


def _exports(cluster, admin):
    return ''.join('export %s=%s\n' % (k, shlex.quote(v))
                   for k, v in sorted(cluster.env(admin=admin).items()))


def main(argv=None):
    parser = argparse.ArgumentParser(prog='cinder-asyncmig-ceph',
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)
    up = sub.add_parser('up', help='create and start a cluster')
    up.add_argument('--dir', required=True,
                    help='directory for everything of the cluster; must '
                         'be empty or absent')
    up.add_argument('--memstore-gib', type=float, default=4,
                    help='RAM the OSD may use for data (GiB)')
    up.add_argument('--disk-gib', type=float,
                    help='keep the data on disk instead: bluestore in a '
                         'sparse file of this size (GiB) in --dir')
    up.add_argument('--pool', action='append', default=[],
                    help='RBD pool to create and open to the client')
    up.add_argument('--client', default=ceph.DEFAULT_CLIENT,
                    help='name of the limited client key')
    up.add_argument('--mgr', action='store_true', help='start a ceph-mgr')
    up.add_argument('--cluster-release', choices=list(roots.RELEASES),
                    help='Ceph release of the daemons (default: the one '
                         'of the clients)')
    env = sub.add_parser('env', help='print exports for rbd and ceph')
    env.add_argument('--dir', required=True)
    env.add_argument('--admin', action='store_true',
                     help='use client.admin instead of the limited client')
    for command in (up, env):
        command.add_argument('--ceph-release', choices=list(roots.RELEASES),
                             help="run in the root of this Ceph release "
                                  "(default: the host's %s)" % roots.HOST)
    down = sub.add_parser('down', help='stop a cluster and remove its '
                                       'directory')
    where = down.add_mutually_exclusive_group(required=True)
    where.add_argument('--dir', help='the cluster directory')
    where.add_argument('--under',
                       help='stop every cluster whose directory is right '
                            'below this one (left over by killed tests)')
    args = parser.parse_args(argv)
    release = getattr(args, 'ceph_release', None)
    if release and roots.needs_root(release):
        # the root sees the cluster directory only if it exists here
        os.makedirs(args.dir, exist_ok=True)
        try:
            return roots.run_module(
                release, __spec__.name,
                sys.argv[1:] if argv is None else argv, binds=[args.dir])
        except roots.RootError as exc:
            sys.stderr.write('cinder-asyncmig-ceph %s: %s\n' % (
                args.command, exc))
            return 1

    try:
        if args.command == 'up':
            started = time.monotonic()
            cluster = ceph.CephCluster.up(
                args.dir, memstore_bytes=int(args.memstore_gib * units.Gi),
                pools=args.pool, client=args.client, with_mgr=args.mgr,
                release=args.cluster_release,
                disk_bytes=int(args.disk_gib * units.Gi) if args.disk_gib
                else None)
            sys.stderr.write('Ceph %s (%s) up in %.1f s at %s (mon port %d)'
                             '\n' % (cluster.fsid, cluster.release,
                                     time.monotonic() - started,
                                     cluster.directory, cluster.mon_port))
            sys.stdout.write(_exports(cluster, admin=False))
        elif args.command == 'env':
            sys.stdout.write(_exports(ceph.CephCluster.load(args.dir),
                                      admin=args.admin))
        elif args.dir:
            ceph.CephCluster.load(args.dir).down()
        else:
            for cluster in ceph.CephCluster.find(args.under):
                sys.stderr.write('stopping the cluster in %s\n' %
                                 cluster.directory)
                cluster.down()
    except ceph.CephClusterError as exc:
        sys.stderr.write('cinder-asyncmig-ceph %s: %s\n' % (args.command,
                                                            exc))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
