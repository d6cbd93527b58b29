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

"""The sandbox's x509 files for the exporter's NBD transport.

A throwaway CA signs one server certificate (for the exporter's address)
and one client certificate (for every host of the sandbox), in the
layouts qemu (``tls-creds-x509``) and libnbd (``/etc/pki/libnbd``) read.
The CA's key is not kept. A deployment makes these with its own CA; see
the README.
"""

import datetime
import ipaddress
import os

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.oid import NameOID

#: the subject of the sandbox's client certificate, as qemu's authz
#: matches it
CLIENT_IDENTITY = 'CN=cinder-asyncmig-sandbox-host'
_LIFETIME = datetime.timedelta(days=30)


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject, issuer, key, now):
    return (x509.CertificateBuilder().subject_name(subject)
            .issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _LIFETIME))


def _leaf(ca, ca_key, common_name, usage, now, address=None):
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(_name(common_name), ca.subject, key, now)
    builder = builder.add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True)
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]),
                                    critical=False)
    if address:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _write(path, data, mode):
    with open(path, 'wb', opener=lambda p, f: os.open(p, f, mode)) as f:
        f.write(data)


def write_nbd_files(server_dir, client_dir, address):
    """Make a CA and write qemu-nbd's and libnbd's directories.

    :param server_dir: gets ``ca-cert.pem``, ``server-cert.pem``,
                       ``server-key.pem``.
    :param client_dir: gets ``ca-cert.pem``, ``client-cert.pem``,
                       ``client-key.pem``.
    :param address: the IP address the server certificate is valid for.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    subject = _name('cinder-asyncmig sandbox CA')
    ca = (_builder(subject, subject, ca_key, now)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    server, server_key = _leaf(ca, ca_key, address,
                               ExtendedKeyUsageOID.SERVER_AUTH, now, address)
    client, client_key = _leaf(
        ca, ca_key, CLIENT_IDENTITY.split('=', 1)[1],
        ExtendedKeyUsageOID.CLIENT_AUTH, now)
    pem = serialization.Encoding.PEM
    for directory, cert, key, role in ((server_dir, server, server_key,
                                        'server'),
                                       (client_dir, client, client_key,
                                        'client')):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        _write(os.path.join(directory, 'ca-cert.pem'),
               ca.public_bytes(pem), 0o644)
        _write(os.path.join(directory, '%s-cert.pem' % role),
               cert.public_bytes(pem), 0o644)
        _write(os.path.join(directory, '%s-key.pem' % role),
               key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()), 0o600)
