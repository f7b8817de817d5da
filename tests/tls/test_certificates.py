"""The development CA and the certificates it issues (libs/common/tls.py): checked with
cryptography's own X.509 verifier and with a real TLS handshake through Python's ssl
(OpenSSL), not by reading back what the code wrote."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import stat

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from libs.common import tls

HOSTS = ["127.0.0.1", "localhost"]


def verify(ca: x509.Certificate, leaf: x509.Certificate, name: x509.GeneralName) -> None:
    verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(name)
    verifier.verify(leaf, [])


def load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_ca_and_a_server_certificate_verify_for_both_names(tmp_path) -> None:
    authority = tls.ensure_ca(tmp_path)
    files = tls.ensure_certificate(authority, tmp_path, "edge", HOSTS)
    ca, leaf = load(authority.path), load(files.certificate)
    verify(ca, leaf, x509.DNSName("localhost"))
    verify(ca, leaf, x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    with pytest.raises(x509.verification.VerificationError):
        verify(ca, leaf, x509.DNSName("example.com"))
    assert stat.S_IMODE((tmp_path / "ca-key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600


async def test_a_tls_handshake_with_the_issued_certificate(tmp_path) -> None:
    authority = tls.ensure_ca(tmp_path)
    files = tls.ensure_certificate(authority, tmp_path, "edge", HOSTS)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(files.certificate, files.key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    try:
        for name in HOSTS:
            client = ssl.create_default_context(cafile=str(authority.path))
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client, server_hostname=name
            )
            assert await reader.read() == b"hello"
            writer.close()
        stranger = ssl.create_default_context()  # the system's CAs do not know ours
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection("127.0.0.1", port, ssl=stranger, server_hostname="localhost")
    finally:
        server.close()
        await server.wait_closed()


def test_files_are_reused_while_valid(tmp_path) -> None:
    authority = tls.ensure_ca(tmp_path)
    files = tls.ensure_certificate(authority, tmp_path, "edge", HOSTS)
    before = (authority.path.read_bytes(), files.certificate.read_bytes(), files.key.read_bytes())
    again = tls.ensure_ca(tmp_path)
    same = tls.ensure_certificate(again, tmp_path, "edge", HOSTS)
    assert (again.path.read_bytes(), same.certificate.read_bytes(), same.key.read_bytes()) == before


def test_a_certificate_is_issued_again_for_new_names_or_a_new_ca(tmp_path) -> None:
    authority = tls.ensure_ca(tmp_path)
    first = tls.ensure_certificate(authority, tmp_path, "edge", HOSTS).certificate.read_bytes()
    wider = tls.ensure_certificate(authority, tmp_path, "edge", [*HOSTS, "vidsynth.test"])
    assert wider.certificate.read_bytes() != first
    verify(load(authority.path), load(wider.certificate), x509.DNSName("vidsynth.test"))

    (tmp_path / "other").mkdir()
    other = tls.write_authority(tmp_path / "other", *tls.create_ca("another CA"))
    reissued = tls.ensure_certificate(other, tmp_path, "edge", HOSTS)
    verify(load(other.path), load(reissued.certificate), x509.DNSName("localhost"))


def test_an_expiring_ca_is_replaced(tmp_path) -> None:
    tls.write_authority(tmp_path, *tls.create_ca(valid_days=10))  # inside the renewal margin
    old = (tmp_path / "ca.pem").read_bytes()
    renewed = tls.ensure_ca(tmp_path)
    assert renewed.path.read_bytes() != old
    assert (load(renewed.path).not_valid_after_utc - load(renewed.path).not_valid_before_utc).days > 3000


def test_operator_files_are_checked(tmp_path) -> None:
    authority = tls.ensure_ca(tmp_path)
    files = tls.ensure_certificate(authority, tmp_path, "edge", HOSTS)
    tls.check_certificate_files(files.certificate, files.key)  # a matching pair passes
    with pytest.raises(tls.TlsFileError, match="cannot read the TLS certificate"):
        tls.check_certificate_files(tmp_path / "missing.pem", files.key)
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(tls.TlsFileError, match="holds no PEM certificate"):
        tls.check_certificate_files(tmp_path / "junk.pem", files.key)
    other = tls.ensure_certificate(authority, tmp_path, "other", HOSTS)
    with pytest.raises(tls.TlsFileError, match="does not belong"):
        tls.check_certificate_files(files.certificate, other.key)
