"""A stand-in for `grpcurl` (not packaged for Debian, npm or PyPI except as a third-party
wrapper around an unverifiable binary), so the README's grpcurl lines run as written.

It does what grpcurl does with the subset the README uses, through server reflection alone
(no protos): `list [SERVICE]`, `describe SYMBOL`, and calling `pkg.Service/Method` with
`-d JSON`, `-H "name: value"`, `-plaintext` or `-cacert FILE`. Like grpcurl it asks
reflection v1 first and falls back to v1alpha, prints responses as JSON (camelCase names,
defaults omitted), and prints `ERROR: Code: ... Message: ...` and exits non-zero on a
failed call.

    python -m tests.support.grpcurl -plaintext 127.0.0.1:50051 list
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

REFLECTION_METHOD = "/grpc.reflection.{}.ServerReflection/ServerReflectionInfo"
# grpcurl's exit status for a call that failed with a gRPC status is 64 + the code.
FAILED_CALL_EXIT_BASE = 64


@dataclass
class Arguments:
    address: str = ""
    verb: list[str] = field(default_factory=list)
    plaintext: bool = False
    ca_file: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    data: str = ""


def parse(argv: list[str]) -> Arguments:
    args = Arguments()
    items = iter(argv)
    for item in items:
        if item == "-plaintext":
            args.plaintext = True
        elif item == "-cacert":
            args.ca_file = next(items)
        elif item == "-H":
            name, _, value = next(items).partition(":")
            args.headers.append((name.strip().lower(), value.strip()))
        elif item == "-d":
            args.data = next(items)
        elif item.startswith("-"):
            raise SystemExit(f"grpcurl stand-in: unsupported flag {item}")
        elif not args.address:
            args.address = item
        else:
            args.verb.append(item)
    return args


class _ReflectionStub:
    """What ProtoReflectionDescriptorDatabase calls, on a chosen reflection version (the
    v1 and v1alpha messages are the same on the wire)."""

    def __init__(self, channel: grpc.Channel, version: str) -> None:
        self.ServerReflectionInfo = channel.stream_stream(
            REFLECTION_METHOD.format(version),
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )


def reflection_database(channel: grpc.Channel) -> tuple[ProtoReflectionDescriptorDatabase, list[str]]:
    database = ProtoReflectionDescriptorDatabase(channel)
    for version in ("v1", "v1alpha"):
        database._stub = _ReflectionStub(channel, version)
        try:
            return database, sorted(database.get_services())
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNIMPLEMENTED or version == "v1alpha":
                raise
    raise AssertionError("unreachable")


def open_channel(args: Arguments) -> grpc.Channel:
    if args.plaintext:
        return grpc.insecure_channel(args.address)
    roots = open(args.ca_file, "rb").read() if args.ca_file else None  # noqa: SIM115
    return grpc.secure_channel(args.address, grpc.ssl_channel_credentials(root_certificates=roots))


def call(channel: grpc.Channel, pool: descriptor_pool.DescriptorPool, args: Arguments, target: str) -> int:
    service_name, _, method_name = target.replace("/", ".").rpartition(".")
    method = pool.FindServiceByName(service_name).methods_by_name[method_name]
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    request = json_format.Parse(args.data or "{}", request_class())
    path = f"/{service_name}/{method_name}"
    kind = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
    }[(method.client_streaming, method.server_streaming)]
    stub = kind(
        path,
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    try:
        replies = stub(request, metadata=args.headers, timeout=30)
        for reply in replies if method.server_streaming else [replies]:
            print(json_format.MessageToJson(reply, indent=2))
    except grpc.RpcError as error:
        print(f"ERROR:\n  Code: {error.code().name.title().replace('_', '')}\n  Message: {error.details()}")
        return FAILED_CALL_EXIT_BASE + error.code().value[0]
    return 0


def main(argv: list[str]) -> int:
    args = parse(argv)
    with open_channel(args) as channel:
        database, services = reflection_database(channel)
        pool = descriptor_pool.DescriptorPool(database)
        verb = args.verb or ["list"]
        if verb[0] == "list" and len(verb) == 1:
            print("\n".join(services))
        elif verb[0] == "list":
            service = pool.FindServiceByName(verb[1])
            print("\n".join(f"{service.full_name}.{m.name}" for m in service.methods))
        elif verb[0] == "describe":
            symbol = verb[1] if len(verb) > 1 else ""
            print(f"{symbol} is defined in {database.FindFileContainingSymbol(symbol).name}")
        else:
            return call(channel, pool, args, verb[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
