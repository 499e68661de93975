"""What an auditor can ask of the log (user, time range, text, event, error, feedback), as SQL.

`RecordFilter.of(...)` checks and normalises the filters once (bad input is a ValueError that
names it); `where(dialect)` turns them into a WHERE clause over `records AS r` for SQLite or
PostgreSQL (`Dialect`). Time bounds are compared
as text: every stored `ts` has one form (ISO-8601 UTC with microseconds), so string order is time
order and the `records_ts` index serves ranges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, cast, get_args

ANSWER_EVENTS: tuple[str, ...] = ("answer", "answer_error")
FEEDBACK_EVENT = "feedback"
CHECKPOINT_EVENT = "checkpoint"

Rating = Literal["up", "down"]
RATINGS: tuple[str, ...] = get_args(Rating)
FeedbackFilter = Literal["up", "down", "any", "none"]
FEEDBACK_FILTERS: tuple[str, ...] = get_args(FeedbackFilter)

# SQLite function registered on each reading connection: case-insensitive (Unicode casefold)
# substring test, which LIKE is not beyond ASCII. PostgreSQL has a SQL function of that name,
# created with its schema (lower(), with ß and ς folded as casefold does).
CONTAINS_FUNCTION = "enclave_contains"

# Feedback records by the answer they rate, read through the partial index on
# (json_extract(data, '$.record_id'), id) WHERE event = 'feedback': a pass over the feedback
# records only, done once per query (SQLite materialises an IN (subquery)), never per answer.
# INDEXED BY because, without statistics, SQLite would take the event index instead.
FEEDBACK_INDEX = "records_feedback_target"


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL of the two backends (SQLite, PostgreSQL); the rest is shared.

    Statements use `?` placeholders and the quoted column `"user"` on both (the PostgreSQL
    connection turns `?` into its own); `json_int`/`json_text` read one key of the `data` column.
    """

    name: str
    json_int_sql: str  # {col}, {key}: the key's value as an integer (None when it is not one)
    json_text_sql: str  # {col}, {key}: the key's value as text
    index_hint: str  # {index}: the hint that makes the planner take that index, or ""
    begin_read: str  # a transaction that reads one snapshot
    no_limit: int | None  # the LIMIT value that means "all"

    def json_int(self, col: str, key: str) -> str:
        return self.json_int_sql.format(col=col, key=key)

    def json_text(self, col: str, key: str) -> str:
        return self.json_text_sql.format(col=col, key=key)

    def feedback_records(self, alias: str) -> str:
        """`records AS alias` read through the feedback index."""
        return f"records AS {alias}{self.index_hint.format(index=FEEDBACK_INDEX)}"

    def rated_sql(self) -> str:
        """Ids of the answers that have feedback."""
        target = self.json_int("f.data", "record_id")
        return (
            f"SELECT {target} FROM {self.feedback_records('f')} "
            f"WHERE f.event = 'feedback' AND {target} IS NOT NULL"
        )

    def latest_rating_sql(self) -> str:
        """Ids of the answers whose newest feedback has the rating of the one parameter."""
        target, rating = self.json_int("f.data", "record_id"), self.json_text("f.data", "rating")
        if self.name == "sqlite":
            # SQLite takes the bare column `rating` from the row that holds max(f.id) of its group.
            return (
                f"SELECT rid FROM (SELECT {target} AS rid, max(f.id), {rating} AS rating "
                f"FROM {self.feedback_records('f')} WHERE f.event = 'feedback' GROUP BY rid"
                ") WHERE rating = ?"
            )
        return (
            f"SELECT rid FROM (SELECT DISTINCT ON ({target}) {target} AS rid, {rating} AS rating "
            f"FROM {self.feedback_records('f')} WHERE f.event = 'feedback' "
            f"ORDER BY {target}, f.id DESC) AS latest WHERE rating = ?"
        )


SQLITE = Dialect(
    name="sqlite",
    json_int_sql="json_extract({col}, '$.{key}')",
    json_text_sql="json_extract({col}, '$.{key}')",
    index_hint=" INDEXED BY {index}",
    begin_read="BEGIN",
    no_limit=-1,
)
# The functions named here are created with the PostgreSQL schema (audit.postgres).
POSTGRES = Dialect(
    name="postgres",
    json_int_sql="enclave_json_int({col}, '{key}')",
    json_text_sql="enclave_json_text({col}, '{key}')",
    index_hint="",
    begin_read="BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    no_limit=None,
)


def contains(haystack: object, needle: object) -> int:
    """`needle` (already casefolded) occurs in `haystack`, ignoring case."""
    if haystack is None or needle is None:
        return 0
    return int(str(needle) in str(haystack).casefold())


