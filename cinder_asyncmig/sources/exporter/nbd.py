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

"""The exporter's NBD transport: qemu-nbd, for librbd's nbd stream.

librbd 20.2 reads an import-only source with the spec
``{"type": "raw", "stream": {"type": "nbd", "uri": URI}}`` through
libnbd's ``nbd_connect_uri``, and sets nothing else on the connection. So
the URI is all a deployment controls:

* ``nbds://`` makes libnbd require TLS. libnbd then presents the x509
  client certificate of its default directory: ``/etc/pki/libnbd`` for
  root (``ca-cert.pem``, ``client-cert.pem``, ``client-key.pem``),
  ``$HOME/.pki/libnbd`` otherwise, on every host that opens the
  destination (the target host, its copy worker, hypervisors).
* A PSK in the URI (``tls-psk-file=``) is refused: libnbd does not let a
  URI name a local file unless the program allows it, and librbd does
  not (probed on 20.2.4: EPERM). x509 is the one form that
  authenticates.

qemu-nbd serves the LUN read-only, as one export (named by the export
id, not a secret: the client certificate is), to at most
``max_connections`` clients at once, and keeps running when they leave.
It requires TLS with the deployment's CA and checks the client's
certificate (``verify-peer``); with identities configured, only those
distinguished names get through (``authz-list``). A throttle group caps
its reads when ``max_bytes_per_sec`` is set. The exporter child binds the
port itself, as for HTTP, and hands the listening socket to qemu-nbd
(systemd socket activation): one port choice, one "port taken" error.
"""

import ctypes
import errno
import os
import signal
import socket
import stat
import subprocess
import time

from cinder.i18n import _
from oslo_serialization import jsonutils

#: what qemu's ``tls-creds-x509`` object reads in its directory
TLS_FILES = ('ca-cert.pem', 'server-cert.pem', 'server-key.pem')
SCHEME = 'nbds'
_PR_SET_PDEATHSIG = 1
_GREETING = b'NBDMAGIC'

# fd 3 is the listening socket; LISTEN_PID must be qemu-nbd's own pid,
# which exec keeps
_ACTIVATE = ('[ "$0" = 3 ] || eval "exec 3<&$0 $0<&-"; '
             'export LISTEN_PID=$$ LISTEN_FDS=1; exec "$@"')


def tls_dir_problem(path):
    """Why qemu-nbd cannot use ``path`` as its TLS directory, or None."""
    if not path or not os.path.isabs(path):
        return _('the NBD TLS directory must be an absolute path')
    missing = [name for name in TLS_FILES
               if not os.path.isfile(os.path.join(path, name))]
    if missing:
        return _('the NBD TLS directory %(dir)s lacks %(files)s') % {
            'dir': path, 'files': ', '.join(missing)}
    return None


def uri(address, port, export):
    """The URI librbd's nbd stream connects to: TLS required."""
    return '%s://%s:%d/%s' % (SCHEME, address, port, export)


def _opt(value):
    """A value in qemu's ``key=value,...`` syntax (commas doubled)."""
    return str(value).replace(',', ',,')


def qemu_nbd_argv(config, qemu_nbd='qemu-nbd'):
    """The command line serving the LUN of an exporter configuration.

    :param config: a checked exporter configuration with transport nbd.
    """
    path = config['path']
    device = 'host_device' if stat.S_ISBLK(os.stat(path).st_mode) else 'file'
    argv = [qemu_nbd,
            '--object', 'tls-creds-x509,id=tls0,endpoint=server,'
                        'verify-peer=on,dir=%s' % _opt(config['nbd_tls_dir']),
            '--tls-creds', 'tls0']
    if config['nbd_identities']:
        authz = {'qom-type': 'authz-list', 'id': 'authz0', 'policy': 'deny',
                 'rules': [{'match': identity, 'policy': 'allow',
                            'format': 'exact'}
                           for identity in config['nbd_identities']]}
        argv += ['--object', jsonutils.dumps(authz), '--tls-authz', 'authz0']
    image = 'file.driver=%s,file.filename=%s' % (device, _opt(path))
    if config['max_bytes_per_sec']:
        argv += ['--object', 'throttle-group,id=cap0,x-bps-read=%d' %
                 config['max_bytes_per_sec']]
        image = ('driver=throttle,throttle-group=cap0,file.driver=raw,' +
                 image.replace('file.', 'file.file.'))
    else:
        image = 'driver=raw,' + image
    return argv + ['--image-opts', image, '--read-only',
                   '--shared=%d' % config['max_connections'], '--persistent',
                   '--export-name=%s' % config['export_id']]


def wait_serving(address, port, server, timeout):
    """Wait until qemu-nbd greets clients on its socket.

    The socket listens before qemu-nbd runs; its greeting (the
    ``NBDMAGIC`` the protocol opens with) shows that it serves.

    :param server: qemu-nbd's Popen.
    :raises OSError: qemu-nbd exited or did not greet in ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise OSError(errno.EIO, 'qemu-nbd exited with code %d' %
                          server.returncode)
        try:
            with socket.create_connection((address, port),
                                          timeout=1) as probe:
                if probe.recv(len(_GREETING)) == _GREETING:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise OSError(errno.ETIMEDOUT, 'qemu-nbd did not serve within '
                          '%d s' % timeout)
        time.sleep(0.05)


def _die_with_parent():
    # kept across exec: qemu-nbd goes when the exporter does, even when
    # the exporter is killed, so that a new exporter finds its port free
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), 'prctl(PR_SET_PDEATHSIG)')


def start(config, sock, log):
    """Start qemu-nbd on a listening socket; returns its Popen.

    Called by the exporter child, single-threaded at that point.

    :param sock: the bound, listening socket; the caller closes its copy.
    :param log: a file object for qemu-nbd's output.
    """
    fd = sock.fileno()
    return subprocess.Popen(
        ['/bin/sh', '-c', _ACTIVATE, str(fd)] + qemu_nbd_argv(config),
        pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        preexec_fn=_die_with_parent)
