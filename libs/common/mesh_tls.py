"""Mutual TLS inside the mesh: every service listens with TLS and asks each caller for a
certificate from the mesh's CA; every caller (the services' clients, the gateway, the edge,
`up`'s health checks) presents its own and checks the server's.

Identities: each process has one, its service name (session, validator, stage_runner,
progress, cleanup, gateway), or `edge` for callers from outside the services (the nginx
edge, `vidsynth up`'s health checks, `vidsynth health`). A server's certificate names it
`<service>.<domain>` (`stage-runner.vidsynth.internal`: DNS names have no underscores), and
clients check that name rather than the address, so a certificate says which service
answers wherever it runs (127.0.0.1 under `up`, a pod in Kubernetes).

Files (MeshTlsSettings, read once at start): VIDSYNTH_MESH_TLS_CA_FILE, the CA(s) to trust,
and either VIDSYNTH_MESH_TLS_CERT_DIR with `<identity>.pem` and `<identity>-key.pem` (what
`vidsynth up --tls` issues under <data-dir>/tls/mesh/) or one pair in
VIDSYNTH_MESH_TLS_CERT_FILE/_KEY_FILE. Missing, unreadable, mismatched, expired or foreign
files fail at start with a message naming the file.

The mesh token stays the second factor: a certificate lets a caller connect, the token
lets it call internal RPCs.
"""

from __future__ import annotations

import functools
import re
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import grpc
import pydantic
import structlog
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import Field, model_validator

from libs.common.settings import SERVICE_PORT_OFFSETS, VidsynthSettings
from libs.common.tls import (
    CertificateFiles,
    TlsFileError,
    allows_usage,
    check_certificate_files,
    check_issued_by,
    load_ca_bundle,
    names_in,
)

log = structlog.get_logger("vidsynth.mesh_tls")

SERVER_IDENTITIES = (*SERVICE_PORT_OFFSETS, "gateway")
OUTSIDE_IDENTITY = "edge"  # the edge and the operator's tools: clients only
IDENTITIES = (*SERVER_IDENTITIES, OUTSIDE_IDENTITY)
DEFAULT_DOMAIN = "vidsynth.internal"
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


def dns_name(identity: str, domain: str) -> str:
    return f"{identity.replace('_', '-')}.{domain}"


class MeshTlsSettings(VidsynthSettings):
    """Mutual TLS between the services (turned on by `vidsynth up --tls`)."""

    mesh_tls: bool = Field(
        False,
        description="Services listen with TLS and require a client certificate from "
        "VIDSYNTH_MESH_TLS_CA_FILE; their clients present theirs. `vidsynth up --tls` sets it, with "
        "certificates from its development CA unless the files below are given.",
    )
    mesh_tls_ca_file: Path | None = Field(
        None, description="The CA certificate(s) (PEM) the mesh trusts for servers and clients alike."
    )
    mesh_tls_cert_dir: Path | None = Field(
        None,
        description="A directory with `<identity>.pem` (chain after the leaf) and `<identity>-key.pem` for "
        "session, validator, stage_runner, progress, cleanup, gateway and edge (the edge and `up`'s checks).",
    )
    mesh_tls_cert_file: Path | None = Field(
        None,
        description="Instead of a directory: this process's certificate (PEM), or under `vidsynth up` "
        "one shared by every service.",
    )
    mesh_tls_key_file: Path | None = Field(
        None, description="The private key (PEM) of VIDSYNTH_MESH_TLS_CERT_FILE."
    )
    mesh_tls_domain: str = Field(
        DEFAULT_DOMAIN,
        description="Servers' certificates name them `<service>.<domain>` (stage-runner for stage_runner); "
        "clients check that name.",
    )

    @model_validator(mode="after")
    def _files_usable(self) -> MeshTlsSettings:
        """What can be checked before knowing the identity fails here, at start."""
        pair = [p for p in (self.mesh_tls_cert_file, self.mesh_tls_key_file) if p]
        if len(pair) == 1:
            raise ValueError(
                "set both VIDSYNTH_MESH_TLS_CERT_FILE and VIDSYNTH_MESH_TLS_KEY_FILE, or neither"
            )
        if pair and self.mesh_tls_cert_dir:
            raise ValueError(
                "set VIDSYNTH_MESH_TLS_CERT_DIR or VIDSYNTH_MESH_TLS_CERT_FILE/_KEY_FILE, not both"
            )
        if not _DOMAIN.match(self.mesh_tls_domain):
            raise ValueError(f"VIDSYNTH_MESH_TLS_DOMAIN {self.mesh_tls_domain!r} is no DNS domain")
        certificates = bool(pair or self.mesh_tls_cert_dir)
        if certificates and not self.mesh_tls_ca_file:
            raise ValueError(
                "mesh certificates are set: set VIDSYNTH_MESH_TLS_CA_FILE to the CA that issued them"
            )
        if self.mesh_tls_ca_file and not certificates:
            raise ValueError(
                "VIDSYNTH_MESH_TLS_CA_FILE is set: set VIDSYNTH_MESH_TLS_CERT_DIR, or "
                "VIDSYNTH_MESH_TLS_CERT_FILE and VIDSYNTH_MESH_TLS_KEY_FILE, too"
            )
        if self.mesh_tls and not certificates:
            raise ValueError(
                "VIDSYNTH_MESH_TLS is on: set VIDSYNTH_MESH_TLS_CA_FILE and VIDSYNTH_MESH_TLS_CERT_DIR "
                "(or _CERT_FILE and _KEY_FILE)"
            )
        if self.mesh_tls_ca_file:
            load_ca_bundle(self.mesh_tls_ca_file)
        if self.mesh_tls_cert_dir and not self.mesh_tls_cert_dir.is_dir():
            raise ValueError(f"VIDSYNTH_MESH_TLS_CERT_DIR {self.mesh_tls_cert_dir} is no directory")
        if pair:
            check_certificate_files(pair[0], pair[1])
        return self

    @property
    def own_files(self) -> bool:
        """The operator brought the CA and certificates (else `up --tls` issues them)."""
        return self.mesh_tls_ca_file is not None

    def files_for(self, identity: str) -> CertificateFiles:
        ca = self.mesh_tls_ca_file or Path()
        directory = self.mesh_tls_cert_dir
        if directory:
            return CertificateFiles(directory / f"{identity}.pem", directory / f"{identity}-key.pem", ca)
        return CertificateFiles(self.mesh_tls_cert_file or Path(), self.mesh_tls_key_file or Path(), ca)


