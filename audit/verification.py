"""Verification of the audit chain: every record's hash, every link, the head, and the purges.

`verify_chain` checks the rows of a log read in one snapshot; `audit.anchors` checks a log
against chain heads written down outside it. docs/audit-format.md states the rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from audit.query import CHECKPOINT_EVENT
from audit.records import GENESIS_HASH, canonical_json, stored_record_hash


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of `AuditLog.verify()`.

    `checked` counts the records found intact before the first bad one (all of them when `ok`);
    `first_bad_id` is the lowest id at which the chain is wrong: a record whose contents or link
    do not match, or the id of a record that is missing. `reason` says what is wrong, in words.
    `purged_through` is the chain anchor: records up to it were removed by retention purges, and
    the chain was verified from it (0: nothing purged).
    """

    ok: bool
    checked: int
    first_bad_id: int | None
    reason: str
    purged_through: int = 0


def verify_chain(
    rows: Iterable[tuple[Any, ...]],
    heads: list[tuple[Any, ...]],
    anchors: list[tuple[Any, ...]],
    allowances: list[tuple[Any, ...]],
) -> VerifyResult:
    if len(heads) != 1 or not isinstance(heads[0][0], int):
        return VerifyResult(False, 0, None, "the chain head row is missing or damaged")
    if len(anchors) != 1 or not isinstance(anchors[0][0], int) or not isinstance(anchors[0][1], str):
        return VerifyResult(False, 0, None, "the chain anchor row is missing or damaged")
    head_count, head_hash = heads[0]
    anchor, anchor_hash = anchors[0]
    expected_id, prev = anchor + 1, anchor_hash
    checkpoint: tuple[int, Any] | None = None  # the newest: (id, data)

    def result(ok: bool, last_good: int, first_bad: int | None, reason: str) -> VerifyResult:
        return VerifyResult(ok, max(last_good - anchor, 0), first_bad, reason, anchor)

    def place(record_id: int) -> str:
        if record_id - 1 == anchor and anchor:
            return f"right after the records purged up to record {anchor}"
        return f"after record {record_id - 1}" if record_id > 1 else "at the start"

    for row in rows:
        record_id, ts, event, user, question, error, data_text, prev_hash, stored_hash = row
        last_good = expected_id - 1
        if record_id != expected_id:
            if record_id < expected_id:
                first_bad, what = record_id, f"record {record_id} is out of sequence"
            else:
                first_bad, what = expected_id, f"record {expected_id} is missing"
            return result(
                False,
                last_good,
                first_bad,
                f"{what}: id {record_id} found where id {expected_id} belongs "
                f"({place(expected_id)}); a record was deleted or renumbered",
            )
        if prev_hash != prev:
            if record_id - 1 == anchor and anchor:
                before = f"the anchor hash of the purge (record {anchor})"
            elif record_id > 1:
                before = f"the hash of record {record_id - 1}"
            else:
                before = "the genesis hash"
            return result(
                False,
                last_good,
                record_id,
                f"record {record_id}: prev_hash does not match {before}; the chain is broken "
                "here (this link, or the record before it, was altered)",
            )
        try:
            data = json.loads(data_text)
            canonical = canonical_json(data) == data_text
        except (TypeError, ValueError):
            canonical = False
        if not canonical:
            return result(
                False,
                last_good,
                record_id,
                f"record {record_id}: data is not the canonical JSON it was written as "
                "(altered outside the audit log)",
            )
        try:
            # data_text is canonical (checked above), so the hashed text is built by
            # concatenation as docs/audit-format.md describes, without serialising data again.
            intact = (
                stored_record_hash(record_id, ts, event, user, question, error, data_text, prev_hash)
                == stored_hash
            )
        except (TypeError, ValueError):  # a value SQLite holds but JSON cannot (a BLOB put in by hand)
            intact = False
        if not intact:
            return result(
                False,
                last_good,
                record_id,
                f"record {record_id}: contents do not match its hash (a field was altered)",
            )
        if event == CHECKPOINT_EVENT:
            checkpoint = (record_id, data)
        prev = stored_hash
        expected_id += 1
    last = expected_id - 1
    if head_count > last:
        return result(
            False,
            last,
            last + 1,
            f"record {last + 1} is missing: the chain head counts {head_count} records but "
            f"the log ends at record {last} (the newest records were deleted)",
        )
    if head_count < last:
        return result(
            False,
            head_count,
            head_count + 1,
            f"record {head_count + 1} is not covered by the chain head, which counts "
            f"{head_count} records (records were added outside the audit log)",
        )
    if head_hash != prev:
        if not last:
            return result(False, 0, None, "the chain head of the empty log was altered")
        return result(
            False,
            last - 1,
            last,
            f"record {last}: its hash does not match the chain head's last hash "
            "(the record was replaced, or the head altered)",
        )
    if checkpoint is not None:
        data = checkpoint[1] if isinstance(checkpoint[1], dict) else {}
        named = (data.get("purged_through"), data.get("anchor_hash"))
        if named != (anchor, anchor_hash):
            return result(
                False,
                last,
                checkpoint[0],
                f"record {checkpoint[0]}, the newest checkpoint, vouches for a purge through "
                f"record {named[0]}, but the log is anchored at record {anchor}; the purge "
                "anchor was moved, or records were deleted, outside `enclave audit purge`",
            )
    elif anchor or anchor_hash != GENESIS_HASH:
        return result(
            False,
            last,
            anchor + 1,
            f"the log is anchored at record {anchor} (records up to it removed) but no "
            "checkpoint record vouches for that purge; records were deleted outside "
            "`enclave audit purge`",
        )
    if allowances:
        return result(
            False,
            last,
            None,
            f"a purge allowance (through record {allowances[0][0]}) was left open outside a "
            "purge; deletes are not blocked",
        )
    purged = f" after the purge of records 1–{anchor}" if anchor else ""
    noun = "record" if last - anchor == 1 else "records"
    return result(True, last, None, f"{last - anchor} {noun} verified{purged}; chain head matches")
