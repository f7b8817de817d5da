"""Certificates with the `cryptography` package: a development CA and the certificates it
issues (the edge's server certificate, and one per service for mutual TLS inside the mesh),
kept as PEM files and reused while they stay valid.

    ca = ensure_ca(tls_dir)                                  # tls_dir/ca.pem, ca-key.pem
    files = ensure_certificate(ca, tls_dir, "edge", ["127.0.0.1", "localhost"])

Keys are ECDSA P-256 (fast handshakes, accepted by every TLS stack here: OpenSSL in nginx,
BoringSSL in gRPC, Node, Chromium), written 0600 through a temp file and a rename so a
crash never leaves half a key.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
CA_VALID_DAYS = 3650
CERT_VALID_DAYS = 397  # the longest lifetime browsers accept for a server certificate
RENEW_BEFORE = datetime.timedelta(days=30)
ORGANIZATION = "vidsynth development"

PrivateKey = ec.EllipticCurvePrivateKey


class TlsFileError(ValueError):
    """A certificate or key file that is missing, unreadable or does not match."""


@dataclass(frozen=True)
class Authority:
    key: PrivateKey
    certificate: x509.Certificate
    path: Path  # the CA certificate's PEM file, for clients to trust


@dataclass(frozen=True)
class CertificateFiles:
    certificate: Path
    key: Path
    ca: Path


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Atomic write with `mode` from the start (never briefly world-readable)."""
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(temp, mode)
    temp.replace(path)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _still_valid(certificate: x509.Certificate) -> bool:
    now = _now()
    return certificate.not_valid_before_utc <= now and certificate.not_valid_after_utc - RENEW_BEFORE > now


def _subject_alternative_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def create_ca(
    common_name: str = "vidsynth development CA", valid_days: int = CA_VALID_DAYS
) -> tuple[PrivateKey, x509.Certificate]:
    key = _new_key()
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def issue_certificate(
    authority: Authority,
    common_name: str,
    hosts: list[str],
    *,
    server: bool = True,
    client: bool = False,
    valid_days: int = CERT_VALID_DAYS,
) -> tuple[PrivateKey, x509.Certificate]:
    """A leaf certificate for `hosts` (IP addresses or DNS names), for TLS servers and/or
    clients (mutual TLS between services uses both)."""
    key = _new_key()
    now = _now()
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(_subject_alternative_names(hosts)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()), critical=False
        )
        .sign(authority.key, hashes.SHA256())
    )
    return key, certificate


def ensure_ca(tls_dir: Path) -> Authority:
    """The CA under `tls_dir` (ca.pem, ca-key.pem), created when missing, unreadable or
    close to expiry."""
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = tls_dir / CA_FILE, tls_dir / CA_KEY_FILE
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if isinstance(key, PrivateKey) and _still_valid(certificate) and _same_key(key, certificate):
            return Authority(key, certificate, cert_path)
    except (OSError, ValueError):
        pass
    key, certificate = create_ca()
    return write_authority(tls_dir, key, certificate)


def write_authority(tls_dir: Path, key: PrivateKey, certificate: x509.Certificate) -> Authority:
    cert_path = tls_dir / CA_FILE
    _write_private(tls_dir / CA_KEY_FILE, _key_pem(key), 0o600)
    _write_private(cert_path, _cert_pem(certificate), 0o644)
    return Authority(key, certificate, cert_path)


def _same_key(key: PrivateKey, certificate: x509.Certificate) -> bool:
    public = certificate.public_key()
    return isinstance(public, ec.EllipticCurvePublicKey) and public.public_numbers() == (
        key.public_key().public_numbers()
    )


def _covers(certificate: x509.Certificate, hosts: list[str]) -> bool:
    return {str(n.value) for n in _subject_alternative_names(hosts)} <= names_in(certificate)


def _issued_by(certificate: x509.Certificate, authority: Authority) -> bool:
    return _signed_by(certificate, authority.certificate)


