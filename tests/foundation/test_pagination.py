"""AIP-158 page tokens (libs/common/pagination.py): opaque, tied to their request, refused
with INVALID_ARGUMENT when forged, changed or reused elsewhere. Each list RPC pages through
its own data in tests/contracts/test_list_pagination.py."""

from __future__ import annotations

import base64
import json

import pytest

from libs.common.errors import VidsynthError
from libs.common.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    MAX_TOKEN_CHARS,
    decode_token,
    int_cursor,
    open_page,
)


def refused(call) -> VidsynthError:
    with pytest.raises(VidsynthError) as info:
        call()
    assert info.value.code == "INVALID_ARGUMENT"
    return info.value


def next_token(method: str, cursor: list, filters: tuple = ()) -> str:
    page = open_page(method, 1, "", int_cursor, filters)
    _, token = page.finish([cursor, ["more"]], key=lambda item: item)
    return token


def test_page_sizes_default_cap_and_refuse_negatives() -> None:
    assert open_page("ListX", 0, "", int_cursor).size == DEFAULT_PAGE_SIZE == 50
    assert open_page("ListX", 7, "", int_cursor).size == 7
    assert open_page("ListX", 10**9, "", int_cursor).size == MAX_PAGE_SIZE == 200
    assert refused(lambda: open_page("ListX", -1, "", int_cursor)).field_violations[0].field == "page_size"


def test_a_token_is_opaque_and_round_trips() -> None:
    token = next_token("ListJobs", [42], ("ses_a",))
    assert not token.isdigit() and "42" not in token
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert open_page("ListJobs", 5, token, int_cursor, ("ses_a",)).cursor == 42


def test_the_last_page_has_no_token() -> None:
    page = open_page("ListX", 3, "", int_cursor)
    assert page.limit == 4
    assert page.finish([[1], [2], [3]], key=lambda item: item) == ([[1], [2], [3]], "")
    items, token = page.finish([[1], [2], [3], [4]], key=lambda item: item)
    assert items == [[1], [2], [3]] and token


def test_a_token_from_another_rpc_or_other_filters_is_refused() -> None:
    token = next_token("ListJobs", [42], ("ses_a",))
    for method, filters in (("ListJobs", ("ses_b",)), ("ListJobs", ()), ("ListSessions", ("ses_a",))):
        error = refused(lambda m=method, f=filters: open_page(m, 0, token, int_cursor, f))
        assert error.field_violations[0].field == "page_token"


def test_changed_forged_and_oversized_tokens_are_refused() -> None:
    token = next_token("ListJobs", [42])
    raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[1] = [0]  # a cursor moved by hand keeps the old digest
    moved = base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    for bad in (moved, flipped, "42", "garbage!", "W10", token + "=", "A" * (MAX_TOKEN_CHARS + 1)):
        error = refused(lambda t=bad: open_page("ListJobs", 0, t, int_cursor))
        assert error.field_violations[0].field == "page_token", bad


def test_a_genuine_token_with_a_cursor_of_the_wrong_shape_is_refused() -> None:
    token = next_token("ListJobs", ["not-a-number"])
    assert decode_token("ListJobs", (), token) == ["not-a-number"]
    refused(lambda: open_page("ListJobs", 0, token, int_cursor))
    refused(lambda: open_page("ListJobs", 0, next_token("ListJobs", [-1]), int_cursor))
    refused(lambda: open_page("ListJobs", 0, next_token("ListJobs", [1, 2]), int_cursor))
