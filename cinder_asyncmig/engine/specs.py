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

"""Builders of librbd import-only source specs.

A source spec tells librbd where an import-only migration reads the data
it has not copied yet. The builders return plain dicts; :func:`encode`
turns one into the JSON librbd takes. See the "Image Live-Migration"
chapter of the Ceph documentation for the format.
"""

from oslo_serialization import jsonutils


def native(pool, image, snapshot, namespace='', cluster_name=None,
           client_name=None):
    """An RBD image (at a snapshot) read through librbd.

    :param snapshot: the snapshot to import; native specs require one.
    :param cluster_name: another cluster's name (Ceph 20.2 and later).
    :param client_name: the client to use in that cluster.
    """
    spec = {'type': 'native', 'pool_name': pool, 'image_name': image,
            'snap_name': snapshot}
    if namespace:
        spec['pool_namespace'] = namespace
    if cluster_name:
        spec['cluster_name'] = cluster_name
    if client_name:
        spec['client_name'] = client_name
    return spec


def raw_file(path):
    """A raw image in a file every librbd client can open at ``path``."""
    return {'type': 'raw', 'stream': {'type': 'file', 'file_path': path}}


def raw_http(url):
    """A raw image served over HTTP(S) with range requests."""
    return {'type': 'raw', 'stream': {'type': 'http', 'url': url}}


def raw_nbd(uri):
    """A raw image served over NBD (librbd 20.2 and later)."""
    return {'type': 'raw', 'stream': {'type': 'nbd', 'uri': uri}}


def is_cross_cluster(spec):
    return spec.get('type') == 'native' and bool(
        spec.get('cluster_name') or spec.get('client_name'))


def encode(spec):
    return jsonutils.dumps(spec, sort_keys=True)
