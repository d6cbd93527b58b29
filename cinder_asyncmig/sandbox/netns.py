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

"""Hosts on a throwaway network, for faults between them.

Each host but the first is a network namespace (``ip netns``) with one
veth link to a bridge; the first host is the namespace of the process
that makes the network, the bridge its link. Every host has its own
address in a private /24 that no interface of the machine uses. A
partition between two hosts is a pair of nftables drop rules on one of
them, made and removed with ``nft``: as a firewall or a dead switch port
would, it drops packets and resets nothing, so TCP connections hang,
and carry on once it heals.

A network is recorded under ``/run`` with the process that made it. One
whose maker died without :meth:`Network.down` (a killed test) is removed
by the next :meth:`Network.make`, partitions included.
"""

import glob
import ipaddress
import json
import logging
import os
import subprocess
import uuid

from oslo_concurrency import lockutils
import psutil

LOG = logging.getLogger(__name__)

#: the private /16 the networks' /24s are picked from
_SUPERNET = ipaddress.ip_network('10.213.0.0/16')
_TABLE = 'asyncmig_partition'
_RUN_DIR = '/run/cinder-asyncmig'
#: where each network's record is, while it is up
_RECORDS = os.path.join(_RUN_DIR, 'networks')
_RULES = """\
table inet %(table)s {
    chain input {
        type filter hook input priority 0; policy accept;
        ip saddr %(peer)s drop
    }
    chain output {
        type filter hook output priority 0; policy accept;
        ip daddr %(peer)s drop
    }
}
"""


class NetworkError(Exception):
    """A network command failed."""


