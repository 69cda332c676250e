"""Nightly's firing times: Buildbot's arguments as cron fields, and the next time after a given
one across month, year, weekday and daylight-saving edges.

The expected times in UTC were checked against Buildbot 4.3 (croniter) with TZ=UTC."""

from __future__ import annotations

import datetime
import re
import zoneinfo

import pytest

from buildyard.master.schedulers.cron import CronRule, to_cron_field

UTC = datetime.UTC


def ts(*args: int, tz: datetime.tzinfo = UTC) -> float:
    y, mo, d, h, mi, s = (*args, 0, 0, 0)[:6]
    return datetime.datetime(y, mo, d, h, mi, s, tzinfo=tz).timestamp()


def nxt(rule: CronRule, *args: int, tz: datetime.tzinfo = UTC) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(rule.next_after(ts(*args, tz=tz), tz), tz)


def rule(
    minute: object = 0,
    hour: object = "*",
    dayOfMonth: object = "*",  # noqa: N803 - Buildbot's keyword
    month: object = "*",
    dayOfWeek: object = "*",  # noqa: N803 - Buildbot's keyword
) -> CronRule:
    return CronRule.from_buildbot(minute, hour, dayOfMonth, month, dayOfWeek)


@pytest.fixture
def paris() -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo("Europe/Paris")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone database")


def test_default_is_every_hour_on_the_hour() -> None:
    r = rule()
    assert nxt(r, 2024, 5, 1, 10, 0) == datetime.datetime(2024, 5, 1, 11, 0, tzinfo=UTC)
    assert nxt(r, 2024, 5, 1, 10, 59, 59) == datetime.datetime(2024, 5, 1, 11, 0, tzinfo=UTC)


def test_strictly_after_the_given_time() -> None:
    r = rule(minute=30, hour=3)
    assert nxt(r, 2024, 5, 1, 3, 30) == datetime.datetime(2024, 5, 2, 3, 30, tzinfo=UTC)
    assert nxt(r, 2024, 5, 1, 3, 29, 59) == datetime.datetime(2024, 5, 1, 3, 30, tzinfo=UTC)


def test_across_the_end_of_a_month_and_a_year() -> None:
    r = rule(minute=0, hour=0, dayOfMonth=1)
    assert nxt(r, 2024, 1, 31, 23, 0) == datetime.datetime(2024, 2, 1, 0, 0, tzinfo=UTC)
    assert nxt(r, 2024, 12, 15, 0, 0) == datetime.datetime(2025, 1, 1, 0, 0, tzinfo=UTC)


def test_day_31_skips_the_shorter_months() -> None:
    r = rule(minute=15, hour=[1, 13], dayOfMonth=31)
    assert nxt(r, 2024, 1, 31, 13, 15) == datetime.datetime(2024, 3, 31, 1, 15, tzinfo=UTC)
    assert nxt(r, 2024, 4, 1, 0, 0) == datetime.datetime(2024, 5, 31, 1, 15, tzinfo=UTC)


def test_february_29_waits_for_a_leap_year() -> None:
    r = rule(minute=0, hour=0, dayOfMonth=29, month=2)
    assert nxt(r, 2024, 3, 1, 0, 0) == datetime.datetime(2028, 2, 29, 0, 0, tzinfo=UTC)


def test_day_of_week_counts_from_monday_zero() -> None:
    # 2024-05-01 is a Wednesday
    saturday = rule(minute=5, hour=2, dayOfWeek=5)
    assert nxt(saturday, 2024, 5, 1, 0, 0) == datetime.datetime(2024, 5, 4, 2, 5, tzinfo=UTC)
    sunday = rule(minute=5, hour=2, dayOfWeek=6)
    assert nxt(sunday, 2024, 5, 1, 0, 0) == datetime.datetime(2024, 5, 5, 2, 5, tzinfo=UTC)
    mon_fri = rule(minute=5, hour=2, dayOfWeek=[0, 4])
    assert nxt(mon_fri, 2024, 5, 3, 3, 0) == datetime.datetime(2024, 5, 6, 2, 5, tzinfo=UTC)


def test_day_of_week_strings_are_cron_syntax_but_numbers_in_them_are_converted() -> None:
    # as in Buildbot: "6" in a string is Sunday (Monday = 0, converted), "sun" is Sunday,
    # "1-5" is taken as cron's Monday to Friday
    assert to_cron_field("6", day_of_week=True) == "0"
    assert to_cron_field("0,sun", day_of_week=True) == "1,sun"
    assert to_cron_field([0, 6], day_of_week=True) == "1,0"
    assert to_cron_field("1-5", day_of_week=True) == "1-5"
    weekdays = rule(minute=0, hour=12, dayOfWeek="mon-fri")
    assert nxt(weekdays, 2024, 5, 3, 13, 0) == datetime.datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
    sunday = rule(minute=0, hour=12, dayOfWeek="6")
    assert nxt(sunday, 2024, 5, 1, 0, 0) == datetime.datetime(2024, 5, 5, 12, 0, tzinfo=UTC)


