"""Mutual TLS for a `vidsynth up --tls` mesh: the operator's CA and certificates when the
settings name them, else one certificate per identity from the development CA under
<data-dir>/tls/mesh/, each reused while valid and issued anew when it expires, its names
change or the CA is replaced. Every identity's files are checked before any child starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydantic

from libs.common.mesh_tls import (
    IDENTITIES,
    OUTSIDE_IDENTITY,
    SERVER_IDENTITIES,
    MeshTls,
    MeshTlsSettings,
    dns_name,
    load,
    settings_error,
)
from libs.common.tls import Authority, TlsFileError, ensure_certificate

MESH_DIR = "mesh"


@dataclass(frozen=True)
class MeshTlsPlan:
    """What the children's environment gets, and the identity `up` itself (the edge and
    the health checks) presents; `edge` is None with mesh TLS off."""

    environment: dict[str, str]
    edge: MeshTls | None
    directory: Path | None  # the development certificates' directory, when `up` issued them


def operator_settings() -> MeshTlsSettings:
    """The VIDSYNTH_MESH_TLS_* settings `up` was started with; ValueError with the reason."""
    try:
        return MeshTlsSettings()
    except pydantic.ValidationError as error:
        raise ValueError(settings_error(error)) from None


def issue_development(authority: Authority, tls_dir: Path, domain: str, hosts: list[str]) -> Path:
    """`<identity>.pem` and `<identity>-key.pem` for every identity under tls_dir/mesh/: the
    services' for server and client use, naming `<service>.<domain>` and `hosts`; the
    edge's for client use only."""
    directory = tls_dir / MESH_DIR
    directory.mkdir(mode=0o700, exist_ok=True)
    for identity in IDENTITIES:
        name = dns_name(identity, domain)
        server = identity in SERVER_IDENTITIES
        ensure_certificate(
            authority,
            directory,
            identity,
            [name, *hosts] if server else [name],
            server=server,
            client=True,
            common_name=name,
        )
    return directory


def plan_mesh_tls(
    on: bool, own: MeshTlsSettings, authority: Authority | None, tls_dir: Path, hosts: list[str]
) -> MeshTlsPlan:
    """Mesh TLS for the children: off (as before `--tls`), the operator's files, or the
    development CA's (`authority`). Raises ValueError naming an unusable file."""
    if not on:
        return MeshTlsPlan({"VIDSYNTH_MESH_TLS": "false"}, None, None)
    environment = {"VIDSYNTH_MESH_TLS": "true"}
    directory = None
    settings = own
    if not own.own_files:
        if authority is None:
            raise ValueError("mesh TLS needs the development CA or VIDSYNTH_MESH_TLS_CA_FILE")
        directory = issue_development(authority, tls_dir, own.mesh_tls_domain, hosts)
        environment |= {
            "VIDSYNTH_MESH_TLS_CA_FILE": str(authority.path),
            "VIDSYNTH_MESH_TLS_CERT_DIR": str(directory),
        }
        settings = MeshTlsSettings(
            mesh_tls=True,
            mesh_tls_ca_file=authority.path,
            mesh_tls_cert_dir=directory,
            mesh_tls_domain=own.mesh_tls_domain,
        )
    try:
        for identity in SERVER_IDENTITIES:
            load(identity, settings)
        edge = load(OUTSIDE_IDENTITY, settings)
    except TlsFileError as error:
        raise ValueError(f"mesh TLS: {error}") from None
    return MeshTlsPlan(environment, edge, directory)
