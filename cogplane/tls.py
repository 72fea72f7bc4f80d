"""HTTPS for the single-machine stack: a local CA and a leaf certificate for 127.0.0.1/localhost.

Both official clients turn only `https:` (and `data:`) output strings into FileOutput objects, so
`make up` serves the API over HTTPS with a certificate made once under `$COGPLANE_HOME/tls/`:

- `ca.pem`        the local certificate authority (what clients trust; no key leaves this folder)
- `ca-key.pem`    its private key (0600)
- `cert.pem`      the server certificate for 127.0.0.1, ::1 and localhost, signed by the CA
- `key.pem`       its private key (0600)

Clients trust it with `SSL_CERT_FILE=$COGPLANE_HOME/tls/ca.pem` (Python/httpx),
`replicate.Client(..., verify=path)`, `NODE_EXTRA_CA_CERTS=path` (node) or `curl --cacert path`.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def tls_dir(home: Path) -> Path:
    return Path(home) / "tls"


def ca_path(home: Path) -> Path:
    return tls_dir(home) / "ca.pem"


def _write(path: Path, data: bytes, private: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def ensure_certificates(home: Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")) -> TlsFiles:
    """The CA and server certificate under home/tls, made on first use and kept afterwards
    (re-made when missing or when the server certificate is within 30 days of expiry)."""
    folder = tls_dir(home)
    files = TlsFiles(ca=folder / "ca.pem", cert=folder / "cert.pem", key=folder / "key.pem")
    if all(p.is_file() for p in (files.ca, files.cert, files.key, folder / "ca-key.pem")) and _still_valid(files):
        return files
    folder.mkdir(parents=True, exist_ok=True)

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "cogplane local CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cogplane"),
        ]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    _write(folder / "ca-key.pem", ca_key.private_bytes(pem, pkcs8, serialization.NoEncryption()), private=True)
    _write(files.key, key.private_bytes(pem, pkcs8, serialization.NoEncryption()), private=True)
    _write(files.cert, cert.public_bytes(pem))
    _write(files.ca, ca_cert.public_bytes(pem))
    return files


def _still_valid(files: TlsFiles) -> bool:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > datetime.timedelta(days=30)


def client_ca(home: Path, given: str = "") -> str | None:
    """The CA a cogplane client (CLI, runner fetching our own URLs) should trust besides the
    system's: `given` (settings.ca, COGPLANE_CA), else `home/tls/ca.pem` when it exists."""
    if given:
        return given
    path = ca_path(Path(home))
    return str(path) if path.is_file() else None


def ssl_context(home: Path, ca: str = "") -> ssl.SSLContext:
    """A verifying client SSLContext: the system CAs plus our local CA when there is one."""
    import ssl

    ctx = ssl.create_default_context()
    extra = client_ca(home, ca)
    if extra:
        ctx.load_verify_locations(cafile=extra)
    return ctx