def test_day_of_month_or_day_of_week_when_both_are_given() -> None:
    # the 1st, or any Monday (cron's rule)
    r = rule(minute=5, hour=2, dayOfMonth=1, dayOfWeek=0)
    assert nxt(r, 2024, 5, 1, 3, 0) == datetime.datetime(2024, 5, 6, 2, 5, tzinfo=UTC)
    assert nxt(r, 2024, 5, 27, 3, 0) == datetime.datetime(2024, 6, 1, 2, 5, tzinfo=UTC)


def test_cron_strings_steps_ranges_and_names() -> None:
    r = rule(minute="*/15", hour="9-17", dayOfWeek="mon-fri")
    assert nxt(r, 2024, 5, 3, 17, 45) == datetime.datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
    assert nxt(r, 2024, 5, 3, 9, 1) == datetime.datetime(2024, 5, 3, 9, 15, tzinfo=UTC)
    months = rule(minute="10", hour="*/5", dayOfMonth="1-7", month="jan,jul")
    assert nxt(months, 2024, 1, 7, 20, 10) == datetime.datetime(2024, 7, 1, 0, 10, tzinfo=UTC)
    offset = rule(minute="7/20")
    assert offset.minutes == frozenset({7, 27, 47})


def test_local_wall_time_is_kept_across_daylight_saving(paris: zoneinfo.ZoneInfo) -> None:
    r = rule(minute=0, hour=3)
    # 2024-03-31 02:00 CET jumps to 03:00 CEST; 2024-10-27 03:00 CEST falls back to 02:00 CET
    assert nxt(r, 2024, 3, 30, 12, 0, tz=paris) == datetime.datetime(
        2024, 3, 31, 3, 0, tzinfo=paris
    )
    assert nxt(r, 2024, 3, 31, 3, 0, tz=paris) == datetime.datetime(2024, 4, 1, 3, 0, tzinfo=paris)
    assert nxt(r, 2024, 10, 26, 12, 0, tz=paris) == datetime.datetime(
        2024, 10, 27, 3, 0, tzinfo=paris
    )


def test_a_skipped_wall_time_fires_at_the_jump(paris: zoneinfo.ZoneInfo) -> None:
    r = rule(minute=30, hour=2)
    at = r.next_after(ts(2024, 3, 30, 12, 0, tz=paris), paris)
    # 02:30 does not exist on 2024-03-31: it fires one hour after 01:30 CET, at 03:30 CEST
    assert at == ts(2024, 3, 31, 1, 30, tz=paris) + 3600
    assert r.next_after(at, paris) == ts(2024, 4, 1, 2, 30, tz=paris)


def test_a_repeated_wall_time_fires_once(paris: zoneinfo.ZoneInfo) -> None:
    r = rule(minute=30, hour=2)
    first = r.next_after(ts(2024, 10, 26, 12, 0, tz=paris), paris)
    assert first == datetime.datetime(2024, 10, 27, 2, 30, tzinfo=paris).timestamp()
    # the second 02:30 (CET, one hour later) does not fire again
    assert r.next_after(first, paris) == ts(2024, 10, 28, 2, 30, tz=paris)
    # from inside the repeated hour, the next firing is the next day
    assert r.next_after(first + 3600, paris) == ts(2024, 10, 28, 2, 30, tz=paris)


def test_matches_is_minute_granular() -> None:
    r = rule(minute=0, hour=[0, 12])
    assert r.matches(ts(2024, 5, 1, 12, 0, 59))
    assert not r.matches(ts(2024, 5, 1, 12, 1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"minute": 60}, "minute '60': 60 in '60' is out of range 0-59"),
        ({"hour": "25"}, "hour '25': 25 in '25' is out of range 0-23"),
        ({"dayOfMonth": 0}, "dayOfMonth '0': 0 in '0' is out of range 1-31"),
        ({"month": "13"}, "month '13': 13 in '13' is out of range 1-12"),
        ({"month": "foo"}, "month 'foo': 'foo' is not a number or a name"),
        ({"minute": "5-1"}, "minute '5-1': range '5-1' runs backwards"),
        ({"minute": "*/0"}, "minute '*/0': step 0 in '*/0' must be positive"),
        ({"hour": "L"}, "hour 'L': 'l' is not a number"),
        ({"hour": "1;2"}, "hour '1;2': '1;2' is not a cron field item"),
        ({"minute": 1.5}, "minute: 1.5 is not an integer"),
        ({"dayOfWeek": ["mon"]}, "dayOfWeek: a list of days of the week must hold integers"),
        ({"dayOfMonth": 30, "month": 2}, "the rule names no day that exists"),
    ],
)
def test_bad_fields_say_which_and_why(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        rule(**kwargs)
