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

"""A throwaway one-node Ceph cluster for tests, benchmarks and the sandbox.

One monitor, one OSD (memstore, or bluestore in a file for data larger
than the RAM) and optionally a manager, bound to loopback
on ports picked at start-up, with cephx on. Everything lives in one
directory: configuration, keyrings, daemon data, logs, sockets and
``cluster.json``, the record :meth:`CephCluster.load` reads back so that
another process (the ``cinder-asyncmig-ceph down`` command) can tear the
cluster down. Several clusters can run at once.

Clients get a key limited the way a Cinder deployment limits its RBD user:
``mon 'profile rbd'`` and ``osd 'profile rbd pool=...'`` for the pools the
cluster was asked to create.

The daemons run the Ceph release asked for (:mod:`release roots
<cinder_asyncmig.sandbox.roots>`), by default the one of this process or
``$ASYNCMIG_CEPH_CLUSTER_RELEASE``: a Reef client can drive a Tentacle
cluster, as devstack deploys them.
"""

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid

from oslo_log import log as logging
from oslo_utils import units

from cinder_asyncmig import children
from cinder_asyncmig.sandbox import netns
from cinder_asyncmig.sandbox import process
from cinder_asyncmig.sandbox import roots

LOG = logging.getLogger(__name__)

STATE_FILE = 'cluster.json'
DEFAULT_MEMSTORE_BYTES = 4 * units.Gi
DEFAULT_CLIENT = 'cinder'
# the release of the clusters' daemons when none is asked for
CLUSTER_RELEASE_ENV = 'ASYNCMIG_CEPH_CLUSTER_RELEASE'
_CMD_TIMEOUT = 60
# bytes per read when an image is checksummed
_READ_CHUNK = 16 * units.Mi

_CONF_TEMPLATE = """\
[global]
fsid = %(fsid)s
mon host = [v2:%(address)s:%(mon_port)d]
public addr = %(address)s
cluster addr = %(address)s
ms bind msgr1 = false
ms bind msgr2 = true
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = %(dir)s/run
admin socket = %(dir)s/run/$cluster-$name.$pid.asok
log file = %(dir)s/log/$name.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
# A PG's read lease is osd_heartbeat_grace x 0.8 (16 s). A lone OSD whose
# op threads stall longer than that (a host short of CPU for a while) does
# not renew it on 16.2, and keeps its ops "waiting for readable" until it
# is marked down. No peer watches its heartbeats here: a longer grace only
# lengthens the lease, to 96 s
osd heartbeat grace = 120

[mon]
mon data = %(dir)s/$name
keyring = %(dir)s/keyring

[osd]
osd data = %(dir)s/$name
keyring = %(dir)s/keyring
%(objectstore)s
osd max object name len = 256
osd max object namespace len = 64

[mgr]
mgr data = %(dir)s/$name
keyring = %(dir)s/keyring

[client]
log to file = false
admin socket =

[client.admin]
keyring = %(dir)s/keyring
"""

_MEMSTORE = """\
osd objectstore = memstore
memstore device bytes = %d"""

# a sparse file on disk; caches small, as several clusters share the RAM
_BLUESTORE = """\
osd objectstore = bluestore
bluestore block path = %(dir)s/$name.block
bluestore block create = true
bluestore block size = %(bytes)d
bluestore block db create = false
bluestore block wal create = false
bluestore fsck on mkfs = false
bluestore cache autotune = false
bluestore cache size = 268435456
osd memory target = 939524096"""

_CLIENT_SECTION = """
[client.%(name)s]
keyring = %(keyring)s
"""


def image_sha256(ioctx, name, length=None):
    """sha256 of an image's bytes as a reader (a hypervisor) sees them.

    :param length: bytes to read from the start; the whole image if None.
    """
    import rbd
    digest = hashlib.sha256()
    with rbd.Image(ioctx, name, read_only=True) as image:
        size = image.size() if length is None else length
        for offset in range(0, size, _READ_CHUNK):
            digest.update(image.read(offset, min(_READ_CHUNK, size - offset)))
    return digest.hexdigest()


class CephClusterError(Exception):
    """The throwaway cluster could not be started, used or stopped."""


