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

"""The test network's hosts and partitions, and what a killed maker left."""

import ipaddress
import os
import shutil
import subprocess
import sys

import testtools

from cinder_asyncmig.sandbox import netns

# makes a network with a partition, says its tag, then waits to be killed
_MAKER = """
import sys, time
from cinder_asyncmig.sandbox import netns
network = netns.Network.make(['here', 'there'])
network.partition('here', 'there')
print(network.tag, flush=True)
time.sleep(600)
"""


def _netns():
    return subprocess.run(['ip', 'netns', 'list'], capture_output=True,
                          text=True, check=True).stdout


def _tables():
    return subprocess.run(['nft', 'list', 'tables'], capture_output=True,
                          text=True, check=True).stdout


# reaches a host's closed port: refused is reached, silence is not
_PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 9), 2)
except ConnectionRefusedError:
    pass
"""


def _reaches(network, name, peer):
    return subprocess.run(
        network.argv(name, [sys.executable, '-c', _PROBE,
                            network.address(peer)]),
        capture_output=True, check=False).returncode == 0


@testtools.skipUnless(shutil.which('nft') and shutil.which('ip') and
                      os.geteuid() == 0, 'needs root, iproute2 and nftables')
class NetworkTest(testtools.TestCase):

    def test_partition_drops_both_ways_until_healed(self):
        network = netns.Network.make(['a', 'b', 'c'])
        self.addCleanup(network.down)
        self.assertTrue(_reaches(network, 'a', 'b'))
        network.partition('a', 'b')
        self.assertFalse(_reaches(network, 'a', 'b'))
        self.assertFalse(_reaches(network, 'b', 'a'))
        # only that pair
        self.assertTrue(_reaches(network, 'a', 'c'))
        self.assertTrue(_reaches(network, 'c', 'b'))
        network.heal('a')
        self.assertTrue(_reaches(network, 'a', 'b'))

    def test_a_killed_makers_network_goes_with_the_next(self):
        mine = netns.Network.make(['a', 'b'])
        self.addCleanup(mine.down)
        maker = subprocess.Popen([sys.executable, '-c', _MAKER],
                                 stdout=subprocess.PIPE, text=True)
        self.addCleanup(maker.wait)
        self.addCleanup(maker.kill)
        tag = maker.stdout.readline().strip()
        self.assertTrue(tag, 'the maker made no network')
        maker.kill()
        maker.wait()
        self.assertIn('asyncmig-%s-there' % tag, _netns())
        self.assertIn('asyncmig_partition_%s' % tag, _tables())

        self.assertEqual([tag], netns.reap())

        self.assertNotIn(tag, _netns())
        self.assertNotIn(tag, _tables())
        self.assertFalse(os.path.exists('/sys/class/net/amig%s' % tag))
        # a living maker's network stays
        self.assertIn(mine.hosts['b']['netns'], _netns())
        self.assertTrue(_reaches(mine, 'a', 'b'))

    def test_makers_at_once_get_networks_of_their_own(self):
        # once the makers are gone
        self.addCleanup(netns.reap)
        # processes, as test workers and sandboxes are
        makers = [subprocess.Popen(
            [sys.executable, '-c', _MAKER], stdout=subprocess.PIPE,
            text=True) for _ in range(3)]
        for maker in makers:
            self.addCleanup(maker.wait)
            self.addCleanup(maker.kill)
        tags = [maker.stdout.readline().strip() for maker in makers]
        self.assertTrue(all(tags), tags)
        subnets = [ipaddress.ip_interface(subprocess.run(
            ['ip', '-4', '-o', 'addr', 'show', 'dev', 'amig%s' % tag],
            capture_output=True, text=True, check=True).stdout.split()[3])
            .network for tag in tags]
        self.assertEqual(3, len(set(subnets)), subnets)
