"""Schedules: intervals and five-field cron expressions, parsed exactly and asked for the next run;
bad ones refused with what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.schedule import Schedule

# A Monday, in UTC; cron times are local, so the cron cases compare naive local times.
MONDAY = datetime(2026, 12, 7, 10, 7, 30)


def cron_next(text: str, after: datetime = MONDAY) -> datetime:
    cron = Schedule.parse(text).cron
    assert cron is not None
    return cron.next_after(after)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15m", 900), ("1h", 3600), ("1h30m", 5400), ("2d", 172800), ("45s", 45), (" 1h  ", 3600)],
)
def test_intervals(text: str, seconds: int) -> None:
    schedule = Schedule.parse(text)
    assert schedule.interval == timedelta(seconds=seconds)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert schedule.next_after(start) == start + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("* * * * *", datetime(2026, 12, 7, 10, 8)),
        ("0 2 * * *", datetime(2026, 12, 8, 2, 0)),
        ("*/15 9-17 * * mon-fri", datetime(2026, 12, 7, 10, 15)),
        ("30 10 * * 1", datetime(2026, 12, 7, 10, 30)),
        ("0 9 * * sat,sun", datetime(2026, 12, 12, 9, 0)),
        ("0 9 * * 7", datetime(2026, 12, 13, 9, 0)),  # 7 is Sunday too
        ("0 0 1 jan *", datetime(2027, 1, 1, 0, 0)),
        ("0 0 31 * *", datetime(2026, 12, 31, 0, 0)),
        ("0 12 29 2 *", datetime(2028, 2, 29, 12, 0)),  # a leap day
        ("5,35 */6 * * *", datetime(2026, 12, 7, 12, 5)),
        ("0 0 13 * 5", datetime(2026, 12, 11, 0, 0)),  # both day fields: the 13th or a Friday
        ("0-10/5 11 * * *", datetime(2026, 12, 7, 11, 0)),
    ],
)
def test_cron_next_run(text: str, expected: datetime) -> None:
    assert cron_next(text) == expected


def test_cron_next_is_strictly_after_a_matching_minute() -> None:
    assert cron_next("7 10 * * *", MONDAY.replace(second=0)) == datetime(2026, 12, 8, 10, 7)


def test_cron_answers_in_local_time_as_an_aware_datetime() -> None:
    moment = datetime(2026, 12, 7, 10, 7, tzinfo=UTC)
    found = Schedule.parse("0 2 * * *").next_after(moment)
    assert found.tzinfo is not None and found > moment
    assert (found.astimezone().hour, found.astimezone().minute) == (2, 0)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("0 2 * *", "neither an interval"),
        ("hourly", "neither an interval"),
        ("0s", "longer than 0"),
        ("61 * * * *", "minute 61 is outside 0-59"),
        ("* 24 * * *", "hour 24 is outside 0-23"),
        ("* * 0 * *", "day of month 0 is outside 1-31"),
        ("* * * 13 *", "month 13 is outside 1-12"),
        ("* * * * 8", "day of week 8 is outside 0-7"),
        ("* * * * funday", "day of week 'funday' is not a number or a name"),
        ("*/0 * * * *", "minute step '0' is not a positive number"),
        ("10-5 * * * *", "minute range '10-5' runs backwards"),
        ("0 0 30 2 *", "no date ever matches it"),
    ],
)
def test_bad_schedules_are_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="schedule") as caught:
        Schedule.parse(text)
    assert says in str(caught.value)
    assert repr(text) in str(caught.value)
