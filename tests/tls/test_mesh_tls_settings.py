"""Mesh TLS settings and certificate checks (libs/common/mesh_tls.py) and the development
certificates `up --tls` issues (vidsynth/cli/mesh_certs.py): what an operator brings is
checked at start, with messages naming the setting or file."""

from __future__ import annotations

import contextlib
import datetime
import re
import ssl
from pathlib import Path

import pydantic
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from libs.common import mesh_tls, tls
from libs.common.mesh_tls import MeshTlsSettings
from vidsynth.cli import mesh_certs

HOSTS = ["127.0.0.1", "localhost"]
SERVERS = ["session", "validator", "stage_runner", "progress", "cleanup", "gateway"]


def settings(**values) -> MeshTlsSettings:
    return MeshTlsSettings(**values)


def message(**values) -> str:
    with pytest.raises(pydantic.ValidationError) as caught:
        settings(**values)
    return mesh_tls.settings_error(caught.value)


def leaf(
    authority: tls.Authority,
    names: list[str],
    usages: list[x509.ObjectIdentifier],
    *,
    not_after: datetime.datetime | None = None,
) -> tuple[bytes, bytes]:
    """A certificate built here, independently of the code under test: PEM (certificate, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=2))
        .not_valid_after(not_after or now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(authority.key, hashes.SHA256())
    )
    return pem(certificate), key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.PEM)


def write_pair(directory: Path, name: str, pair: tuple[bytes, bytes]) -> tuple[Path, Path]:
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.pem").write_bytes(pair[0])
    (directory / f"{name}-key.pem").write_bytes(pair[1])
    return directory / f"{name}.pem", directory / f"{name}-key.pem"


BOTH = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


@pytest.fixture
def authority(tmp_path) -> tls.Authority:
    return tls.ensure_ca(tmp_path / "ca")


def test_settings_that_cannot_work_fail_with_their_names(tmp_path, authority) -> None:
    pair = write_pair(tmp_path / "certs", "shared", leaf(authority, ["*.vidsynth.internal"], BOTH))
    ca = authority.path
    assert "set both VIDSYNTH_MESH_TLS_CERT_FILE and VIDSYNTH_MESH_TLS_KEY_FILE" in message(
        mesh_tls_ca_file=ca, mesh_tls_cert_file=pair[0]
    )
    assert "not both" in message(
        mesh_tls_ca_file=ca, mesh_tls_cert_dir=tmp_path, mesh_tls_cert_file=pair[0], mesh_tls_key_file=pair[1]
    )
    assert "set VIDSYNTH_MESH_TLS_CA_FILE" in message(mesh_tls_cert_dir=tmp_path / "certs")
    assert "VIDSYNTH_MESH_TLS_CA_FILE is set: set VIDSYNTH_MESH_TLS_CERT_DIR" in message(mesh_tls_ca_file=ca)
    assert "VIDSYNTH_MESH_TLS is on" in message(mesh_tls=True)
    assert f"cannot read the CA file {tmp_path / 'nope.pem'}" in message(
        mesh_tls_ca_file=tmp_path / "nope.pem", mesh_tls_cert_dir=tmp_path / "certs"
    )
    assert f"VIDSYNTH_MESH_TLS_CERT_DIR {tmp_path / 'absent'} is no directory" in message(
        mesh_tls_ca_file=ca, mesh_tls_cert_dir=tmp_path / "absent"
    )
    assert f"cannot read the TLS key {tmp_path / 'gone.pem'}" in message(
        mesh_tls_ca_file=ca, mesh_tls_cert_file=pair[0], mesh_tls_key_file=tmp_path / "gone.pem"
    )
    assert "is no DNS domain" in message(mesh_tls_domain="under_score..example")
    assert settings().mesh_tls is False  # nothing set: off, as before


def test_the_environment_is_read_at_start(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("VIDSYNTH_MESH_TLS", "true")
    monkeypatch.setenv("VIDSYNTH_MESH_TLS_CA_FILE", str(tmp_path / "missing-ca.pem"))
    monkeypatch.setenv("VIDSYNTH_MESH_TLS_CERT_DIR", str(tmp_path))
    with pytest.raises(pydantic.ValidationError, match=re.escape("missing-ca.pem")):
        MeshTlsSettings()


def test_a_shared_wildcard_pair_serves_every_identity(tmp_path, authority) -> None:
    pair = write_pair(tmp_path, "shared", leaf(authority, ["*.vidsynth.internal"], BOTH))
    shared = settings(
        mesh_tls=True, mesh_tls_ca_file=authority.path, mesh_tls_cert_file=pair[0], mesh_tls_key_file=pair[1]
    )
    for identity in [*SERVERS, "edge"]:
        loaded = mesh_tls.load(identity, shared)
        assert loaded.certificate_pem == pair[0].read_bytes()
        assert loaded.server_name(identity) == f"{identity.replace('_', '-')}.vidsynth.internal"


def test_each_identity_is_checked_for_what_it_is_used_for(tmp_path, authority) -> None:
    directory = tmp_path / "dir"
    directory.mkdir()
    per_identity = settings(mesh_tls_ca_file=authority.path, mesh_tls_cert_dir=directory)
    with pytest.raises(
        tls.TlsFileError, match=re.escape(f"cannot read the TLS certificate {directory / 'session.pem'}")
    ):
        mesh_tls.load("session", per_identity)

    write_pair(directory, "session", leaf(authority, ["validator.vidsynth.internal"], BOTH))
    with pytest.raises(tls.TlsFileError, match=re.escape("does not name session.vidsynth.internal")):
        mesh_tls.load("session", per_identity)

    write_pair(
        directory,
        "session",
        leaf(authority, ["session.vidsynth.internal"], [ExtendedKeyUsageOID.CLIENT_AUTH]),
    )
    with pytest.raises(tls.TlsFileError, match=re.escape("does not allow TLS server use")):
        mesh_tls.load("session", per_identity)

    write_pair(
        directory, "edge", leaf(authority, ["edge.vidsynth.internal"], [ExtendedKeyUsageOID.SERVER_AUTH])
    )
    with pytest.raises(tls.TlsFileError, match=re.escape("does not allow TLS client use")):
        mesh_tls.load("edge", per_identity)

    expired = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    write_pair(directory, "session", leaf(authority, ["session.vidsynth.internal"], BOTH, not_after=expired))
    with pytest.raises(tls.TlsFileError, match=re.escape("is valid only from")):
        mesh_tls.load("session", per_identity)

    stranger = tls.write_authority(tmp_path, *tls.create_ca("another CA"))
    write_pair(directory, "session", leaf(stranger, ["session.vidsynth.internal"], BOTH))
    with pytest.raises(tls.TlsFileError, match=re.escape(f"is not issued by the CA in {authority.path}")):
        mesh_tls.load("session", per_identity)

    write_pair(directory, "session", leaf(authority, ["session.vidsynth.internal"], BOTH))
    assert mesh_tls.load("session", per_identity).identity == "session"


def test_a_chain_through_an_intermediate_ca_is_accepted(tmp_path, authority) -> None:
    key, certificate = tls.create_ca("intermediate")
    # Re-sign the intermediate with the root, as an operator's PKI would.
    intermediate_certificate = (
        x509.CertificateBuilder()
        .subject_name(certificate.subject)
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(certificate.not_valid_before_utc)
        .not_valid_after(certificate.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(authority.key, hashes.SHA256())
    )
    intermediate = tls.Authority(key, intermediate_certificate, tmp_path / "unused.pem")
    certificate_pem, key_pem = leaf(intermediate, ["gateway.vidsynth.internal"], BOTH)
    pair = write_pair(
        tmp_path / "chain", "gateway", (certificate_pem + pem(intermediate_certificate), key_pem)
    )
    chained = settings(mesh_tls_ca_file=authority.path, mesh_tls_cert_file=pair[0], mesh_tls_key_file=pair[1])
    assert mesh_tls.load("gateway", chained).identity == "gateway"
    alone = write_pair(tmp_path / "alone", "gateway", (certificate_pem, key_pem))  # the intermediate left out
    without = settings(
        mesh_tls_ca_file=authority.path, mesh_tls_cert_file=alone[0], mesh_tls_key_file=alone[1]
    )
    with pytest.raises(tls.TlsFileError, match=re.escape("is not issued by the CA")):
        mesh_tls.load("gateway", without)


def test_development_certificates_are_reused_and_renewed(tmp_path) -> None:
    tls_dir = tmp_path / "tls"
    authority = tls.ensure_ca(tls_dir)
    directory = mesh_certs.issue_development(authority, tls_dir, "vidsynth.internal", HOSTS)
    files = sorted(directory.glob("*.pem"))
    assert len(files) == 14 and all(
        (p.stat().st_mode & 0o777) == (0o600 if p.name.endswith("-key.pem") else 0o644) for p in files
    )
    before = {p.name: p.read_bytes() for p in files}
    mesh_certs.issue_development(tls.ensure_ca(tls_dir), tls_dir, "vidsynth.internal", HOSTS)
    assert {p.name: p.read_bytes() for p in directory.glob("*.pem")} == before  # still valid: reused

    # A certificate inside its renewal margin is issued again; the others stay.
    key, near_expiry = tls.issue_certificate(
        authority,
        "session.vidsynth.internal",
        ["session.vidsynth.internal", *HOSTS],
        client=True,
        valid_days=10,
    )
    tls.write_certificate(directory, "session", key, near_expiry, authority)
    mesh_certs.issue_development(authority, tls_dir, "vidsynth.internal", HOSTS)
    renewed = x509.load_pem_x509_certificate((directory / "session.pem").read_bytes())
    assert (renewed.not_valid_after_utc - datetime.datetime.now(datetime.UTC)).days > 300
    assert (directory / "validator.pem").read_bytes() == before["validator.pem"]

    # A new CA: every certificate is issued again, by it.
    (tls_dir / "ca.pem").unlink()
    replaced = tls.ensure_ca(tls_dir)
    mesh_certs.issue_development(replaced, tls_dir, "vidsynth.internal", HOSTS)
    fresh = settings(mesh_tls=True, mesh_tls_ca_file=replaced.path, mesh_tls_cert_dir=directory)
    for identity in [*SERVERS, "edge"]:
        assert (directory / f"{identity}.pem").read_bytes() != before[f"{identity}.pem"]
        mesh_tls.load(identity, fresh)


def test_the_credentials_complete_a_mutual_handshake(tmp_path) -> None:
    """The contexts handed to uvicorn, httpx and the metrics server, against each other."""
    tls_dir = tmp_path / "tls"
    authority = tls.ensure_ca(tls_dir)
    directory = mesh_certs.issue_development(authority, tls_dir, "vidsynth.internal", HOSTS)
    dev = settings(mesh_tls=True, mesh_tls_ca_file=authority.path, mesh_tls_cert_dir=directory)
    server = mesh_tls.load("gateway", dev).server_context()
    client = mesh_tls.load("edge", dev).client_context()
    assert server.verify_mode == ssl.CERT_REQUIRED and client.verify_mode == ssl.CERT_REQUIRED
    server_side, client_side = ssl.MemoryBIO(), ssl.MemoryBIO()
    a = server.wrap_bio(server_side, client_side, server_side=True)
    b = client.wrap_bio(client_side, server_side, server_hostname="gateway.vidsynth.internal")
    for _ in range(10):
        for end in (b, a):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
    assert a.getpeercert()["subject"] == (
        (("organizationName", "vidsynth development"),),
        (("commonName", "edge.vidsynth.internal"),),
    )
