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

"""The names of the source kinds, as options, records and logs spell them.

Nothing else is defined here, so that configuration code (the options, the
sandbox's and devstack's settings) can name the kinds without loading
them.
"""

#: an RBD image in the target's own Ceph cluster, linked migration
RBD_LINKED = 'rbd-linked'
#: an RBD image in another Ceph cluster, read by librbd itself
RBD_NATIVE = 'rbd-native'
#: a volume file at the same path on every host, raw file stream
SHARED_FILE = 'shared-file'
#: any volume os-brick attaches here, served to librbd over HTTP
EXPORTER = 'exporter'

#: every kind, best first: the order in which a target tries them
ALL = (RBD_LINKED, RBD_NATIVE, SHARED_FILE, EXPORTER)
