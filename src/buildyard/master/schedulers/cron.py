"""When a ``Nightly`` fires: Buildbot's minute/hour/dayOfMonth/month/dayOfWeek as a cron rule.

Buildbot turns its arguments into a cron line for croniter: integers and lists as they are,
strings as cron syntax (``"*"``, ``"*/15"``, ``"1-5"``, ``"1,15"``, ``"jan"``, ``"mon-fri"``).
Its ``dayOfWeek`` integers count from Monday = 0 (Python's ``weekday()``), while the cron syntax
inside a string counts from Sunday = 0, as croniter does; integers written inside a
comma-separated string are converted like integers. When both ``dayOfMonth`` and ``dayOfWeek``
are restricted, a day matching either one fires (cron's rule, croniter's default).

Times are wall-clock times in the master's local time zone (or the ``tz`` given), and each next
time is computed from wall-clock fields, so a rule keeps its local hour across daylight-saving
changes. A wall time that does not exist (skipped by a spring-forward) fires at the moment the
clock jumps over it; one that occurs twice fires once.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Sequence

__all__ = ["CronRule", "to_cron_field"]

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_ITEM = re.compile(r"^(?:(\*)|([0-9a-z]+)(?:-([0-9a-z]+))?)(?:/([0-9]+))?$")
# far enough for any rule that can fire (Feb 29 on a given weekday recurs within 28 years)
_HORIZON_YEARS = 30


def to_cron_field(value: object, *, day_of_week: bool = False) -> str:
    """Buildbot's conversion of one argument to a cron field (``_timeToCron``)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time value")
    if isinstance(value, int):
        return str((value + 1) % 7 if day_of_week else value)
    if isinstance(value, str):
        if not day_of_week:
            return value
        parts = []
        for part in value.split(","):
            try:
                parts.append(str((int(part) + 1) % 7))
            except ValueError:
                parts.append(part)
        return ",".join(parts)
    if isinstance(value, list | tuple):
        if day_of_week:
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise ValueError(f"a list of days of the week must hold integers: {value!r}")
            return ",".join(str((v + 1) % 7) for v in value)
        return ",".join(str(v) for v in value)
    raise ValueError(f"{value!r} is not an integer, a list of integers or a cron string")


def _number(token: str, names: Sequence[str]) -> int:
    if token.isdigit():
        return int(token)
    if token in names:
        return names.index(token) + (1 if names is _MONTHS else 0)
    raise ValueError(
        f"{token!r} is not a number" + (f" or a name ({', '.join(names)})" if names else "")
    )


def _parse_field(text: str, low: int, high: int, names: Sequence[str] = ()) -> frozenset[int]:
    values: set[int] = set()
    # cron allows 7 for Sunday
    top = 7 if names is _DAYS else high
    for item in text.strip().lower().split(","):
        m = _ITEM.match(item.strip())
        if m is None:
            raise ValueError(f"{item!r} is not a cron field item (n, a-b, */n, a-b/n)")
        star, first, last, step_text = m.groups()
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"step {step} in {item!r} must be positive")
        if star:
            start, stop = low, high
        else:
            start = _number(first, names)
            # "a/n" runs from a to the end of the range, as croniter reads it
            stop = _number(last, names) if last else (high if step_text else start)
        for bound in (start, stop):
            if not low <= bound <= top:
                raise ValueError(f"{bound} in {item!r} is out of range {low}-{high}")
        if stop < start:
            raise ValueError(f"range {item!r} runs backwards")
        values.update(range(start, stop + 1, step))
    if names is _DAYS and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