def _has_usages(certificate: x509.Certificate, server: bool, client: bool) -> bool:
    try:
        usages = set(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return False
    wanted = {ExtendedKeyUsageOID.SERVER_AUTH} if server else set()
    wanted |= {ExtendedKeyUsageOID.CLIENT_AUTH} if client else set()
    return wanted <= usages


def ensure_certificate(
    authority: Authority,
    tls_dir: Path,
    name: str,
    hosts: list[str],
    *,
    server: bool = True,
    client: bool = False,
    common_name: str = "",
) -> CertificateFiles:
    """`<name>.pem` and `<name>-key.pem` under `tls_dir`, reused while they are issued by
    `authority`, cover `hosts`, allow the usages asked for and are not close to expiry;
    issued anew (with `common_name`, default `name`) otherwise."""
    cert_path, key_path = tls_dir / f"{name}.pem", tls_dir / f"{name}-key.pem"
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        reusable = (
            isinstance(key, PrivateKey)
            and _same_key(key, certificate)
            and _still_valid(certificate)
            and _issued_by(certificate, authority)
            and _covers(certificate, hosts)
            and _has_usages(certificate, server, client)
        )
        if reusable:
            return CertificateFiles(cert_path, key_path, authority.path)
    except (OSError, ValueError):
        pass
    key, certificate = issue_certificate(authority, common_name or name, hosts, server=server, client=client)
    return write_certificate(tls_dir, name, key, certificate, authority)


def write_certificate(
    tls_dir: Path, name: str, key: PrivateKey, certificate: x509.Certificate, authority: Authority
) -> CertificateFiles:
    cert_path, key_path = tls_dir / f"{name}.pem", tls_dir / f"{name}-key.pem"
    _write_private(key_path, _key_pem(key), 0o600)
    _write_private(cert_path, _cert_pem(certificate), 0o644)
    return CertificateFiles(cert_path, key_path, authority.path)


def check_certificate_files(certificate_path: Path, key_path: Path) -> None:
    """An operator's own certificate and key: both readable PEM, and the key is the
    certificate's. Raises TlsFileError naming the file and what is wrong."""
    try:
        chain = x509.load_pem_x509_certificates(certificate_path.read_bytes())
    except OSError as error:
        raise TlsFileError(f"cannot read the TLS certificate {certificate_path}: {error.strerror}") from None
    except ValueError:
        raise TlsFileError(f"{certificate_path} holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except OSError as error:
        raise TlsFileError(f"cannot read the TLS key {key_path}: {error.strerror}") from None
    except (ValueError, TypeError):
        raise TlsFileError(f"{key_path} holds no unencrypted PEM private key") from None
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    leaf = (
        chain[0]
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    if public != leaf:
        raise TlsFileError(f"the key {key_path} does not belong to the certificate {certificate_path}")


def load_ca_bundle(ca_path: Path) -> list[x509.Certificate]:
    """The CA certificates in a PEM bundle (several while one CA replaces another)."""
    try:
        return x509.load_pem_x509_certificates(ca_path.read_bytes())
    except OSError as error:
        raise TlsFileError(f"cannot read the CA file {ca_path}: {error.strerror}") from None
    except ValueError:
        raise TlsFileError(f"{ca_path} holds no PEM certificate") from None


def check_issued_by(certificate_path: Path, ca_path: Path) -> x509.Certificate:
    """The leaf of `certificate_path` (PEM, intermediates after it) chains to a CA in
    `ca_path` and is valid now; returns the leaf. Raises TlsFileError naming the file."""
    roots = load_ca_bundle(ca_path)
    chain = x509.load_pem_x509_certificates(certificate_path.read_bytes())
    leaf = current = chain[0]
    now = _now()
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise TlsFileError(
            f"the certificate {certificate_path} is valid only from {leaf.not_valid_before_utc:%Y-%m-%d} "
            f"to {leaf.not_valid_after_utc:%Y-%m-%d}"
        )
    for _ in range(len(chain)):
        if any(_signed_by(current, root) for root in roots):
            return leaf
        parent = next((c for c in chain[1:] if _signed_by(current, c)), None)
        if parent is None:
            break
        current = parent
    raise TlsFileError(f"the certificate {certificate_path} is not issued by the CA in {ca_path}")


def _signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def names_in(certificate: x509.Certificate) -> set[str]:
    """The DNS names and IP addresses a certificate's subjectAltName lists."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return set(names.get_values_for_type(x509.DNSName)) | {
        str(v) for v in names.get_values_for_type(x509.IPAddress)
    }


def allows_usage(certificate: x509.Certificate, usage: x509.ObjectIdentifier) -> bool:
    """No extendedKeyUsage allows every usage; one that is present must list `usage`."""
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return usage in usages
