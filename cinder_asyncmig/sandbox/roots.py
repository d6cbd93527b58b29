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

"""Debian roots with other Ceph releases, for tests and the sandbox.

The host (Debian bookworm) has Ceph 16.2 *pacific*. Each other release
lives in a root of its own, built with debootstrap from the Debian suite
that ships it and cached under :func:`roots_dir`:

- *reef* (18.2) from trixie,
- *tentacle* (20.2) from sid.

A root holds Ceph's daemons and tools, the librados/librbd Python bindings,
the other packages of ``bindep.txt`` (MariaDB, RabbitMQ, qemu-utils, fio)
and a virtualenv with Cinder and the project's requirements from PyPI
(``/opt/cinder-asyncmig/venv``). The project's own code is not copied in:
:func:`command` binds the ``cinder_asyncmig`` package of the caller, so a
root serves every checkout.

:func:`command` turns a command line into one that runs inside a root: a
private mount namespace (``unshare --mount``) with ``/proc``, ``/dev``,
``/sys``, ``/tmp`` and the caller's directories bound at the same paths,
then ``chroot``. The mounts vanish with the last process of the namespace,
so nothing stays mounted; ``exec`` keeps one pid from ``unshare`` to the
program, so daemons are known and stopped by pid as on the host. Commands
nest: code running in one root can start programs in another (a Reef
client driving a Tentacle cluster), because the roots' directory is bound
into every root.
"""

import collections
import configparser
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import cinder_asyncmig

HOST = 'pacific'
Release = collections.namedtuple('Release', 'name version suite')
RELEASES = collections.OrderedDict((r.name, r) for r in (
    Release('pacific', '16.2', 'bookworm'),
    Release('reef', '18.2', 'trixie'),
    Release('tentacle', '20.2', 'sid'),
))

# the newest release whose clients read AES cephx keys only (20.2.4 makes
# AES256K keys)
AES_ONLY_CLIENTS = 'reef'
ROOTS_DIR_ENV = 'ASYNCMIG_ROOTS_DIR'
DEFAULT_ROOTS_DIR = '/var/cache/cinder-asyncmig/roots'
MIRROR_ENV = 'ASYNCMIG_DEBIAN_MIRROR'
DEFAULT_MIRROR = 'http://deb.debian.org/debian'
# in every root: which release it is, and how it was built
MARKER = '/etc/cinder-asyncmig-release'
VENV = '/opt/cinder-asyncmig/venv'
SRC = '/opt/cinder-asyncmig/src'
# bumped when the way a root is built changes
RECIPE_VERSION = 2
# bindep.txt entries with this profile are for the host only
HOST_PROFILE = 'host'

_PACKAGE_DIR = os.path.dirname(os.path.abspath(cinder_asyncmig.__file__))
_REPO_DIR = os.path.dirname(_PACKAGE_DIR)
_ENV_DROPPED = ('VIRTUAL_ENV', 'PYTHONHOME', 'PYTHONPATH', 'LD_LIBRARY_PATH',
                'LD_PRELOAD', 'TOX_ENV_DIR', 'TOX_ENV_NAME')
_PATH = ':'.join((os.path.join(VENV, 'bin'), '/usr/local/sbin',
                  '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'))
# mount what the root needs, bind the given directories at their own
# paths, then chroot; runs with /bin/sh of whoever calls it
_ENTER_SCRIPT = r'''
set -e
root=$1; shift
# a mount point of its own: unshare inside the root (a root entering
# another) can then make its / private
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
while [ "$1" != -- ]; do
    src=$1 dst=$2; shift 2
    mkdir -p "$root$dst"
    mount --rbind "$src" "$root$dst"
done
shift
exec chroot "$root" "$@"
'''


class RootError(Exception):
    """A release root could not be built or used."""


def release(name):
    """The :class:`Release` called ``name``.

    :raises RootError: no such release.
    """
    try:
        return RELEASES[name]
    except KeyError:
        raise RootError('unknown Ceph release %r; known: %s' % (
            name, ', '.join(RELEASES))) from None


def newer(name, other):
    """Whether release ``name`` is newer than release ``other``."""
    order = list(RELEASES)
    return order.index(release(name).name) > order.index(release(other).name)


def current():
    """The release whose Ceph this process runs with."""
    try:
        with open(MARKER) as f:
            return json.load(f)['release']
    except (OSError, ValueError, KeyError):
        return HOST


def roots_dir():
    """Where the roots are cached (``$ASYNCMIG_ROOTS_DIR``)."""
    return os.path.abspath(os.environ.get(ROOTS_DIR_ENV) or
                           DEFAULT_ROOTS_DIR)


def root_path(name):
    """The directory of the root of release ``name``."""
    return os.path.join(roots_dir(), release(name).name)


def is_built(name):
    """Whether the root of ``name`` is built and up to date."""
    try:
        with open(os.path.join(root_path(name), MARKER.lstrip('/'))) as f:
            recipe = json.load(f).get('recipe')
    except (OSError, ValueError):
        return False
    if current() != HOST:
        # the host compared the recipe before entering this root, where
        # only the package is bound, not bindep.txt and the requirements
        return bool(recipe)
    return recipe == _recipe(name)


