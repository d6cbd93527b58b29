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

"""Run the benchmarks of bench/ by name, one after the other, per release.

Each bench runs once per Ceph release: on the host's release as it is,
and in the Debian root of every other release (built first if needed).
``releases`` and ``io-during-copy`` visit the releases themselves and run
once, given them all; ``failover`` runs once, on the host's release.

Usage: ``python bench/suite.py [--release R ...] [NAME...]``; no name runs
every bench, and no release the host's and Tentacle.
"""

import argparse
import os
import signal
import subprocess
import sys

from cinder_asyncmig.sandbox import roots

BENCHES = {
    'anchors': 'run.py',
    'cinder-migrate': 'cinder_migrate.py',
    'sources': 'sources.py',
    'releases': 'releases.py',
    'scale': 'scale.py',
    'io-during-copy': 'io_during_copy.py',
    'failover': 'failover.py',
}
# benches that take every release with --release and run once
VISIT_RELEASES = ('releases', 'io-during-copy')
# benches of the host's release only, run once
HOST_ONLY = ('failover',)
DEFAULT_RELEASES = (roots.current(), 'tentacle')


def _call(argv, env=None, cwd=None):
    """Run a bench and wait; a SIGTERM is passed on, for it to clean up."""
    child = subprocess.Popen(argv, env=env, cwd=cwd)
    previous = signal.signal(signal.SIGTERM,
                             lambda signum, _frame: child.send_signal(signum))
    try:
        return child.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(name, releases, chosen):
    """Run bench ``name`` on ``releases``; return the failed runs.

    :param chosen: whether the releases were asked for; if not, a bench
                   that visits releases itself visits its own default.
    """
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        BENCHES[name])
    if name in HOST_ONLY:
        print('== bench %s (%s)' % (name, roots.current()), flush=True)
        return [] if _call([sys.executable, path]) == 0 else [name]
    if name in VISIT_RELEASES:
        argv = [sys.executable, path]
        for release in releases if chosen else ():
            argv += ['--release', release]
        print('== bench %s' % name, flush=True)
        return [] if _call(argv) == 0 else [name]
    failed = []
    for release in releases:
        print('== bench %s (%s)' % (name, release), flush=True)
        if roots.needs_root(release):
            roots.build(release)
            python = os.path.join(roots.VENV, 'bin', 'python')
        else:
            python = sys.executable
        argv, env = roots.command(release, [python, path], cwd=os.getcwd())
        # in a root, the command changes directory itself
        if _call(argv, env=env, cwd=os.getcwd() if env is None else None):
            failed.append('%s (%s)' % (name, release))
    return failed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('names', nargs='*', metavar='NAME',
                        help='one of: %s' % ', '.join(BENCHES))
    parser.add_argument('--release', action='append',
                        choices=list(roots.RELEASES),
                        help='Ceph release to run on; repeat for more '
                             '(default: %s)' % ', '.join(DEFAULT_RELEASES))
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHES]
    if unknown:
        parser.error('unknown bench %s; choose from %s' % (
            ', '.join(unknown), ', '.join(BENCHES)))
    releases = args.release or list(DEFAULT_RELEASES)
    failed = []
    for name in args.names or list(BENCHES):
        failed += run(name, releases, bool(args.release))
    if failed:
        print('failed: %s' % ', '.join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
