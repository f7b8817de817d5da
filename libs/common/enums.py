"""Proto enum values as the HTTP API, logs and the CLI spell them."""

from __future__ import annotations

import functools
import re

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper


@functools.cache
def _prefix(enum_name: str) -> str:
    """buf style prefixes every value with the enum's name: `SessionState` -> `SESSION_STATE_`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum_name).upper() + "_"


def enum_label(enum_type: EnumTypeWrapper, value: int) -> str:
    """`SESSION_STATE_READY` -> `ready`."""
    return enum_type.Name(value).removeprefix(_prefix(enum_type.DESCRIPTOR.name)).lower()
