"""Rule evaluation as a pure function: ``(policy, state, observed value, now, silenced)`` ->
the new state, its state changes and the notification (if any) to send. No I/O, no clock.

The state machine of one alert instance (a rule and a label set)::

    Normal --condition holds--> Pending --held for `for`--> Firing --stops holding--> Normal
       \\________________ `for` = 0 __________________/        (after `keep_firing`;   (resolved
    Pending --stops holding--> Normal (nothing is sent)          a resolved notice)      notice)

- **firing** notices are sent when an instance starts firing; under a silence none is sent, and
  the notice goes out at the first evaluation after the silence ends if it still fires;
- **reminders** every ``repeat`` seconds while it fires and has been announced (not under a
  silence);
- **resolved** notices when it stops firing, iff its firing was announced — also under a
  silence, so no receiver is left with an alert that never closes;
- **keep firing**: a firing instance whose condition stops holding keeps firing until the
  condition has not held for ``keep_firing`` seconds (against flapping);
- **no data** (``value`` None): with ``keep`` nothing changes (timers neither advance nor reset);
  ``ok`` and ``alerting`` make it count as the condition not holding / holding.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from apitally_hub.alerting.model import CONDITIONS, NoData, State

Notice = Literal["firing", "reminder", "resolved"]


@dataclass(frozen=True)
class Policy:
    condition: str
    threshold: float
    for_seconds: float = 0.0
    keep_firing_seconds: float = 0.0
    repeat_seconds: float = 0.0
    no_data: NoData = "keep"


@dataclass(frozen=True)
class AlertState:
    state: State = "normal"
    value: float | None = None
    pending_since: float | None = None
    firing_since: float | None = None
    last_true_at: float | None = None
    last_eval_at: float | None = None
    changed_at: float | None = None
    notified: bool = False
    last_notified_at: float | None = None
    resolved_at: float | None = None


@dataclass(frozen=True)
class Outcome:
    state: AlertState
    changes: tuple[tuple[State, State], ...] = ()
    """(from, to) state changes, in order."""
    notice: Notice | None = None


def condition_holds(policy: Policy, value: float | None) -> bool | None:
    """Whether the condition holds; None when it cannot be told (no data with ``keep``)."""
    if value is None:
        return None if policy.no_data == "keep" else policy.no_data == "alerting"
    return CONDITIONS[policy.condition](value, policy.threshold)


def evaluate(
    policy: Policy, state: AlertState, value: float | None, now: float, *, silenced: bool
) -> Outcome:
    holds = condition_holds(policy, value)
    s = replace(state, value=value, last_eval_at=now)
    changes: list[tuple[State, State]] = []

    def move(to: State, **fields: float | bool | None) -> AlertState:
        changes.append((s.state, to))
        return replace(s, state=to, changed_at=now, **fields)  # type: ignore[arg-type]

    if holds is True:
        s = replace(s, last_true_at=now)
        if s.state == "normal":
            if policy.for_seconds <= 0:
                s = move("firing", pending_since=now, firing_since=now, notified=False, resolved_at=None)
            else:
                s = move("pending", pending_since=now)
        elif (
            s.state == "pending"
            and s.pending_since is not None
            and now - s.pending_since >= policy.for_seconds
        ):
            s = move("firing", firing_since=now, notified=False, resolved_at=None)
    elif holds is False:
        if s.state == "pending":
            s = move("normal", pending_since=None)
        elif s.state == "firing":
            kept = s.last_true_at is not None and now - s.last_true_at < policy.keep_firing_seconds
            if not kept:
                announced = s.notified
                s = move("normal", pending_since=None, notified=False, resolved_at=now)
                return Outcome(s, tuple(changes), "resolved" if announced else None)

    notice: Notice | None = None
    if s.state == "firing" and not silenced:
        if not s.notified:
            notice = "firing"
            s = replace(s, notified=True, last_notified_at=now)
        elif (
            policy.repeat_seconds > 0
            and s.last_notified_at is not None
            and now - s.last_notified_at >= policy.repeat_seconds
        ):
            notice = "reminder"
            s = replace(s, last_notified_at=now)
    return Outcome(s, tuple(changes), notice)