def settings_error(error: pydantic.ValidationError) -> str:
    return "; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors())


def _names_identity(names: set[str], name: str) -> bool:
    return name in names or f"*.{name.split('.', 1)[1]}" in names


@dataclass(frozen=True)
class MeshTls:
    """One identity's certificate, key and the CA, loaded and checked."""

    identity: str
    domain: str
    files: CertificateFiles
    ca_pem: bytes
    certificate_pem: bytes
    key_pem: bytes

    def server_name(self, identity: str) -> str:
        return dns_name(identity, self.domain)

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key_pem, self.certificate_pem)], root_certificates=self.ca_pem, require_client_auth=True
        )

    @functools.cached_property
    def _channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca_pem, self.key_pem, self.certificate_pem)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return self._channel_credentials

    def channel_options(self, service: str) -> list[tuple[str, str]]:
        """The server must present `service`'s identity, wherever its address points."""
        return [("grpc.ssl_target_name_override", self.server_name(service))]

    def client_context(self) -> ssl.SSLContext:
        """For HTTPS calls inside the mesh (httpx: pass the server's identity as the
        `sni_hostname` extension, since the URL holds its address)."""
        context = ssl.create_default_context(cafile=str(self.files.ca))
        context.load_cert_chain(self.files.certificate, self.files.key)
        return context

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.files.ca))
        context.load_cert_chain(self.files.certificate, self.files.key)
        context.verify_mode = ssl.CERT_REQUIRED
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def uvicorn_options(self) -> dict[str, object]:
        return {
            "ssl_certfile": str(self.files.certificate),
            "ssl_keyfile": str(self.files.key),
            "ssl_ca_certs": str(self.files.ca),
            "ssl_cert_reqs": ssl.CERT_REQUIRED,
        }


def load(identity: str, settings: MeshTlsSettings) -> MeshTls:
    """`identity`'s files, checked: readable, key matching, issued by the CA, valid now,
    usable as a client and, for a server, naming `<service>.<domain>`."""
    files = settings.files_for(identity)
    check_certificate_files(files.certificate, files.key)
    leaf = check_issued_by(files.certificate, files.ca)
    if not allows_usage(leaf, ExtendedKeyUsageOID.CLIENT_AUTH):
        raise TlsFileError(f"{files.certificate} does not allow TLS client use (extendedKeyUsage clientAuth)")
    if identity in SERVER_IDENTITIES:
        name = dns_name(identity, settings.mesh_tls_domain)
        if not allows_usage(leaf, ExtendedKeyUsageOID.SERVER_AUTH):
            raise TlsFileError(
                f"{files.certificate} does not allow TLS server use (extendedKeyUsage serverAuth), "
                f"which {identity} needs"
            )
        if not _names_identity(names_in(leaf), name):
            raise TlsFileError(
                f"{files.certificate} does not name {name} (subjectAltName DNS), which clients of {identity} check"
            )
    return MeshTls(
        identity,
        settings.mesh_tls_domain,
        files,
        files.ca.read_bytes(),
        files.certificate.read_bytes(),
        files.key.read_bytes(),
    )


_process: dict[str, MeshTls | None] = {}


def configure_process(identity: str) -> MeshTls | None:
    """This process's mesh TLS (None when off), read and checked once at start. Unusable
    settings end the process with a message naming the setting or file."""
    try:
        settings = MeshTlsSettings()
        tls = load(identity, settings) if settings.mesh_tls else None
    except pydantic.ValidationError as error:
        _cannot_start(identity, settings_error(error))
    except TlsFileError as error:
        _cannot_start(identity, str(error))
    _process["tls"] = tls
    return tls


def _cannot_start(identity: str, reason: str) -> NoReturn:
    log.error("mesh_tls.unusable", identity=identity, reason=reason)
    sys.stderr.write(f"vidsynth {identity}: cannot start: {reason}\n")
    raise SystemExit(2)


def current() -> MeshTls | None:
    """The mesh TLS this process uses as a client and server: what `configure_process` set,
    else (a process that is no service) the outside identity's when mesh TLS is on."""
    if "tls" not in _process:
        settings = MeshTlsSettings()
        _process["tls"] = load(OUTSIDE_IDENTITY, settings) if settings.mesh_tls else None
    return _process["tls"]