def _run(argv, stdin=None):
    result = subprocess.run(argv, input=stdin, capture_output=True,
                            text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise NetworkError('%s failed (exit %d): %s' % (
            ' '.join(argv), result.returncode,
            (result.stderr or result.stdout).strip()))
    return result.stdout


def _used_networks():
    out = _run(['ip', '-4', '-o', 'addr', 'show'])
    return [ipaddress.ip_interface(line.split()[3]).network
            for line in out.splitlines()]


def _maker():
    """This process, as a record names it: pid and start time."""
    return {'pid': os.getpid(),
            'started': psutil.Process().create_time()}


def _running(maker):
    try:
        return (psutil.Process(maker['pid']).create_time() ==
                maker['started'])
    except psutil.Error:
        return False


def reap():
    """Remove the networks whose makers died without removing them.

    :returns: the tags of the networks removed.
    """
    reaped = []
    for path in glob.glob(os.path.join(_RECORDS, '*.json')):
        try:
            with open(path) as f:
                record = json.load(f)
            if _running(record['maker']):
                continue
            network = Network.from_record(record)
        except FileNotFoundError:
            continue  # reaped meanwhile
        except (OSError, ValueError, KeyError) as exc:
            LOG.warning('Skipping the network record %s: %s', path, exc)
            continue
        try:
            network.down()
        except NetworkError as exc:
            # another process reaping it at the same time
            LOG.warning('Could not remove network %s: %s', network.tag, exc)
            continue
        LOG.info('Removed network %s, left behind by process %s.',
                 network.tag, record['maker']['pid'])
        reaped.append(network.tag)
    return reaped


def argv_in(netns, argv):
    """``argv`` run in network namespace ``netns`` (here when None)."""
    if netns is None:
        return list(argv)
    return ['ip', 'netns', 'exec', netns] + list(argv)


class Network(object):
    """A bridge and the hosts on it; :meth:`make` one, :meth:`down` it.

    :param hosts: ``{name: {'netns': NAME or None, 'address': ADDR}}``.
    """

    def __init__(self, tag, bridge, hosts):
        self.tag = tag
        self.bridge = bridge
        self.hosts = hosts

    @classmethod
    def from_record(cls, record):
        """The network :meth:`as_record` describes, made earlier."""
        return cls(record['tag'], record['bridge'], record['hosts'])

    def as_record(self):
        return {'tag': self.tag, 'bridge': self.bridge, 'hosts': self.hosts}

    @classmethod
    def make(cls, names, reaped=True):
        """Make a network: ``names[0]`` here, the others in namespaces.

        Removes first the networks of makers that died (:func:`reap`).

        :param reaped: record it, so that once this process has died the
            next :meth:`make` removes it. A network meant to outlive this
            process (a sandbox's, which its ``down`` removes) is not.
        :raises NetworkError: no free /24, or a command failed (what was
                              made is removed).
        """
        os.makedirs(_RUN_DIR, mode=0o700, exist_ok=True)
        # one maker at a time: two would pick the same free /24
        with lockutils.lock('networks', lock_file_prefix='cinder-asyncmig-',
                            external=True, lock_path=_RUN_DIR):
            reap()
            return cls._make_in(names, reaped)

    @classmethod
    def _make_in(cls, names, reaped):
        used = _used_networks()
        subnet = next((net for net in _SUPERNET.subnets(new_prefix=24)
                       if not any(net.overlaps(u) for u in used)), None)
        if subnet is None:
            raise NetworkError('no /24 of %s is free' % _SUPERNET)
        tag = uuid.uuid4().hex[:6]
        addresses = list(subnet.hosts())
        hosts = {name: {'netns': None if i == 0 else 'asyncmig-%s-%s' % (
                        tag, name), 'address': str(addresses[i])}
                 for i, name in enumerate(names)}
        network = cls(tag, 'amig%s' % tag, hosts)
        if reaped:
            os.makedirs(_RECORDS, mode=0o700, exist_ok=True)
            # before anything is made: a maker killed half-way leaves it
            with open(network._record, 'w') as f:
                json.dump(dict(network.as_record(), maker=_maker()), f)
        try:
            network._make(subnet.prefixlen)
        except BaseException:
            network.down()
            raise
        return network

    def _make(self, prefix):
        _run(['ip', 'link', 'add', self.bridge, 'type', 'bridge'])
        here = self.hosts[next(iter(self.hosts))]
        _run(['ip', 'addr', 'add', '%s/%d' % (here['address'], prefix),
              'dev', self.bridge])
        _run(['ip', 'link', 'set', self.bridge, 'up'])
        for i, host in enumerate(self.hosts.values()):
            if host['netns'] is None:
                continue
            outer = 'amig%s%d' % (self.tag, i)
            _run(['ip', 'netns', 'add', host['netns']])
            _run(['ip', 'link', 'add', outer, 'type', 'veth', 'peer',
                  'name', 'eth0', 'netns', host['netns']])
            _run(['ip', 'link', 'set', outer, 'master', self.bridge, 'up'])
            inside = ['ip', '-n', host['netns']]
            _run(inside + ['addr', 'add', '%s/%d' % (host['address'],
                                                     prefix), 'dev', 'eth0'])
            _run(inside + ['link', 'set', 'eth0', 'up'])
            _run(inside + ['link', 'set', 'lo', 'up'])

    @property
    def _table(self):
        return '%s_%s' % (_TABLE, self.tag)

    @property
    def _record(self):
        return os.path.join(_RECORDS, '%s.json' % self.tag)

    def address(self, name):
        return self.hosts[name]['address']

    def argv(self, name, argv):
        """``argv`` run on host ``name``."""
        return argv_in(self.hosts[name]['netns'], argv)

    def partition(self, name, peer):
        """Drop every packet between hosts ``name`` and ``peer``."""
        self.heal(name)
        _run(self.argv(name, ['nft', '-f', '-']),
             stdin=_RULES % {'table': self._table,
                             'peer': self.address(peer)})

    def heal(self, name):
        """Remove host ``name``'s partition, if it has one."""
        try:
            _run(self.argv(name, ['nft', 'delete', 'table', 'inet',
                                  self._table]))
        except NetworkError as exc:
            if 'No such file or directory' not in str(exc):
                raise

    def down(self):
        """Remove the partitions, namespaces and links, and the record.

        Stop the processes in the namespaces first: a namespace whose
        processes still run outlives its name.
        """
        for name, host in self.hosts.items():
            if host['netns'] is None:
                self.heal(name)
            elif os.path.exists(os.path.join('/run/netns', host['netns'])):
                # its veth and its partition go with it
                _run(['ip', 'netns', 'delete', host['netns']])
        if os.path.exists(os.path.join('/sys/class/net', self.bridge)):
            _run(['ip', 'link', 'delete', self.bridge])
        try:
            os.unlink(self._record)
        except FileNotFoundError:
            pass
