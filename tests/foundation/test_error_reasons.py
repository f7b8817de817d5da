"""The error catalog is published as the proto enum vidsynth.v1.ErrorReason
(protos/vidsynth/v1/error_reason.proto), value for value with libs/common/errors.py."""

from __future__ import annotations

import re
from pathlib import Path

from libs.common.errors import CATALOG, ErrorSpec
from vidsynth.v1 import error_reason_pb2

PROTO = Path(__file__).resolve().parents[2] / "protos" / "vidsynth" / "v1" / "error_reason.proto"
PREFIX = "ERROR_REASON_"
# One value: its comment line, then `ERROR_REASON_X = N;`.
VALUE = re.compile(r"^  // (?P<comment>.*)\n  (?P<name>ERROR_REASON_\w+) = (?P<number>\d+);$", re.MULTILINE)


def expected_comment(spec: ErrorSpec) -> str:
    return f"{spec.grpc_code.name}, HTTP {spec.http_status}: {spec.message}"


def published() -> dict[str, tuple[int, str]]:
    """code -> (number, comment) as the .proto file writes them."""
    values = {m["name"]: (int(m["number"]), m["comment"]) for m in VALUE.finditer(PROTO.read_text())}
    return {
        name.removeprefix(PREFIX): value for name, value in values.items() if name != f"{PREFIX}UNSPECIFIED"
    }


def test_every_catalog_code_is_published_and_nothing_else() -> None:
    values = published()
    missing = [code for code in CATALOG if code not in values]
    extra = sorted(set(values) - set(CATALOG))
    next_number = max((number for number, _ in values.values()), default=0) + 1
    additions = "\n".join(
        f"  // {expected_comment(CATALOG[code])}\n  {PREFIX}{code} = {next_number + i};"
        for i, code in enumerate(missing)
    )
    assert not missing, (
        f"add these to enum ErrorReason in {PROTO.relative_to(PROTO.parents[3])} (new numbers, never "
        f"reuse one), then run `python -m scripts.gen_protos`:\n{additions}"
    )
    assert not extra, (
        f"{extra} are not in libs/common/errors.py: delete them from enum ErrorReason and add their "
        "numbers and names to a `reserved` line so they are never reused"
    )


def test_comments_give_each_codes_statuses_and_message() -> None:
    wrong = {
        code: f"  // {expected_comment(CATALOG[code])}"
        for code, (_, comment) in published().items()
        if code in CATALOG and comment != expected_comment(CATALOG[code])
    }
    assert not wrong, "change the comment above each of these values to:\n" + "\n".join(
        f"{PREFIX}{code}:\n{line}" for code, line in wrong.items()
    )


def test_numbers_are_unique_and_the_zero_value_is_unspecified() -> None:
    numbers = [number for number, _ in published().values()]
    assert len(numbers) == len(set(numbers))
    assert 0 not in numbers
    assert error_reason_pb2.ErrorReason.Name(0) == f"{PREFIX}UNSPECIFIED"


def test_generated_enum_matches_the_file() -> None:
    """The committed stubs carry the same values (the staleness test checks the rest)."""
    from_stubs = {
        name.removeprefix(PREFIX): number
        for name, number in error_reason_pb2.ErrorReason.items()
        if number != 0
    }
    assert from_stubs == {code: number for code, (number, _) in published().items()}
