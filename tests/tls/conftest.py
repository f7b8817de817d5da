"""One `vidsynth up --tls` mesh shared by the TLS tests of this package (a start costs
tens of seconds on a loaded machine)."""

from __future__ import annotations

import pytest

from tests.support.mesh_process import MeshProcess


@pytest.fixture(scope="package")
def mesh(tmp_path_factory):
    mesh = MeshProcess(
        tmp_path_factory.mktemp("tls") / "var", extra_env={"VIDSYNTH_PROCESSING_MODE": "simulation"}, tls=True
    )
    mesh.wait_up()
    yield mesh
    mesh.stop()
