#!/usr/bin/env python3
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

"""Make Debian's librados/librbd Python bindings importable in a virtualenv.

The ``rados`` and ``rbd`` modules are not on PyPI; Debian builds them for
its own python3 (python3-rados, python3-rbd). Rather than exposing all of
dist-packages to the virtualenv (``--system-site-packages``), this puts
symlinks to just those two extension modules in a directory of their own
and adds that directory to the virtualenv's path with a ``.pth`` file.

Usage: link_ceph_bindings.py [--dist-packages DIR] SITE_PACKAGES_DIR

Idempotent. Exits non-zero with a message when the bindings are missing,
were built for another Python version, or cannot be imported afterwards.
"""

import argparse
import glob
import os
import subprocess
import sys

DIST_PACKAGES = '/usr/lib/python3/dist-packages'
MODULES = ('rados', 'rbd')
# Not a valid module name, so the directory itself cannot be imported.
LINK_DIR_NAME = 'cinder_asyncmig-ceph-bindings'
PTH_NAME = 'cinder_asyncmig-ceph-bindings.pth'
CHECK_CODE = ('import rados, rbd; '
              'print("librbd %d.%d.%d" % rbd.RBD().version())')


class LinkError(Exception):
    pass


def find_venv_python(site_packages):
    """Return the interpreter of the virtualenv holding site_packages."""
    path = site_packages
    while True:
        parent = os.path.dirname(path)
        if os.path.exists(os.path.join(path, 'pyvenv.cfg')):
            python = os.path.join(path, 'bin', 'python')
            if os.access(python, os.X_OK):
                return python
        if parent == path:
            return sys.executable
        path = parent


def extension_suffixes(python):
    """Return the extension module suffixes the interpreter accepts."""
    out = subprocess.run(
        [python, '-c',
         'import importlib.machinery, sys; '
         'print("%d.%d" % sys.version_info[:2]); '
         'print("\\n".join(importlib.machinery.EXTENSION_SUFFIXES))'],
        check=True, capture_output=True, text=True).stdout.split()
    return out[0], out[1:]


def find_extension(dist_packages, module, version, suffixes):
    """Return the path of module's extension built for these suffixes."""
    candidates = sorted(glob.glob(os.path.join(dist_packages,
                                               module + '.*.so')))
    if not candidates:
        raise LinkError(
            '%s: no %s.*.so in %s. Install python3-rados and python3-rbd '
            '(bash tools/install-system-deps.sh).'
            % (module, module, dist_packages))
    for suffix in suffixes:
        path = os.path.join(dist_packages, module + suffix)
        if path in candidates:
            return path
    raise LinkError(
        '%s: %s holds %s, built for another Python than this virtualenv '
        '(Python %s, which loads *%s). Create the virtualenv with the same '
        'major.minor as the distribution python3 (Debian bookworm: 3.11).'
        % (module, dist_packages,
           ', '.join(os.path.basename(c) for c in candidates),
           version, suffixes[0]))


def replace_symlink(target, link):
    if os.path.islink(link) and os.readlink(link) == target:
        return
    tmp = link + '.tmp'
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def link_bindings(site_packages, python, dist_packages=DIST_PACKAGES):
    version, suffixes = extension_suffixes(python)
    targets = [find_extension(dist_packages, m, version, suffixes)
               for m in MODULES]

    link_dir = os.path.join(site_packages, LINK_DIR_NAME)
    os.makedirs(link_dir, exist_ok=True)
    wanted = set()
    for target in targets:
        name = os.path.basename(target)
        wanted.add(name)
        replace_symlink(target, os.path.join(link_dir, name))
    # Drop links left behind by an earlier Python version.
    for name in os.listdir(link_dir):
        if name not in wanted:
            os.unlink(os.path.join(link_dir, name))

    pth = os.path.join(site_packages, PTH_NAME)
    content = link_dir + '\n'
    try:
        with open(pth) as f:
            current = f.read()
    except FileNotFoundError:
        current = None
    if current != content:
        with open(pth, 'w') as f:
            f.write(content)
    return link_dir


def check_import(python):
    # Run from / so that nothing in the current directory shadows rados.
    proc = subprocess.run([python, '-c', CHECK_CODE], cwd='/',
                          capture_output=True, text=True)
    if proc.returncode:
        raise LinkError('import rados, rbd failed with %s:\n%s'
                        % (python, proc.stderr.strip()))
    return proc.stdout.strip()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('site_packages', metavar='SITE_PACKAGES_DIR',
                        help="the virtualenv's site-packages directory")
    parser.add_argument('--dist-packages', default=DIST_PACKAGES,
                        help='where the distribution installed rados and rbd '
                             '(default: %(default)s)')
    args = parser.parse_args(argv)

    site_packages = os.path.abspath(args.site_packages)
    if not os.path.isdir(site_packages):
        parser.error('%s is not a directory' % site_packages)
    python = find_venv_python(site_packages)
    try:
        link_dir = link_bindings(site_packages, python, args.dist_packages)
        result = check_import(python)
    except LinkError as e:
        print('link_ceph_bindings: %s' % e, file=sys.stderr)
        return 1
    print('link_ceph_bindings: rados, rbd linked in %s (%s)'
          % (link_dir, result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