def format_ts(moment: datetime) -> str:
    """`moment` in the one stored form: ISO-8601 UTC with microseconds (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_moment(value: datetime | date | str, name: str, *, end_of_day: bool = False) -> datetime:
    """A datetime or date (or its ISO text) as an aware UTC datetime.

    A date alone means the start of that day (UTC), or with `end_of_day` the start of the next
    one, so that `until=2025-01-31` takes in the whole of the 31st. Raises ValueError naming
    `name` for anything else.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed: datetime | date = (
                date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
            )
        except ValueError:
            raise ValueError(
                f"{name}: {value!r} is not a date or time; use YYYY-MM-DD or an ISO-8601 time "
                "such as 2025-01-31T09:15:00+00:00 (times without an offset are UTC)"
            ) from None
    elif isinstance(value, datetime | date):
        parsed = value
    else:
        raise ValueError(f"{name} must be a date, a datetime or ISO text, not {type(value).__name__}")
    if isinstance(parsed, datetime):
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    start = datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC)
    return start + timedelta(days=1) if end_of_day else start


def _optional_text(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, not {type(value).__name__}")
    return value.strip() or None


@dataclass(frozen=True)
class RecordFilter:
    """Normalised filters. Build with `RecordFilter.of(...)`; every field None means "any"."""

    user: str | None = None
    since: str | None = None  # ts >= since
    before: str | None = None  # ts < before (the `until` bound, made exclusive)
    text: str | None = None  # casefolded
    events: tuple[str, ...] = ()
    has_error: bool | None = None
    feedback: FeedbackFilter | None = None

    @classmethod
    def of(
        cls,
        user: str | None = None,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        text: str | None = None,
        event: str | Sequence[str] | None = None,
        has_error: bool | None = None,
        feedback: str | None = None,
    ) -> RecordFilter:
        """Check and normalise. `until` is inclusive: a date takes in that whole day (UTC)."""
        start = None if since in (None, "") else parse_moment(since, "since")
        end = None
        if until not in (None, ""):
            # Only a bare date widens to the end of its day; a time is taken to the microsecond.
            is_date = not isinstance(until, datetime) and (
                isinstance(until, date) or len(str(until).strip()) == 10
            )
            end = parse_moment(until, "until", end_of_day=is_date)
            if not is_date:
                end += timedelta(microseconds=1)
        if start is not None and end is not None and start >= end:
            raise ValueError(f"since ({format_ts(start)}) is after until: the range holds no time")
        if isinstance(event, str):
            events: tuple[str, ...] = (event,) if event.strip() else ()
        elif event is None:
            events = ()
        else:
            events = tuple(e for e in event if e)
        for e in events:
            if not isinstance(e, str):
                raise ValueError(f"event must be text, not {type(e).__name__}")
        if has_error is not None and not isinstance(has_error, bool):
            raise ValueError(f"has_error must be True, False or None, not {has_error!r}")
        fb = _optional_text("feedback", feedback)
        if fb is not None and fb not in FEEDBACK_FILTERS:
            raise ValueError(f"feedback: {feedback!r} is not one of {', '.join(FEEDBACK_FILTERS)}")
        needle = _optional_text("text", text)
        return cls(
            user=_optional_text("user", user),
            since=None if start is None else format_ts(start),
            before=None if end is None else format_ts(end),
            text=None if needle is None else needle.casefold(),
            events=events,
            has_error=has_error,
            feedback=cast(FeedbackFilter | None, fb),
        )

    def where(self, dialect: Dialect = SQLITE) -> tuple[str, list[Any]]:
        """A WHERE clause over `records AS r` (always at least `1 = 1`) and its parameters."""
        terms: list[str] = []
        params: list[Any] = []
        if self.user is not None:
            terms.append('r."user" = ?')
            params.append(self.user)
        if self.since is not None:
            terms.append("r.ts >= ?")
            params.append(self.since)
        if self.before is not None:
            terms.append("r.ts < ?")
            params.append(self.before)
        if self.events:
            terms.append(f"r.event IN ({', '.join('?' * len(self.events))})")
            params.extend(self.events)
        if self.has_error is True:
            terms.append("r.error IS NOT NULL")
        elif self.has_error is False:
            terms.append("r.error IS NULL")
        if self.feedback is not None:
            # Feedback belongs to answers: asking about it narrows the search to them.
            terms.append(f"r.event IN ({', '.join('?' * len(ANSWER_EVENTS))})")
            params.extend(ANSWER_EVENTS)
            if self.feedback == "any":
                terms.append(f"r.id IN ({dialect.rated_sql()})")
            elif self.feedback == "none":
                terms.append(f"r.id NOT IN ({dialect.rated_sql()})")
            else:
                terms.append(f"r.id IN ({dialect.latest_rating_sql()})")
                params.append(self.feedback)
        if self.text is not None:
            terms.append(
                f"({CONTAINS_FUNCTION}(r.question, ?) "
                f"OR {CONTAINS_FUNCTION}({dialect.json_text('r.data', 'answer')}, ?))"
            )
            params.extend([self.text, self.text])
        return (" AND ".join(terms) or "1 = 1"), params

    def as_dict(self) -> dict[str, Any]:
        """The filters that are set, for an export's own audit record."""
        fields = {
            "user": self.user,
            "since": self.since,
            "before": self.before,
            "text": self.text,
            "events": list(self.events) or None,
            "has_error": self.has_error,
            "feedback": self.feedback,
        }
        return {k: v for k, v in fields.items() if v is not None}
