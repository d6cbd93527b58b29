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

"""cinder-asyncmig-roots: Debian roots with other Ceph releases.

    cinder-asyncmig-roots list
    cinder-asyncmig-roots build RELEASE [RELEASE ...] [--force]
    cinder-asyncmig-roots run RELEASE [--bind DIR ...] [--cwd DIR] -- CMD ...
    cinder-asyncmig-roots remove RELEASE

``run`` starts CMD inside the root, with the release's Ceph tools and the
root's virtualenv (Cinder from PyPI, this checkout's cinder_asyncmig) first
on PATH: ``cinder-asyncmig-roots run tentacle -- rbd --version``.
Roots are cached in ``$ASYNCMIG_ROOTS_DIR``
(default /var/cache/cinder-asyncmig/roots) and reused.
"""

import argparse
import concurrent.futures
import os
import shutil
import sys
import time

from cinder_asyncmig.sandbox import roots


def _build(names, force):
    def one(name):
        if not force and roots.is_built(name):
            return name, 'cached', 0
        started = time.monotonic()
        os.makedirs(roots.roots_dir(), exist_ok=True)
        log = os.path.join(roots.roots_dir(), '%s.build.log' % name)
        sys.stderr.write('building the %s root (log: %s)\n' % (name, log))
        with open(log, 'w') as out:
            roots.build(name, force=force, log=out)
        return name, 'built', time.monotonic() - started

    failed = 0
    # debootstrap and apt wait on the network most of the time
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        for future in [pool.submit(one, n) for n in names]:
            try:
                name, what, secs = future.result()
            except roots.RootError as exc:
                sys.stderr.write('cinder-asyncmig-roots build: %s\n' % exc)
                failed += 1
                continue
            sys.stderr.write('%s root %s%s: %s\n' % (
                name, what, ' in %.0f s' % secs if secs else '',
                roots.root_path(name)))
    return 1 if failed else 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog='cinder-asyncmig-roots',
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)
    sub.add_parser('list', help='the releases and their roots')
    build = sub.add_parser('build', help='build (or reuse) release roots')
    build.add_argument('releases', nargs='+', metavar='RELEASE')
    build.add_argument('--force', action='store_true',
                       help='build again even if cached')
    run = sub.add_parser('run', help='run a command inside a root')
    run.add_argument('release', metavar='RELEASE')
    run.add_argument('--bind', action='append', default=[],
                     help='a directory the command needs (at its own path)')
    run.add_argument('--cwd', help='working directory (default: the '
                                   'current one)')
    run.add_argument('argv', nargs=argparse.REMAINDER, metavar='CMD')
    remove = sub.add_parser('remove', help='delete a cached root')
    remove.add_argument('release', metavar='RELEASE')
    args = parser.parse_args(argv)

    try:
        if args.command == 'list':
            for rel in roots.RELEASES.values():
                if rel.name == roots.HOST:
                    where = 'the host'
                elif roots.is_built(rel.name):
                    where = roots.root_path(rel.name)
                else:
                    where = 'not built'
                print('%-9s %-5s %-9s %s' % (rel.name, rel.version,
                                             rel.suite, where))
            return 0
        if args.command == 'build':
            for name in args.releases:
                roots.release(name)
            return _build([n for n in args.releases if n != roots.HOST],
                          args.force)
        if args.command == 'remove':
            shutil.rmtree(roots.root_path(args.release))
            return 0
        cmd = args.argv[1:] if args.argv[:1] == ['--'] else args.argv
        if not cmd:
            parser.error('run needs a command after --')
        result = roots.run(args.release, cmd, binds=args.bind,
                           cwd=args.cwd or os.getcwd(), check=False)
        return result.returncode
    except roots.RootError as exc:
        sys.stderr.write('cinder-asyncmig-roots %s: %s\n' % (args.command,
                                                             exc))
        return 1


if __name__ == '__main__':
    sys.exit(main())
