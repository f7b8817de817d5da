"""Each RPC's declared access level, read straight from the .proto files: protos/ is compiled
here with protoc into a FileDescriptorSet and its options decoded in a descriptor pool of
their own, so tests check the services against the protos, not against the servers' own
reading of them (libs/common/access.py) or the generated stubs."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
ACCESS_OPTION = "vidsynth.v1.access"


@dataclass(frozen=True)
class DeclaredRpc:
    service: str  # full name, e.g. "vidsynth.internal.v1.SessionInternalService"
    name: str
    access: str  # "ACCESS_USER", "ACCESS_ADMIN", "ACCESS_INTERNAL" or "ACCESS_UNSPECIFIED"
    client_streaming: bool
    server_streaming: bool

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"


def compile_protos() -> descriptor_pb2.FileDescriptorSet:
    protos = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "set.pb"
        well_known = str(resources.files("grpc_tools") / "_proto")
        args = [
            "protoc",
            f"-I{PROTOS}",
            f"-I{well_known}",
            "--include_imports",
            f"--descriptor_set_out={out}",
        ]
        if protoc.main([*args, *protos]) != 0:
            raise RuntimeError("protoc could not compile protos/")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def declared_rpcs() -> list[DeclaredRpc]:
    """Every RPC of every vidsynth service in protos/, with its declared access level."""
    files = compile_protos().file
    pool = descriptor_pool.DescriptorPool()
    for file in files:
        pool.Add(file)
    classes = message_factory.GetMessages(list(files), pool=pool)
    method_options = classes["google.protobuf.MethodOptions"]
    extension = pool.FindExtensionByName(ACCESS_OPTION)
    found = []
    for file in files:
        if not file.package.startswith("vidsynth."):
            continue
        for service in file.service:
            for method in service.method:
                options = method_options.FromString(method.options.SerializeToString())
                level = extension.enum_type.values_by_number[options.Extensions[extension]].name
                found.append(
                    DeclaredRpc(
                        f"{file.package}.{service.name}",
                        method.name,
                        level,
                        method.client_streaming,
                        method.server_streaming,
                    )
                )
    return found
