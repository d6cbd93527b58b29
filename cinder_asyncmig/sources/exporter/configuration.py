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

"""An export's configuration: defaults, checks, token and private files.

The parent checks a configuration with :func:`make_config` before it
starts a child, and the child checks it again when it reads it back
(:func:`check_config`). The file holds the export's token: it is written
and read only as a 0600 file of its owner (:func:`write_private_json`).
"""

import ipaddress
import os
import re
import secrets

from cinder.i18n import _
from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import units

from cinder_asyncmig import exception
from cinder_asyncmig.sources.exporter import nbd

LOG = logging.getLogger(__name__)

PATH_PREFIX = '/lun'
MASK = '***'
MAX_HEAD_BYTES = 16 * units.Ki
CHUNK_BYTES = units.Mi
MIN_CHUNK_BYTES = 64 * units.Ki
TOKEN_BYTES = 32
DEFAULT_BIND_ADDRESS = '127.0.0.1'
DEFAULT_PORT_RANGE = (10800, 10899)
DEFAULT_MAX_CONNECTIONS = 16
DEFAULT_TIMEOUT = 30
DEFAULT_START_TIMEOUT = 15
_EXPORT_ID = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$')
# what librbd's URL parser accepts in a path segment and in a host name
_TOKEN = re.compile(r'^[A-Za-z0-9_-]{16,}$')
_HOST_NAME = re.compile(r'^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$')


def generate_token():
    """Return a new unguessable export token (URL-safe, 256 bits).

    :returns: the token, a string safe for a URL path segment.
    """
    return secrets.token_urlsafe(TOKEN_BYTES)


def mask_token(text, token):
    """Return ``text`` with every occurrence of ``token`` masked."""
    if not token or not isinstance(text, str):
        return text
    return text.replace(token, MASK)


def export_url(scheme, address, port, token):
    """The URL of an export, the form librbd's http stream keeps intact."""
    return '%s://%s:%d%s/%s' % (scheme, address, port, PATH_PREFIX, token)


HTTP = 'http'
NBD = 'nbd'


def start_options(configuration):
    """Return :meth:`Exporter.start` keyword arguments from a backend.

    :param configuration: a backend configuration (or option group) with
                          :data:`exporter_opts` registered.
    :returns: a dict of keyword arguments.
    """
    return {
        'bind_address': configuration.async_migration_exporter_bind_address,
        'port_range': (configuration.async_migration_exporter_port_min,
                       configuration.async_migration_exporter_port_max),
        'cert_file': configuration.async_migration_exporter_cert_file,
        'key_file': configuration.async_migration_exporter_key_file,
        'max_bytes_per_sec':
            configuration.async_migration_exporter_max_bytes_per_sec,
        'max_connections':
            configuration.async_migration_exporter_max_connections,
        'timeout': configuration.async_migration_exporter_timeout,
        'nbd_tls_dir': configuration.async_migration_exporter_nbd_tls_dir,
        'nbd_identities':
            configuration.async_migration_exporter_nbd_client_identities,
    }


# -- configuration -----------------------------------------------------------

def _invalid(reason):
    return exception.ExporterInvalid(reason=reason)


def _check_export_id(export_id):
    if not isinstance(export_id, str) or not _EXPORT_ID.match(export_id):
        raise _invalid(_('the export id must be 1 to 128 letters, digits, '
                         '".", "_" or "-", not starting with a sign'))


def _check_bind_address(address):
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        if not _HOST_NAME.match(address or ''):
            raise _invalid(_('the bind address must be an IPv4 address or '
                             'a host name'))
        return
    if ip.version != 4:
        raise _invalid(_('librbd 16.2 cannot parse an IPv6 address in a '
                         'URL; use an IPv4 address or a host name'))
    if ip.is_unspecified:
        raise _invalid(_('the exporter does not listen on the wildcard '
                         'address; give the address librbd clients reach '
                         'it at'))


def _check_port_range(port_range):
    try:
        low, high = (int(p) for p in port_range)
    except (TypeError, ValueError):
        raise _invalid(_('the port range must be two port numbers'))
    if not 1 <= low <= high <= 65535:
        raise _invalid(_('the port range must satisfy 1 <= min <= max <= '
                         '65535'))
    return low, high


def _check_limits(config):
    if (config['max_bytes_per_sec'] < 0 or config['max_connections'] < 1 or
            config['timeout'] <= 0):
        raise _invalid(_('max_bytes_per_sec must be >= 0, '
                         'max_connections >= 1 and timeout > 0'))
    if bool(config['cert_file']) != bool(config['key_file']):
        raise _invalid(_('TLS needs both a certificate and a key file'))