def needs_root(name):
    """Whether programs of release ``name`` run in a root from here."""
    return release(name).name != current()


def command(name, argv, binds=(), cwd=None):
    """Return ``(argv, env)`` that run ``argv`` with release ``name``.

    Without a root to enter (``name`` is the release this process runs
    with) the command is returned as it is, with no environment change.

    :param binds: directories the program needs, bound at their own paths
                  (the caller's ``/tmp`` and checkout always are).
    :param cwd: working directory, bound too.
    :returns: ``(argv, env)``; ``env`` is None or a full environment.
    :raises RootError: the root is not built.
    """
    if not needs_root(name):
        return list(argv), None
    root = root_path(name)
    if not is_built(name):
        raise RootError('the %s root is not built in %s; run '
                        'cinder-asyncmig-roots build %s' % (name, root,
                                                            name))
    mounts = [(_PACKAGE_DIR, os.path.join(SRC, 'cinder_asyncmig'))]
    metadata = _metadata_dir()
    if metadata:
        # its entry points: OpenStackClient's commands, the policies', ...
        # under one name whatever the version, so that no mount point of
        # another version lies beside it
        mounts.append((metadata, os.path.join(
            SRC, 'cinder_asyncmig.dist-info')))
    seen = set()
    for path in ['/tmp', roots_dir(), _REPO_DIR, cwd] + list(binds):
        if not path:
            continue
        path = os.path.abspath(path)
        covered = any(path == s or path.startswith(s + '/') for s in seen)
        if covered or path == '/' or not os.path.isdir(path):
            continue
        seen.add(path)
        mounts.append((path, path))
    inner = list(argv)
    if cwd:
        inner = ['/bin/sh', '-c', 'cd "$0" && exec "$@"', cwd] + inner
    return _enter(root, mounts, inner), root_env()


def _metadata_dir():
    """The installed package's metadata directory, None if not installed.

    Beside the package on a root's ``PYTHONPATH``, it makes the package
    installed there as here, entry points included.
    """
    try:
        dist = importlib.metadata.distribution('cinder-asyncmig')
    except importlib.metadata.PackageNotFoundError:
        return None
    for path in dist.files or ():
        if path.name == 'entry_points.txt' and path.parent.name.endswith(
                ('.dist-info', '.egg-info')):
            return str(dist.locate_file(path).parent)
    return None


def _enter(root, mounts, argv):
    """The command line running ``argv`` in ``root`` with ``mounts``.

    :param mounts: ``(directory, mount point in the root)`` pairs.
    """
    args = ['unshare', '--mount', '--propagation', 'private', '--',
            '/bin/sh', '-c', _ENTER_SCRIPT, 'cinder-asyncmig-root', root]
    for src, dst in mounts:
        args += [src, dst]
    return args + ['--'] + list(argv)


def root_env(base=None):
    """The environment of a program in a root, from ``base``."""
    env = {k: v for k, v in (base or os.environ).items()
           if k not in _ENV_DROPPED}
    env['PATH'] = _PATH
    env['PYTHONPATH'] = SRC
    return env


def run(name, argv, binds=(), cwd=None, check=True, **kwargs):
    """Run ``argv`` with release ``name`` and wait for it.

    :returns: the :class:`subprocess.CompletedProcess`.
    """
    args, env = command(name, argv, binds=binds, cwd=cwd)
    # in a root, the command changes directory itself
    return subprocess.run(args, env=env, check=check,
                          cwd=cwd if env is None else None, **kwargs)


def run_module(name, module, args, binds=()):
    """Run ``python -m module args`` with release ``name``.

    What a command line tool does when asked for another release than its
    own: the same command again, inside the release's root.

    :returns: the exit status.
    """
    python = os.path.join(VENV, 'bin', 'python') if needs_root(name) else (
        sys.executable)
    return run(name, [python, '-m', module] + list(args), binds=binds,
               cwd=os.getcwd(), check=False).returncode


# -- building --------------------------------------------------------------

def root_packages(bindep_path=None):
    """The Debian packages of a root: ``bindep.txt`` less host tools."""
    names = []
    with open(bindep_path or os.path.join(_REPO_DIR, 'bindep.txt')) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            name, _sep, selector = line.partition(' ')
            if HOST_PROFILE in selector.strip('[] ').split():
                continue
            names.append(name)
    return names


def _requirement_files():
    files = [os.path.join(_REPO_DIR, name)
             for name in ('requirements.txt', 'test-requirements.txt')]
    missing = [f for f in files + [os.path.join(_REPO_DIR, 'setup.cfg')]
               if not os.path.isfile(f)]
    if missing:
        raise RootError('%s not found: build roots from a checkout of '
                        'cinder-asyncmig' % ', '.join(missing))
    return files


