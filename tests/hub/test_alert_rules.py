"""The pure rule evaluation (``alerting.rules.evaluate``), without I/O: every transition of the
state machine, pending and keep-firing periods, no-data policies, reminders and silences, and
invariants over random observation sequences."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apitally_hub.alerting.rules import AlertState, Outcome, Policy, condition_holds, evaluate

GT0 = Policy(">", 0)


def run(
    policy: Policy, values: Sequence[float | None], *, step: float = 60.0, silenced: Sequence[bool] = ()
) -> list[Outcome]:
    state, outcomes = AlertState(), []
    for index, value in enumerate(values):
        mute = silenced[index] if index < len(silenced) else False
        outcome = evaluate(policy, state, value, index * step, silenced=mute)
        outcomes.append(outcome)
        state = outcome.state
    return outcomes


def states(outcomes: list[Outcome]) -> list[str]:
    return [o.state.state for o in outcomes]


def notices(outcomes: list[Outcome]) -> list[str | None]:
    return [o.notice for o in outcomes]


@pytest.mark.parametrize(
    ("condition", "value", "holds"),
    [
        (">", 1, True),
        (">", 0, False),
        (">=", 0, True),
        (">=", -1, False),
        ("<", -1, True),
        ("<", 0, False),
        ("<=", 0, True),
        ("<=", 0.5, False),
    ],
)
def test_conditions(condition: str, value: float, holds: bool) -> None:
    assert condition_holds(Policy(condition, 0), value) is holds


def test_fires_at_once_without_a_pending_period_and_resolves() -> None:
    outcomes = run(GT0, [0, 3, 5, 0, 0])
    assert states(outcomes) == ["normal", "firing", "firing", "normal", "normal"]
    assert notices(outcomes) == [None, "firing", None, "resolved", None]
    assert outcomes[1].changes == (("normal", "firing"),) and outcomes[3].changes == (("firing", "normal"),)
    firing = outcomes[2].state
    assert (firing.firing_since, firing.value, firing.notified) == (60, 5, True)
    assert outcomes[3].state.resolved_at == 180 and not outcomes[3].state.notified


def test_pending_period_must_hold_before_firing() -> None:
    policy = Policy(">", 100, for_seconds=120)
    outcomes = run(policy, [150, 150, 150, 150])
    assert states(outcomes) == ["pending", "pending", "firing", "firing"]
    assert notices(outcomes) == [None, None, "firing", None]
    assert outcomes[2].state.pending_since == 0 and outcomes[2].state.firing_since == 120


def test_pending_that_stops_holding_goes_back_to_normal_silently() -> None:
    outcomes = run(Policy(">", 100, for_seconds=120), [150, 50, 150, 150, 150])
    assert states(outcomes) == ["pending", "normal", "pending", "pending", "firing"]
    assert notices(outcomes) == [None, None, None, None, "firing"]
    assert outcomes[1].changes == (("pending", "normal"),)


def test_keep_firing_bridges_short_gaps() -> None:
    policy = Policy(">", 0, keep_firing_seconds=150)
    outcomes = run(policy, [1, 0, 0, 1, 0, 0, 0])
    # last true at 180; false at 240 and 300 (< 150 s), resolved at 360 (180 s)
    assert states(outcomes) == ["firing", "firing", "firing", "firing", "firing", "firing", "normal"]
    assert notices(outcomes) == ["firing", None, None, None, None, None, "resolved"]


def test_no_data_keep_changes_nothing() -> None:
    policy = Policy(">", 100, for_seconds=120)
    outcomes = run(policy, [150, None, None, 150])
    assert states(outcomes) == ["pending", "pending", "pending", "firing"]  # the timer kept running
    firing = run(Policy(">", 100), [150, None, None, None])
    assert states(firing) == ["firing"] * 4 and notices(firing) == ["firing", None, None, None]
    idle = run(Policy(">", 100), [None, None, 50, None])
    assert states(idle) == ["normal"] * 4 and all(not o.changes for o in idle)


def test_no_data_ok_resolves_and_alerting_fires() -> None:
    ok = run(Policy(">", 100, no_data="ok"), [150, None])
    assert states(ok) == ["firing", "normal"] and notices(ok) == ["firing", "resolved"]
    alerting = run(Policy("<", 0.9, no_data="alerting"), [None, None, 0.95])
    assert states(alerting) == ["firing", "firing", "normal"]


def test_an_idle_endpoint_does_not_flap() -> None:
    """Sparse traffic on a slow endpoint: values between long stretches of no data."""
    values: list[float | None] = [900, None, None, None, 850, None, None, 950, None, None]
    outcomes = run(Policy(">", 500), values)
    assert notices(outcomes) == ["firing"] + [None] * 9
    assert all(o.changes == () for o in outcomes[1:])


def test_reminders_while_firing() -> None:
    outcomes = run(Policy(">", 0, repeat_seconds=120), [1, 1, 1, 1, 1, 0])
    assert notices(outcomes) == ["firing", None, "reminder", None, "reminder", "resolved"]
    assert run(Policy(">", 0), [1] * 5)[-1].notice is None  # repeat 0: no reminders


def test_silence_mutes_firing_until_it_ends() -> None:
    outcomes = run(GT0, [1, 1, 1, 0], silenced=[True, True, False, False])
    assert notices(outcomes) == [None, None, "firing", "resolved"]
    # fired and resolved within the silence: nobody hears anything
    quiet = run(GT0, [1, 1, 0], silenced=[True, True, True])
    assert notices(quiet) == [None, None, None] and states(quiet)[-1] == "normal"


def test_silence_does_not_swallow_the_resolved_notice_of_an_announced_alert() -> None:
    outcomes = run(Policy(">", 0, repeat_seconds=60), [1, 1, 1, 0], silenced=[False, True, True, True])
    assert notices(outcomes) == ["firing", None, None, "resolved"]  # no reminders while silenced


def test_a_restart_continues_from_the_persisted_state() -> None:
    """The evaluator persists the state; evaluating again from it does not notify twice."""
    first = evaluate(GT0, AlertState(), 3, 0, silenced=False)
    assert first.notice == "firing"
    again = evaluate(GT0, first.state, 3, 60, silenced=False)
    assert again.notice is None and again.changes == ()


@given(
    st.lists(st.one_of(st.none(), st.integers(0, 3)), max_size=60),
    st.integers(0, 4),
    st.integers(0, 3),
    st.integers(0, 5),
    st.sampled_from(["keep", "ok", "alerting"]),
    st.lists(st.booleans(), max_size=60),
)
def test_invariants(
    values: list[int | None],
    for_steps: int,
    keep_steps: int,
    repeat_steps: int,
    no_data: str,
    silenced: list[bool],
) -> None:
    policy = Policy(">", 1, for_steps * 60.0, keep_steps * 60.0, repeat_steps * 60.0, no_data)  # type: ignore[arg-type]
    outcomes = run(policy, values, silenced=silenced)
    open_alert = False
    previous = AlertState()
    for index, outcome in enumerate(outcomes):
        s = outcome.state
        # notices form firing (reminder)* resolved episodes, never out of order
        if outcome.notice == "firing":
            assert not open_alert and s.state == "firing"
            open_alert = True
        elif outcome.notice == "reminder":
            assert open_alert and s.state == "firing"
        elif outcome.notice == "resolved":
            assert open_alert and s.state == "normal"
            open_alert = False
        assert s.notified == open_alert
        # firing only after the condition held for the pending period
        if s.state == "firing" and previous.state != "firing":
            assert s.pending_since is not None and index * 60 - s.pending_since >= policy.for_seconds
        # no data with "keep" changes no state
        if values[index] is None and no_data == "keep":
            assert s.state == previous.state and outcome.changes == ()
        # each change starts where the previous state was
        if outcome.changes:
            assert outcome.changes[0][0] == previous.state and outcome.changes[-1][1] == s.state
        else:
            assert s.state == previous.state
        mute = silenced[index] if index < len(silenced) else False
        if mute:
            assert outcome.notice in (None, "resolved")
        previous = s
