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

"""Run the benchmarks of bench/ by name, one after the other.

Usage: ``python bench/suite.py [NAME...]``; no name runs every bench.
"""

import argparse
import os
import subprocess
import sys

BENCHES = {
    'anchors': 'run.py',
    'cinder-migrate': 'cinder_migrate.py',
    'sources': 'sources.py',
    'releases': 'releases.py',
    'scale': 'scale.py',
    'io-during-copy': 'io_during_copy.py',
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('names', nargs='*', metavar='NAME',
                        help='one of: %s' % ', '.join(BENCHES))
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHES]
    if unknown:
        parser.error('unknown bench %s; choose from %s' % (
            ', '.join(unknown), ', '.join(BENCHES)))
    here = os.path.dirname(os.path.abspath(__file__))
    failed = []
    for name in args.names or list(BENCHES):
        print('== bench %s' % name, flush=True)
        code = subprocess.call(
            [sys.executable, os.path.join(here, BENCHES[name])])
        if code:
            failed.append(name)
    if failed:
        print('failed: %s' % ', '.join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
