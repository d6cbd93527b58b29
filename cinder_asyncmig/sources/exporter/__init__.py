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

"""A read-only exporter of one LUN, for librbd's http or nbd stream.

An import-only live migration with a raw source spec reads every block it
has not copied yet from a stream: ``{"type": "http", "url": URL}`` with
range requests, or (librbd 20.2) ``{"type": "nbd", "uri": URI}``. An
exporter serves one LUN (a block device or a regular file, opened
read-only; or an RBD image of another cluster, over HTTP) that way, in a
child process of its own session, like the copy worker
(:mod:`cinder_asyncmig.engine.worker`), so that cinder-volume can stop it
by pid and, restarted, adopt it or start it again with the same URL:
librbd keeps the URL in the destination's migration header.

- :mod:`.configuration`: defaults, checks, the token, private files;
- :mod:`.ranges` and :mod:`.ratelimit`: byte ranges and the read cap of
  the HTTP transport;
- :mod:`.luns`: what is read (a device or file, or an RBD image);
- :mod:`.httpserver`: the HTTP transport (a WSGI application on cheroot);
  :mod:`.nbd`: qemu-nbd with TLS;
- :mod:`.child`: the child process (``python -m`` this package);
- :mod:`.handle`: :class:`Exporter`, the parent's handle on a child.

The HTTP server keeps the token of its URL secret: GET and HEAD of
``/lun/<token>`` only (a wrong token gets 403), never logged (the URL is
logged as ``.../lun/***``). To measure the accuracy of the read cap, run an
exporter with ``max_bytes_per_sec`` set and call
:func:`~.httpserver.measure_read_rate` on its URL for 30 s with a few
connections.
"""

from cinder_asyncmig.sources.exporter import configuration
from cinder_asyncmig.sources.exporter import handle
from cinder_asyncmig.sources.exporter import httpserver
from cinder_asyncmig.sources.exporter import ranges
from cinder_asyncmig.sources.exporter import ratelimit

# the names the rest of the plugin uses
CHUNK_BYTES = configuration.CHUNK_BYTES
check_config = configuration.check_config
DEFAULT_MAX_CONNECTIONS = configuration.DEFAULT_MAX_CONNECTIONS
DEFAULT_PORT_RANGE = configuration.DEFAULT_PORT_RANGE
DEFAULT_TIMEOUT = configuration.DEFAULT_TIMEOUT
export_url = configuration.export_url
generate_token = configuration.generate_token
HTTP = configuration.HTTP
make_config = configuration.make_config
MASK = configuration.MASK
mask_token = configuration.mask_token
MAX_HEAD_BYTES = configuration.MAX_HEAD_BYTES
NBD = configuration.NBD
PATH_PREFIX = configuration.PATH_PREFIX
read_private_json = configuration.read_private_json
start_options = configuration.start_options
write_private_json = configuration.write_private_json
Exporter = handle.Exporter
make_server = httpserver.make_server
measure_read_rate = httpserver.measure_read_rate
parse_range = ranges.parse_range
RangeNotSatisfiable = ranges.RangeNotSatisfiable
make_bucket = ratelimit.make_bucket
TokenBucket = ratelimit.TokenBucket
