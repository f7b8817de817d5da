from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.edge.mesh import BODY_TIMEOUT, CONNECTION_CAP, GATEWAY_BURST, HEAD_TIMEOUT
from tests.support.mesh_process import MeshProcess


@pytest.fixture(scope="package")
def mesh(tmp_path_factory) -> Iterator[MeshProcess]:
    mesh = MeshProcess(
        tmp_path_factory.mktemp("edge") / "var",
        extra_env={
            "VIDSYNTH_EDGE_HEADER_TIMEOUT_SECONDS": str(HEAD_TIMEOUT),
            "VIDSYNTH_EDGE_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
            "VIDSYNTH_EDGE_MAX_CONNECTIONS_PER_ADDRESS": str(CONNECTION_CAP),
            # Unauthenticated requests are limited per client address: small, to see it quickly.
            "VIDSYNTH_GATEWAY_RATE_LIMIT_BURST": str(GATEWAY_BURST),
            "VIDSYNTH_GATEWAY_RATE_LIMIT_PER_SECOND": "0.5",
        },
    )
    mesh.wait_up()
    yield mesh
    mesh.stop()
