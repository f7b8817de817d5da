"""The fair rule and its forecast on their own (fair_share.py), with hand-worked timelines:
who starts next, each waiting job's place in line and ETA."""

from __future__ import annotations

from services.stage_runner.fair_share import Forecast, Running, Waiting, forecast, next_to_run


def jobs(user: str, count: int, seconds: float) -> list[Waiting]:
    return [Waiting(f"{user}-{i}", user, seconds) for i in range(count)]


def test_the_user_running_fewest_jobs_goes_next_ties_by_arrival():
    alice, bob = jobs("alice", 3, 1), jobs("bob", 1, 1)
    assert next_to_run(alice + bob, {}, None, {}) == alice[0]
    assert next_to_run(alice + bob, {"alice": 1}, None, {}) == bob[0]
    assert next_to_run(bob + alice, {}, None, {}) == bob[0]
    assert next_to_run(alice + bob, {"alice": 2, "bob": 2}, None, {}) == alice[0]


def test_among_users_running_as_many_the_one_served_longest_ago_goes_first():
    alice, bob = jobs("alice", 3, 1), jobs("bob", 1, 1)
    assert next_to_run(alice + bob, {}, None, {"alice": 7}) == bob[0]
    assert next_to_run(alice + bob, {}, None, {"alice": 7, "bob": 8}) == alice[0]
    assert next_to_run(alice + bob, {"bob": 1}, None, {"alice": 7}) == alice[0]


def test_a_user_whose_only_job_ends_does_not_keep_the_slot():
    # One slot: alice's job (60 s left) runs, four more of hers wait; bob arrives last.
    alice, bob = jobs("alice", 4, 60), jobs("bob", 1, 5)
    ahead = forecast(alice + bob, [Running("alice", 60)], 1, None, {"alice": 0})
    assert ahead["bob-0"] == Forecast(1, 60, 65)
    assert [ahead[f"alice-{i}"].position for i in range(4)] == [2, 3, 4, 5]


def test_users_at_their_running_cap_are_skipped_unless_resuming():
    alice, bob = jobs("alice", 2, 1), jobs("bob", 1, 1)
    assert next_to_run(alice, {"alice": 1}, 1, {}) is None
    assert next_to_run(alice + bob, {"alice": 1}, 1, {}) == bob[0]
    resumed = Waiting("alice-r", "alice", 1, resumed=True)
    assert next_to_run([*bob, resumed], {"alice": 5}, 1, {}) == resumed


def test_another_users_job_is_next_behind_one_user_with_many():
    # Alice runs two jobs (100 s and 200 s left) on two slots and has four more waiting.
    alice, bob = jobs("alice", 4, 100), jobs("bob", 1, 10)
    ahead = forecast(alice + bob, [Running("alice", 100), Running("alice", 200)], 2, None, {})
    # t=100 a slot frees: alice runs one, bob none -> bob (100..110); t=110 alice-0
    # (110..210); t=200 alice-1 (200..300); t=210 alice-2 (..310); t=300 alice-3 (..400).
    assert ahead == {
        "bob-0": Forecast(1, 100, 110),
        "alice-0": Forecast(2, 110, 210),
        "alice-1": Forecast(3, 200, 300),
        "alice-2": Forecast(4, 210, 310),
        "alice-3": Forecast(5, 300, 400),
    }


def test_a_free_slot_goes_to_another_user_while_one_is_at_the_cap():
    # Two slots, one user may run one job: alice's hour-long job runs, five more wait.
    alice, bob = jobs("alice", 5, 3600), jobs("bob", 1, 30)
    ahead = forecast(alice + bob, [Running("alice", 3600)], 2, 1, {})
    assert ahead["bob-0"] == Forecast(1, 0, 30)
    # Alice's next job waits for her own, not for a slot.
    assert ahead["alice-0"] == Forecast(2, 3600, 7200)
    assert [ahead[f"alice-{i}"].position for i in range(5)] == [2, 3, 4, 5, 6]
    assert ahead["alice-4"].eta_seconds == 6 * 3600


def test_one_user_alone_keeps_plain_fifo():
    alice = jobs("alice", 3, 10)
    ahead = forecast(alice, [Running("alice", 5)], 1, None, {})
    assert ahead == {
        "alice-0": Forecast(1, 5, 15),
        "alice-1": Forecast(2, 15, 25),
        "alice-2": Forecast(3, 25, 35),
    }