def sandbox_requirements(setup_cfg=None):
    """The sandbox's requirements: setup.cfg's ``[extras] sandbox``."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg or os.path.join(_REPO_DIR, 'setup.cfg'))
    return [line.strip() for line in
            parser.get('extras', 'sandbox').splitlines() if line.strip()]


def _recipe(name):
    digest = hashlib.sha256()
    digest.update(json.dumps([RECIPE_VERSION, release(name)._asdict(),
                              root_packages(),
                              sandbox_requirements()]).encode())
    for path in _requirement_files():
        with open(path, 'rb') as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _locked(name):
    os.makedirs(roots_dir(), exist_ok=True)
    with open(os.path.join(roots_dir(), '.%s.lock' % name), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _in_new_root(root, argv, binds=(), log=None):
    env = dict(root_env(), DEBIAN_FRONTEND='noninteractive', PYTHONPATH='')
    result = subprocess.run(_enter(root, [(p, p) for p in binds], argv),
                            env=env, stdout=log, stderr=subprocess.STDOUT,
                            check=False)
    if result.returncode != 0:
        raise RootError('%s failed in %s (exit %d); see %s' % (
            ' '.join(argv[:3]), root, result.returncode,
            getattr(log, 'name', 'its output')))


def build(name, force=False, log=None, mirror=None):
    """Build (or reuse) the root of release ``name``.

    :param force: build again even if the cached root is up to date.
    :param log: a file for the build's output (default: inherited).
    :param mirror: Debian mirror URL (``$ASYNCMIG_DEBIAN_MIRROR``).
    :returns: the root's directory.
    :raises RootError: the build failed; nothing half-built is kept.
    """
    rel = release(name)
    if rel.name == HOST:
        raise RootError('%s is the host\'s own Ceph; it has no root' %
                        rel.name)
    if shutil.which('debootstrap') is None:
        raise RootError('debootstrap is not installed (bindep.txt lists '
                        'it; run tools/install-system-deps.sh)')
    final = root_path(name)
    with _locked(rel.name):
        if not force and is_built(name):
            return final
        started = time.monotonic()
        work = tempfile.mkdtemp(prefix='.%s-' % rel.name, dir=roots_dir())
        root = os.path.join(work, 'root')
        try:
            _build_into(rel, root, log, mirror or os.environ.get(
                MIRROR_ENV) or DEFAULT_MIRROR)
            with open(os.path.join(root, MARKER.lstrip('/')), 'w') as f:
                json.dump({'release': rel.name, 'version': rel.version,
                           'suite': rel.suite, 'recipe': _recipe(name),
                           'built_at': time.strftime('%Y-%m-%dT%H:%M:%SZ',
                                                     time.gmtime()),
                           'build_seconds': round(
                               time.monotonic() - started)}, f)
            old = final + '.old'
            if os.path.exists(final):
                os.rename(final, old)
            os.rename(root, final)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


def _build_into(rel, root, log, mirror):
    def step(argv, binds=()):
        _in_new_root(root, argv, binds=binds, log=log)

    result = subprocess.run(
        ['debootstrap', '--variant=minbase', '--include=ca-certificates',
         rel.suite, root, mirror], stdout=log, stderr=subprocess.STDOUT,
        check=False)
    if result.returncode != 0:
        raise RootError('debootstrap %s failed (exit %d)' % (
            rel.suite, result.returncode))
    # no init system runs in a root: packages must not try to start
    # their services (ceph-mon's postinst fails otherwise)
    policy = os.path.join(root, 'usr/sbin/policy-rc.d')
    with open(policy, 'w') as f:
        f.write('#!/bin/sh\nexit 101\n')
    os.chmod(policy, 0o755)
    # the suites' Release files may be past their Valid-Until date
    with open(os.path.join(root, 'etc/apt/apt.conf.d/99cinder-asyncmig'),
              'w') as f:
        f.write('Acquire::Check-Valid-Until "false";\n'
                'APT::Install-Recommends "false";\n')
    for path in ('/etc/ssl/certs/ca-certificates.crt', '/etc/resolv.conf'):
        if os.path.exists(path):
            shutil.copyfile(path, os.path.join(root, path.lstrip('/')))
    step(['apt-get', 'update', '-q'])
    step(['apt-get', 'install', '-y', '-q'] + root_packages())
    step(['apt-get', 'clean'])
    # where a host keeps its NBD client certificate: a test's mount
    # namespace binds a directory there (cinderconf.host_mounts)
    os.makedirs(os.path.join(root, 'etc/pki/libnbd'), exist_ok=True)
    reqs = tempfile.mkdtemp(prefix='.reqs-', dir=os.path.dirname(root))
    try:
        files = []
        for path in _requirement_files():
            files += ['-r', os.path.join(reqs, os.path.basename(path))]
            shutil.copy(path, reqs)
        with open(os.path.join(reqs, 'sandbox.txt'), 'w') as f:
            f.write(''.join(r + '\n' for r in sandbox_requirements()))
        files += ['-r', os.path.join(reqs, 'sandbox.txt')]
        step(['python3', '-m', 'venv', '--system-site-packages', VENV])
        step([os.path.join(VENV, 'bin', 'pip'), 'install', '-q',
              '--no-cache-dir'] + files, binds=[reqs])
    finally:
        shutil.rmtree(reqs, ignore_errors=True)
