"""How the attacks campaign reports (scripts/reliability.py): every figure in its row, the
summary quoting the key ones, and a missed expectation shown as NO with its reason and
failing the run's verdict. The attacks themselves run against real meshes in the campaign
and in the suites they reuse."""

from __future__ import annotations

import datetime as dt

from scripts import reliability
from tests.reliability.attacks import AttackResult


def results() -> list[AttackResult]:
    held = AttackResult("image bombs: JPEG scans", "4 bombs", "each refused with 422 IMAGE_TOO_COMPLEX")
    held.figures = {"validator CPU per bomb": "0.05 s", "other user's upload": "0.30 s alone, 0.40 s during"}
    held.expect(True, "never shown")
    missed = AttackResult("revoked API key", "revoke while in use", "refused")
    missed.figures = {"refused everywhere after": "9.10 s"}
    missed.expect(False, "refused only after 9.10 s")
    return [held, missed]


def test_rows_summary_and_verdict() -> None:
    attacks = results()
    assert [r.held for r in attacks] == [True, False]
    page = reliability.render("test machine", [], None, {}, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), attacks)
    assert "## Attacks" in page
    assert (
        "| image bombs: JPEG scans | 4 bombs | each refused with 422 IMAGE_TOO_COMPLEX | validator CPU per "
        "bomb: 0.05 s; other user's upload: 0.30 s alone, 0.40 s during | yes |"
    ) in page
    assert "| NO: refused only after 9.10 s |" in page
    line = reliability.summary([], None, {}, attacks)["attacks"]
    assert line.startswith("1/2 held: ")
    assert "image bombs: JPEG scans: validator CPU per bomb 0.05 s, other user's upload 0.30 s alone" in line
    assert "revoked API key: refused everywhere after 9.10 s" in line


def test_no_attacks_no_section() -> None:
    page = reliability.render("test machine", [], None, {}, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), [])
    assert "## Attacks" not in page
    assert "attacks" not in reliability.summary([], None, {}, [])