@dataclasses.dataclass(frozen=True, slots=True)
class CronRule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    # 0 = Sunday, as in cron
    weekdays: frozenset[int]
    # whether dayOfMonth / dayOfWeek was "*" (cron's rule on combining them depends on it)
    any_day: bool = True
    any_weekday: bool = True

    @classmethod
    def from_buildbot(
        cls,
        minute: object = 0,
        hour: object = "*",
        day_of_month: object = "*",
        month: object = "*",
        day_of_week: object = "*",
    ) -> CronRule:
        """The rule of a Nightly's arguments; ValueError naming the argument if one is wrong."""
        fields: dict[str, str] = {}
        for keyword, value in (
            ("minute", minute),
            ("hour", hour),
            ("dayOfMonth", day_of_month),
            ("month", month),
            ("dayOfWeek", day_of_week),
        ):
            try:
                fields[keyword] = to_cron_field(value, day_of_week=keyword == "dayOfWeek")
            except ValueError as exc:
                raise ValueError(f"{keyword}: {exc}") from None
        parsed: dict[str, frozenset[int]] = {}
        for keyword, low, high, names in (
            ("minute", 0, 59, ()),
            ("hour", 0, 23, ()),
            ("dayOfMonth", 1, 31, ()),
            ("month", 1, 12, _MONTHS),
            ("dayOfWeek", 0, 6, _DAYS),
        ):
            try:
                parsed[keyword] = _parse_field(fields[keyword], low, high, names)
            except ValueError as exc:
                raise ValueError(f"{keyword} {fields[keyword]!r}: {exc}") from None
        rule = cls(
            minutes=parsed["minute"],
            hours=parsed["hour"],
            days=parsed["dayOfMonth"],
            months=parsed["month"],
            weekdays=parsed["dayOfWeek"],
            any_day=fields["dayOfMonth"].strip() == "*",
            any_weekday=fields["dayOfWeek"].strip() == "*",
        )
        if not any(rule._day_matches(d) for m in rule.months for d in _real_dates(m)):
            raise ValueError("the rule names no day that exists (dayOfMonth and month)")
        return rule

    def _day_matches(self, day: datetime.date) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        # isoweekday: Monday = 1 ... Sunday = 7; cron counts Sunday = 0
        in_weekdays = day.isoweekday() % 7 in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return in_weekdays
        if self.any_weekday:
            return in_days
        return in_days or in_weekdays

    def matches(self, ts: float, tz: datetime.tzinfo | None = None) -> bool:
        """Whether the minute containing ``ts`` is one the rule fires in."""
        t = datetime.datetime.fromtimestamp(ts, tz)
        return t.minute in self.minutes and t.hour in self.hours and self._day_matches(t.date())

    def next_after(self, ts: float, tz: datetime.tzinfo | None = None) -> float:
        """The first firing time strictly after ``ts`` (epoch seconds), in ``tz``'s wall time
        (None: the local time zone)."""
        wall = datetime.datetime.fromtimestamp(ts, tz).replace(tzinfo=None, fold=0)
        t = wall.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
        limit = t.year + _HORIZON_YEARS
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        while t.year <= limit:
            if not self._day_matches(t.date()):
                t = datetime.datetime.combine(
                    t.date() + datetime.timedelta(days=1), datetime.time()
                )
                continue
            hour = next((h for h in hours if h >= t.hour), None)
            if hour is None:
                t = datetime.datetime.combine(
                    t.date() + datetime.timedelta(days=1), datetime.time()
                )
                continue
            if hour != t.hour:
                t = t.replace(hour=hour, minute=0)
            minute = next((m for m in minutes if m >= t.minute), None)
            if minute is None:
                t = t.replace(minute=0) + datetime.timedelta(hours=1)
                continue
            t = t.replace(minute=minute)
            for fold in (0, 1):
                at = _timestamp(t.replace(fold=fold), tz)
                if at > ts:
                    return at
            t += datetime.timedelta(minutes=1)
        raise ValueError("the rule never fires")


def _timestamp(wall: datetime.datetime, tz: datetime.tzinfo | None) -> float:
    return (wall if tz is None else wall.replace(tzinfo=tz)).timestamp()


def _real_dates(month: int) -> list[datetime.date]:
    # a leap year, so that February 29 counts as a day that exists
    first = datetime.date(2024, month, 1)
    return [
        first + datetime.timedelta(days=n)
        for n in range(31)
        if (first + datetime.timedelta(days=n)).month == month
    ]
