"""When a source syncs: an interval ("15m", "1h30m", "2d") or a five-field cron expression
("0 2 * * 1-5"), parsed exactly and asked for the next run after a moment.

Cron is Vixie cron's: minute, hour, day of month, month, day of week, each `*`, a number, a range
`a-b`, a step `*/n` or `a-b/n`, or a comma list of those; months and days may be named (`jan`,
`mon`); day of week 0 and 7 are Sunday; when both day fields are restricted a day matching either
runs. Cron times are the server's local time; intervals count from the last run's start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["Schedule"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL = re.compile(r"(?:\d+[smhd])+")
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (name, lowest, highest, names for lowest upwards)
_FIELDS: tuple[tuple[str, int, int, list[str]], ...] = (
    ("minute", 0, 59, []),
    ("hour", 0, 23, []),
    ("day of month", 1, 31, []),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_SEARCH_YEARS = 8  # "0 0 29 2 1" (29 February on a Monday) can be years away; none: an error


def _number(text: str, field: str, low: int, high: int, names: list[str]) -> int:
    lowered = text.lower()
    if lowered in names:
        return low + names.index(lowered)
    if not text.isdigit():
        raise ValueError(
            f"{field} {text!r} is not a number" + (f" or a name ({names[0]}...)" if names else "")
        )
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{field} {value} is outside {low}-{high}")
    return value


def _field(text: str, field: str, low: int, high: int, names: list[str]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        spec, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"{field} step {step_text!r} is not a positive number")
            step = int(step_text)
        if spec == "*":
            first, last = low, high
        elif "-" in spec:
            a, _, b = spec.partition("-")
            first, last = _number(a, field, low, high, names), _number(b, field, low, high, names)
            if first > last:
                raise ValueError(f"{field} range {spec!r} runs backwards")
        else:
            first = _number(spec, field, low, high, names)
            last = high if step_text else first  # "5/15": from 5 every 15
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class _Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is "*"
    any_weekday: bool  # day of week is "*"

    def day_matches(self, moment: datetime) -> bool:
        by_date = moment.day in self.days
        by_weekday = (moment.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return by_date and by_weekday
        return by_date or by_weekday

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute after `moment` (naive local time)."""
        t = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = moment + timedelta(days=366 * _SEARCH_YEARS)
        while t <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0)
            elif not self.day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
            elif t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        raise ValueError("no time matches it")


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule; `text` is what was written."""

    text: str
    interval: timedelta | None = None
    cron: _Cron | None = None

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """The schedule `text` names; ValueError saying what is wrong with it."""
        written = " ".join(text.split())
        if _INTERVAL.fullmatch(written):
            seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhd])", written))
            if seconds == 0:
                raise ValueError(f"schedule {text!r}: an interval must be longer than 0")
            return cls(written, interval=timedelta(seconds=seconds))
        fields = written.split(" ")
        if len(fields) != 5:
            raise ValueError(
                f"schedule {text!r} is neither an interval (15m, 1h, 1h30m, 2d) nor a cron expression "
                "of five fields (minute hour day-of-month month day-of-week, e.g. '0 2 * * *')"
            )
        try:
            parsed = [_field(f, *spec) for f, spec in zip(fields, _FIELDS, strict=True)]
        except ValueError as exc:
            raise ValueError(f"schedule {text!r}: {exc}") from None
        weekdays = frozenset(d % 7 for d in parsed[4])
        minutes, hours, days, months, _ = parsed
        cron = _Cron(minutes, hours, days, months, weekdays, fields[2] == "*", fields[4] == "*")
        try:
            cron.next_after(datetime(2000, 1, 1))
        except ValueError:
            raise ValueError(f"schedule {text!r}: no date ever matches it") from None
        return cls(written, cron=cron)

    def next_after(self, moment: datetime) -> datetime:
        """The next run after `moment` (an aware datetime), as an aware datetime in local time."""
        if self.interval is not None:
            return moment + self.interval
        assert self.cron is not None
        local = moment.astimezone()
        naive = self.cron.next_after(local.replace(tzinfo=None))
        # astimezone() on a naive time reads it as local time, with the offset in force then.
        return naive.astimezone()