def default_release():
    """The release of a new cluster's daemons when none is asked for."""
    return os.environ.get(CLUSTER_RELEASE_ENV) or roots.current()


def _run(args, timeout=_CMD_TIMEOUT, release=None, binds=()):
    argv, env = roots.command(release or roots.current(), args, binds=binds)
    try:
        result = subprocess.run(argv, capture_output=True, text=True,
                                timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired as exc:
        raise CephClusterError('%s timed out after %ss' % (args[0], timeout)
                               ) from exc
    if result.returncode != 0:
        raise CephClusterError('%s failed (exit %d): %s' % (
            ' '.join(args[:3]), result.returncode,
            (result.stderr or result.stdout).strip()[-2000:]))
    return result.stdout


class CephCluster(process.Recorded):
    """A one-node Ceph cluster living in ``directory``.

    Use :meth:`up` to create and start one, :meth:`load` to attach to one
    another process started, and :meth:`down` to stop it and remove its
    directory.
    """

    STATE_FILE = STATE_FILE
    ERROR = CephClusterError
    KIND = 'cluster'

    def __init__(self, directory, state):
        self.directory = os.path.abspath(directory)
        self._state = state
        # daemons this process started, to reap them when they stop
        self._children = {}

    # -- paths and identities -------------------------------------------

    @property
    def fsid(self):
        return self._state['fsid']

    @property
    def conf_path(self):
        return os.path.join(self.directory, 'ceph.conf')

    @property
    def admin_keyring(self):
        return os.path.join(self.directory, 'keyring')

    @property
    def mon_port(self):
        return self._state['mon_port']

    @property
    def address(self):
        return self._state.get('address', '127.0.0.1')

    @property
    def client(self):
        """The limited client name (without ``client.``)."""
        return self._state['client']

    @property
    def release(self):
        """The Ceph release the daemons run."""
        return self._state.get('release') or roots.HOST

    @property
    def aes_keys(self):
        """Whether the keys are of the AES type older clients read.

        Ceph 20.2.4 makes AES256K keys and allows nothing else; Reef's
        clients cannot even parse them. A cluster that newer release runs
        for older clients (devstack's mix) allows AES too and gives every
        entity an AES key, as an operator of such a cloud must.
        """
        return self._state.get('aes_keys', False)

    @property
    def pools(self):
        return list(self._state['pools'])

    def client_keyring(self, name=None):
        return os.path.join(self.directory,
                            'ceph.client.%s.keyring' % (name or self.client))

    def env(self, admin=False):
        """Environment for ``rbd``/``ceph``/``qemu-img`` on this cluster.

        :param admin: use client.admin instead of the limited client.
        :returns: dict with ``CEPH_CONF`` and ``CEPH_ARGS``.
        """
        name = 'admin' if admin else self.client
        return {'CEPH_CONF': self.conf_path,
                'CEPH_ARGS': '--id %s' % name}

    def connect(self, admin=False, timeout=30):
        """Return a connected ``rados.Rados`` handle (caller shuts it down).

        :param admin: connect as client.admin instead of the limited client.
        """
        import rados  # Debian's binding, not importable everywhere

        client = rados.Rados(conffile=self.conf_path,
                             rados_id='admin' if admin else self.client)
        client.connect(timeout=timeout)
        return client

    # -- lifecycle -------------------------------------------------------

    @classmethod
    def up(cls, directory=None, memstore_bytes=DEFAULT_MEMSTORE_BYTES,
           pools=(), client=DEFAULT_CLIENT, with_mgr=False, timeout=60,
           release=None, disk_bytes=None, address='127.0.0.1',
           netns=None):
        """Create and start a cluster.

        :param directory: where everything lives; must be empty or absent.
                          A temporary directory is made when None.
        :param memstore_bytes: RAM the OSD may use for data.
        :param pools: RBD pools to create and open to ``client``.
        :param client: name of the limited client key.
        :param with_mgr: also start a ceph-mgr.
        :param timeout: seconds to wait for the OSD to come up.
        :param release: the Ceph release of the daemons
                        (:func:`default_release` when None).
        :param disk_bytes: when set, the OSD keeps its data on disk
                           (bluestore in a sparse file of this size in
                           ``directory``) instead of ``memstore_bytes`` of
                           RAM: for data larger than the RAM.
        :param address: the daemons' address.
        :param netns: the network namespace (``ip netns``) the daemons
                      run in, which has ``address``.
        :returns: the running :class:`CephCluster`.
        :raises CephClusterError: it did not start (nothing is left
                                  running); or the release's root is
                                  not built.
        """
        release = release or default_release()
        try:
            roots.command(release, ['true'])
        except roots.RootError as exc:
            raise CephClusterError(str(exc)) from exc
        if directory is None:
            directory = tempfile.mkdtemp(prefix='asyncmig-ceph-')
        directory = os.path.abspath(directory)
        if os.path.isdir(directory) and os.listdir(directory):
            raise CephClusterError('%s is not empty; pick another directory '
                                   'or run down on it first' % directory)
        for sub in ('run', 'log', 'mon.a', 'osd.0', 'mgr.x'):
            os.makedirs(os.path.join(directory, sub), exist_ok=True)
        state = {'fsid': str(uuid.uuid4()),
                 'mon_port': process.free_ports(1)[0],
                 'memstore_bytes': int(memstore_bytes), 'client': client,
                 'disk_bytes': int(disk_bytes or 0),
                 'address': address, 'netns': netns,
                 'pools': [], 'with_mgr': bool(with_mgr),
                 'release': roots.release(release).name,
                 'aes_keys': (roots.newer(release, roots.AES_ONLY_CLIENTS) and
                              not roots.newer(roots.current(),
                                              roots.AES_ONLY_CLIENTS)),
                 'daemons': {}}
        cluster = cls(directory, state)
        started = time.monotonic()
        try:
            cluster._write_conf()
            cluster._save()
            cluster._make_keys()
            cluster._start_mon()
            cluster._start_osd(timeout)
            if with_mgr:
                cluster._start_mgr()
            cluster._make_client()
            for pool in pools:
                cluster.create_pool(pool)
        except BaseException:
            cluster.down()
            raise
        LOG.info('Ceph %(release)s cluster %(fsid)s up in %(dir)s after '
                 '%(secs).1fs',
                 {'release': release, 'fsid': cluster.fsid, 'dir': directory,
                  'secs': time.monotonic() - started})
        return cluster

    def down(self):
        """Stop every daemon and remove the cluster's directory.

        Copy workers and exporters of this package left running with the
        cluster's configuration (their volume service was killed) are
        stopped first.
        """
        left = children.stop_left_under(self.directory)
        if left:
            raise CephClusterError('clients of the cluster did not stop: '
                                   'pids %s' % left)
        # memstore writes all its data to disk on a clean stop: a throwaway
        # cluster has nothing to keep, so kill at once.
        for name, pid in self._state.get('daemons', {}).items():
            child = (self._children.get(pid) or
                     children.Child.adopt(pid, self.conf_path))
            if child is not None and not child.stop(30, term=False):
                raise CephClusterError('%s (pid %d) did not stop' %
                                       (name, pid))
        self._children.clear()
        shutil.rmtree(self.directory, ignore_errors=True)

    def daemon_pids(self, kind=None):
        """The pids of the cluster's daemons that still run.

        :param kind: only those of this kind ('mon', 'osd', 'mgr').
        """
        return [pid for pid in self._daemon_pids(kind)
                if children.alive(pid)]

    def is_running(self):
        pids = self._daemon_pids()
        return bool(pids) and all(children.alive(p) for p in pids)

    # -- pools and clients ----------------------------------------------

    def ceph(self, *args, admin=True, timeout=_CMD_TIMEOUT):
        """Run the ``ceph`` CLI against this cluster and return stdout."""
        return self._tool(['ceph', '-c', self.conf_path,
                           '--id', 'admin' if admin else self.client,
                           '--connect-timeout', '20'] + list(args),
                          timeout=timeout)

    def rbd(self, *args, admin=False, timeout=_CMD_TIMEOUT):
        """Run the ``rbd`` CLI (as the limited client by default).

        It is this process's release of ``rbd``, a client of the cluster.
        """
        try:
            return _run(['rbd', '-c', self.conf_path,
                         '--id', 'admin' if admin else self.client] +
                        list(args), timeout=timeout)
        except CephClusterError as exc:
            if not isinstance(exc.__cause__, subprocess.TimeoutExpired):
                raise
            # a full memstore OSD blocks writes: say so
            raise CephClusterError('%s; cluster health: %s' % (
                exc, self._health())) from exc

    def create_pool(self, name, pg_num=8):
        """Create an RBD pool and grant the limited client access to it."""
        self.ceph('osd', 'pool', 'create', name, str(pg_num), str(pg_num))
        self.rbd('pool', 'init', name, admin=True)
        if name not in self._state['pools']:
            self._state['pools'].append(name)
        self._save()
        self._update_client_caps()

    def delete_pool(self, name):
        """Delete a pool and remove it from the limited client's caps."""
        self.ceph('osd', 'pool', 'delete', name, name,
                  '--yes-i-really-really-mean-it')
        if name in self._state['pools']:
            self._state['pools'].remove(name)
        self._save()
        self._update_client_caps()

    def restart_osd(self, down=5.0, timeout=60):
        """Kill the OSD (SIGKILL, as a crash would) and start it again.

        Only for a cluster keeping its data on disk (``disk_bytes``): a
        memstore OSD loses its data when it stops.

        :param down: seconds it stays down.
        :raises CephClusterError: memstore, or it did not come back up.
        """
        if not self._state.get('disk_bytes'):
            raise CephClusterError('osd.0 keeps its data in memory '
                                   '(memstore) and loses it when it stops: '
                                   'start the cluster with disk_bytes')
        pid = self._state['daemons'].get('osd.0')
        child = pid and (self._children.get(pid) or
                         children.Child.adopt(pid, self.conf_path))
        if child and not child.stop(30, term=False):
            raise CephClusterError('osd.0 (pid %d) did not stop' % pid)
        time.sleep(down)
        self._start_daemon('osd', '0')
        self._wait_osd_up(timeout)

    def blocklist(self):
        """Return the client addresses currently blocklisted."""
        out = self.ceph('osd', 'blocklist', 'ls', '-f', 'json')
        # the command adds a "listed N entries" line after the JSON
        entries, _end = json.JSONDecoder().raw_decode(out.strip())
        return [entry['addr'] for entry in entries]

    # -- internals -------------------------------------------------------

    def _health(self):
        try:
            return self.ceph('health', timeout=20).strip()
        except CephClusterError as exc:
            return 'unknown (%s)' % exc

    def _tool(self, args, timeout=_CMD_TIMEOUT):
        """Run a Ceph tool of the daemons' release."""
        return _run(args, timeout=timeout, release=self.release,
                    binds=[self.directory])

    def _save(self):
        path = os.path.join(self.directory, STATE_FILE)
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(self._state, f, indent=2)
        os.replace(tmp, path)

    def _write_conf(self):
        if self._state.get('disk_bytes'):
            objectstore = _BLUESTORE % {'dir': self.directory,
                                        'bytes': self._state['disk_bytes']}
        else:
            objectstore = _MEMSTORE % self._state['memstore_bytes']
        conf = _CONF_TEMPLATE % {'fsid': self.fsid, 'dir': self.directory,
                                 'mon_port': self.mon_port,
                                 'address': self.address,
                                 'objectstore': objectstore}
        conf += _CLIENT_SECTION % {'name': self.client,
                                   'keyring': self.client_keyring()}
        with open(self.conf_path, 'w') as f:
            f.write(conf)

    def _make_keys(self):
        keyring = self.admin_keyring
        entities = [
            ('mon.', ['mon', 'allow *']),
            ('client.admin', ['mon', 'allow *', 'osd', 'allow *',
                              'mgr', 'allow *', 'mds', 'allow *']),
            ('osd.0', ['mon', 'allow profile osd', 'osd', 'allow *',
                       'mgr', 'allow profile osd']),
            ('mgr.x', ['mon', 'allow profile mgr', 'osd', 'allow *',
                       'mds', 'allow *']),
        ]
        first = True
        for name, caps in entities:
            args = ['ceph-authtool', keyring]
            if first:
                args.append('--create-keyring')
                first = False
            args += ['--gen-key', '-n', name]
            if self.aes_keys:
                args += ['--key-type', 'aes']
            for i in range(0, len(caps), 2):
                args += ['--cap', caps[i], caps[i + 1]]
            self._tool(args)
        os.chmod(keyring, 0o600)
        monmap = os.path.join(self.directory, 'monmap')
        self._tool(['monmaptool', '--create', '--fsid', self.fsid,
                    '--addv', 'a', '[v2:%s:%d]' % (self.address,
                                                   self.mon_port),
                    monmap] + (['--auth-allowed-ciphers', 'aes256k,aes']
                               if self.aes_keys else []))
        self._tool(['ceph-mon', '-c', self.conf_path, '--mkfs', '-i', 'a',
                    '--monmap', monmap, '--keyring', keyring])

    def _start_daemon(self, kind, ident):
        # in the foreground (-f) but in a session of its own: its pid is
        # known at once, even when it fails before writing a pid file,
        # and it outlives the process that started it
        log = os.path.join(self.directory, 'log', '%s.%s.out' % (kind, ident))
        argv, env = roots.command(
            self.release,
            ['ceph-%s' % kind, '-f', '-c', self.conf_path, '-i', ident],
            binds=[self.directory])
        argv = netns.argv_in(self._state.get('netns'), argv)
        # as under systemd: Debian sid's build has a relative default
        # osd_class_dir, which must resolve from /
        child = children.Child.spawn(argv, log, env=env, cwd='/')
        self._children[child.pid] = child
        self._state['daemons']['%s.%s' % (kind, ident)] = child.pid
        self._save()
        time.sleep(0.1)
        if not child.running():
            raise CephClusterError('ceph-%s.%s exited with %s: %s' % (
                kind, ident, child.returncode, self._log_tail(kind, ident)))

    def _start_mon(self):
        self._start_daemon('mon', 'a')

    def _start_osd(self, timeout):
        osd_uuid = str(uuid.uuid4())
        self.ceph('osd', 'create', osd_uuid, '0')
        self._tool(['ceph-osd', '-c', self.conf_path, '-i', '0', '--mkfs',
                    '--osd-uuid', osd_uuid])
        self._start_daemon('osd', '0')
        self._wait_osd_up(timeout)

    def _wait_osd_up(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            stat = json.loads(self.ceph('osd', 'stat', '-f', 'json'))
            if stat.get('num_up_osds') == 1 and stat.get('num_in_osds') == 1:
                return
            if time.monotonic() > deadline:
                raise CephClusterError('osd.0 not up after %ss: %s' %
                                       (timeout, self._log_tail('osd', '0')))
            time.sleep(0.2)

    def _start_mgr(self):
        self._start_daemon('mgr', 'x')

    def _client_caps(self):
        if self._state['pools']:
            osd = ', '.join('profile rbd pool=%s' % p
                            for p in self._state['pools'])
        else:
            osd = 'profile rbd pool=none'
        return ['mon', 'profile rbd', 'osd', osd]

    def _make_client(self):
        key_type = ['--key_type', 'aes'] if self.aes_keys else []
        self.ceph('auth', 'get-or-create', 'client.%s' % self.client,
                  *self._client_caps(), *key_type, '-o',
                  self.client_keyring())
        os.chmod(self.client_keyring(), 0o600)

    def _update_client_caps(self):
        self.ceph('auth', 'caps', 'client.%s' % self.client,
                  *self._client_caps())

    def _log_tail(self, kind, ident, lines=5):
        path = os.path.join(self.directory, 'log', '%s.%s.log' % (kind, ident))
        try:
            with open(path, errors='replace') as f:
                return ''.join(f.readlines()[-lines:]).strip()
        except OSError:
            return 'no log at %s' % path

    def _daemon_pids(self, kind=None):
        pids = []
        for name, pid in self._state.get('daemons', {}).items():
            if kind is not None and name.split('.')[0] != kind:
                continue
            # a pid reused by something else is not ours to kill
            if self.conf_path in children.cmdline(pid):
                pids.append(pid)
        return pids