def make_config(export_id, path, token, bind_address=DEFAULT_BIND_ADDRESS,
                port_range=DEFAULT_PORT_RANGE, cert_file=None, key_file=None,
                max_bytes_per_sec=0,
                max_connections=DEFAULT_MAX_CONNECTIONS,
                timeout=DEFAULT_TIMEOUT, port=None, reserved_ports=(),
                rbd=None, transport=HTTP, nbd_tls_dir=None,
                nbd_identities=()):
    """Return a checked exporter configuration (a dict, token included).

    :param path: the LUN, or the ceph.conf of an RBD LUN.
    :param rbd: for an RBD image, ``{'pool', 'image', 'user'}`` and
                optionally ``'cluster'``; ``path`` is then the
                configuration file of its cluster.
    :param port: the port to use; only this one is tried when given.
    :param reserved_ports: ports of the range a new export must not take.
    :param transport: ``http``, or ``nbd`` for qemu-nbd (see
                      :mod:`.nbd`), which needs ``nbd_tls_dir`` and serves
                      no RBD LUN.
    :param nbd_identities: client certificate names qemu-nbd lets in;
                           empty for any certificate of the CA.
    :raises ExporterInvalid: when a setting cannot work.
    """
    _check_export_id(export_id)
    if not isinstance(path, str) or not os.path.isabs(path):
        raise _invalid(_('the LUN path must be absolute'))
    if not isinstance(token, str) or not _TOKEN.match(token):
        raise _invalid(_('the token must be at least 16 URL-safe '
                         'characters; use generate_token()'))
    _check_bind_address(bind_address)
    low, high = _check_port_range(port_range)
    config = {'export_id': export_id, 'path': path, 'token': token,
              'bind_address': bind_address, 'port_min': low,
              'port_max': high, 'port': port, 'cert_file': cert_file,
              'key_file': key_file,
              'max_bytes_per_sec': int(max_bytes_per_sec),
              'max_connections': int(max_connections),
              'timeout': float(timeout),
              'reserved_ports': sorted(int(p) for p in reserved_ports),
              'rbd': _check_rbd(rbd), 'transport': transport,
              'nbd_tls_dir': nbd_tls_dir,
              'nbd_identities': [str(i) for i in nbd_identities or ()]}
    _check_limits(config)
    if transport not in (HTTP, NBD):
        raise _invalid(_('the transport must be %(http)s or %(nbd)s') % {
            'http': HTTP, 'nbd': NBD})
    if transport == NBD:
        problem = nbd.tls_dir_problem(nbd_tls_dir)
        if problem or config['rbd']:
            raise _invalid(problem or _('an RBD LUN is served over http '
                                        'only'))
    return config


def _check_rbd(rbd):
    if rbd is None:
        return None
    if not isinstance(rbd, dict) or not all(
            isinstance(rbd.get(k), str) and rbd[k]
            for k in ('pool', 'image', 'user')) or set(rbd) - {
                'pool', 'image', 'user', 'cluster'}:
        raise _invalid(_('an RBD LUN needs its pool, image and user '
                         '(and may name its cluster), nothing else'))
    return dict(rbd)


def check_config(config):
    """Check a configuration read back from a file; return it."""
    config = dict(config)
    try:
        config['port_range'] = (config.pop('port_min'),
                                config.pop('port_max'))
        return make_config(**config)
    except (KeyError, TypeError) as exc:
        raise _invalid(_('unexpected configuration keys: %s') % exc)


def write_private_json(path, data, exclusive=False):
    """Write a JSON file only its owner may read, atomically.

    :param exclusive: fail with FileExistsError if ``path`` exists.
    """
    tmp = '%s.%d.tmp' % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, 'w') as f:
            fd = None
            f.write(jsonutils.dumps(data))
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if fd is not None:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_private_json(path):
    """Read a JSON file only its owner may read.

    :raises ExporterInvalid: when others may read or write the file.
    """
    with open(path) as f:
        info = os.fstat(f.fileno())
        if info.st_mode & 0o077 or info.st_uid != os.geteuid():
            raise _invalid(_('%s must be owned by this user and have mode '
                             '0600') % path)
        return jsonutils.loads(f.read())


# -- the parent-side handle --------------------------------------------------

def _private_opener(path, flags):
    return os.open(path, flags, 0o600)
