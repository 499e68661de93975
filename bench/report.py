"""Rewrite the generated blocks of docs/benchmarks.md from the benchmarks' result files.

    .venv/bin/python bench/report.py [--ingest FILE] [--retrieval FILE] [--quality FILE]
        [--load FILE] [--sources FILE] [--grounding FILE] [--grounding-before FILE]
        [--doc docs/benchmarks.md | --standalone FILE]

Each block sits between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` (NAME: summary, ingest,
retrieval, quality, load, sources, grounding); only the text between the markers is replaced, everything else in the
file is written by hand and kept. A marker missing from the file is an error naming it. Without a
file argument the newest full (not -quick) result of each benchmark in bench/results/ is used.
Every figure is printed beside the comparison its benchmark measured in the same run (plain
LangChain, direct vLLM, published reference scores) and their ratio, with the run's date,
machine and load average; a run below the benchmark's full size is labelled as such.
The grounding block sets the newest grounding result (bench/grounding.py) beside the "before"
one (`grounding-baseline-<date>.json`, the code before the issue 16 changes), figure by figure.
--standalone writes the blocks, one after another, to a file of their own instead (what
`make bench-quick` does, so that a smoke run never lands in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
BLOCKS = ("summary", "ingest", "retrieval", "quality", "load", "sources")
FULL_LOAD_USERS = 50
FULL_SYNTHETIC_CHUNKS = 10_000
FULL_RETRIEVAL_SIZE = 1_000_000
FULL_SOURCE_FILES = 10_000
COMMANDS = {
    "ingest": "python bench/ingest.py",
    "retrieval": "python bench/retrieval.py --work-dir var/bench/retrieval",
    "quality": "python bench/quality.py --work-dir var/bench/quality",
    "load": "python bench/load.py --work-dir var/bench/load",
    "sources": "python bench/sources.py",
    "grounding": "python bench/grounding.py",
}


def newest(kind: str) -> Path | None:
    """The newest full result of a benchmark (by the date in its name, then mtime)."""
    pattern = re.compile(rf"^{kind}-(\d{{4}}-\d{{2}}-\d{{2}})\.json$")
    found = [p for p in RESULTS.glob(f"{kind}-*.json") if pattern.match(p.name)]
    return max(found, key=lambda p: (pattern.match(p.name).group(1), p.stat().st_mtime)) if found else None  # type: ignore[union-attr]


def fmt(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def run_line(r: dict[str, Any], small: str | None = None) -> str:
    """Date, machine, load and command of a run, and a warning when the CPU was shared."""
    m = r.get("machine", {})
    load = r.get("loadavg", {})
    date = r.get("started_utc", "?").replace("T", " ").replace("+00:00", " UTC")
    parts = [
        f"Run of {date}, {m.get('cpu_model', '?')}, {m.get('cores', '?')} cores, {m.get('ram_gib', '?')} GiB RAM, "
        f"Python {m.get('python', '?')}; load average up to {load.get('max_seen', '?')}.",
        f"Command: `{r.get('command', '?')}` (result: `{r.get('_path', '?')}`).",
    ]
    if load.get("reliable") is False:
        parts.append(
            "**Timings unreliable: other work shared the CPU** (load average above 1.5 on this 2-core machine)."
        )
    if small:
        parts.append(f"**Small run, not the full benchmark: {small}.**")
    return "\n".join(parts)


def missing(kind: str) -> str:
    return f"*Not run yet: `{COMMANDS[kind]}` (or `make bench`).*"


# -- per benchmark ---------------------------------------------------------------------------------


def ingest_rows(r: dict[str, Any]) -> list[list[str]]:
    rows = []
    for corpus in r.get("corpora", []):
        for backend, table in corpus.get("table", {}).items():
            by = {row["metric"].strip(): row for row in table}
            wall = by.get("end-to-end wall, s (spawn to stored)")
            rate = by.get("chunks/s (end to end)")
            if wall:
                rows.append(
                    [
                        f"ingest, {corpus['corpus']} ({corpus['files']} files), {backend}",
                        "end-to-end wall, s",
                        fmt(wall["enclave"], 0),
                        f"plain LangChain {fmt(wall['plain'], 0)}",
                        f"{wall['plain'] / wall['enclave']:.2f}x (plain / Enclave)",
                    ]
                )
            if rate:
                rows.append(
                    [
                        "",
                        "chunks/s",
                        fmt(rate["enclave"], 2),
                        f"plain LangChain {fmt(rate['plain'], 2)}",
                        f"{rate['enclave'] / rate['plain']:.2f}x (Enclave / plain)",
                    ]
                )
    return rows


def ingest_small(r: dict[str, Any]) -> str | None:
    s = r.get("settings", {})
    if s.get("quick"):
        return "--quick (24 external files, a 300-chunk synthetic corpus)"
    if (s.get("synthetic_chunks") or FULL_SYNTHETIC_CHUNKS) < FULL_SYNTHETIC_CHUNKS:
        return f"synthetic corpus of {s['synthetic_chunks']:,} chunks (the full run makes {FULL_SYNTHETIC_CHUNKS:,})"
    return None


def ingest_block(r: dict[str, Any]) -> str:
    parts = [run_line(r, ingest_small(r))]
    for corpus in r.get("corpora", []):
        parts.append(f"#### {corpus['corpus']} ({corpus['files']} files)\n\n{corpus.get('markdown', '')}")
    return "\n\n".join(parts)


def retrieval_small(r: dict[str, Any]) -> str | None:
    largest = max((s["chunks"] for s in r.get("sizes", [])), default=0)
    if largest < FULL_RETRIEVAL_SIZE:
        return f"largest size {largest:,} chunks (the full run goes to {FULL_RETRIEVAL_SIZE:,})"
    return None


def retrieval_rows(r: dict[str, Any]) -> list[list[str]]:
    rows = []
    sizes = [m["chunks"] for m in r.get("measurements", [])]
    if not sizes:
        return rows
    largest = max(sizes)
    for m in r["measurements"]:
        if m["chunks"] != largest:
            continue
        wide = m["wide"]["total_ms"]
        base = (m.get("plain_langchain") or {}).get("total_ms", {}).get("p50")
        rows.append(
            [
                f"retrieval, {largest:,} chunks, {m['mode']} Chroma",
                "hybrid query p50 / p95, ms (embed + dense + BM25 + group filter)",
                f"{fmt(wide['p50'], 1)} / {fmt(wide['p95'], 1)}",
                f"plain LangChain dense query p50 {fmt(base, 1)}" if base else "—",
                f"{base / wide['p50']:.2f}x (plain / Enclave)" if base and wide["p50"] else "—",
            ]
        )
    return rows


def retrieval_block(r: dict[str, Any]) -> str:
    corpus = r.get("corpus", {})
    note = (
        f"Synthetic corpus: {corpus.get('vectors', '?')}; {corpus.get('text', '?')}. "
        f"Queries: {corpus.get('queries', '?')}."
    )
    return "\n\n".join([run_line(r, retrieval_small(r)), note, r.get("markdown", "")])


def quality_rows(r: dict[str, Any]) -> list[list[str]]:
    rows = []
    if not r.get("comparable"):
        s = r.get("scores", {}).get("hybrid", {})
        return [
            [
                "quality (quick subset)",
                "hybrid nDCG@10",
                fmt(s.get("ndcg@10"), 3),
                "not comparable (subset)",
                "—",
            ]
        ]
    for v in r.get("versus_published", []):
        if v["metric"] != "ndcg@10":
            continue
        rows.append(
            [
                f"quality, {r.get('set', '?')}, {v['retriever']}",
                "nDCG@10",
                fmt(v["ours"], 3),
                f"{v['published']} {fmt(v['published_value'], 3)}",
                f"{v['ratio']:.3f}x (ours / published)",
            ]
        )
    return rows


def quality_block(r: dict[str, Any]) -> str:
    small = "--quick: a 30-question subset, not comparable with published scores" if r.get("quick") else None
    line = run_line(r, small) + "\nQuality does not depend on the load; `ms/query` does."
    return "\n\n".join([line, f"`enclave {r.get('eval_command', 'eval')}`", r.get("markdown", "")])


def load_small(r: dict[str, Any]) -> str | None:
    s = r.get("settings", {})
    if s.get("users", 0) < FULL_LOAD_USERS:
        return f"{s.get('users')} users for {s.get('duration_s')} s (the full run is {FULL_LOAD_USERS} users)"
    return None


def load_rows(r: dict[str, Any]) -> list[list[str]]:
    rows = []
    direct = r.get("direct", {})
    for phase in r.get("app_phases", []):
        s = phase["summary"]
        label = f"load, {s['users']} users, {phase['concurrent_answers']} answers at once"
        for metric, name in (
            ("first_token_s", "time to first token"),
            ("last_token_s", "time to last token"),
        ):
            for p in ("p50", "p95"):
                o = phase["overhead"].get(f"{metric}_{p}", {})
                rows.append(
                    [
                        label,
                        f"{name} {p}, s",
                        fmt(s[metric][p], 3),
                        f"direct vLLM {fmt(direct.get(metric, {}).get(p), 3)} (overhead {fmt(o.get('app_minus_vllm_s'), 3)} s)",
                        f"{o['app_over_vllm']:.2f}x (app / vLLM)"
                        if o.get("app_over_vllm") is not None
                        else "—",
                    ]
                )
                label = ""
        audit = phase["audit"]
        rows.append(
            [
                "",
                "requests; errors; one audit record each; chain verifies",
                f"{s['completed']}; {s['errors']}; {'yes' if audit['one_record_per_request'] else 'NO'}; "
                f"{'yes' if audit['chain_verified'] else 'NO'}",
                f"direct vLLM {direct.get('completed')}; {direct.get('errors')}",
                "—",
            ]
        )
    return rows


def load_block(r: dict[str, Any]) -> str:
    s = r.get("settings", {})
    v = r.get("vllm", {})
    note = (
        f"{s.get('users')} users for {s.get('duration_s')} s per phase; ui.concurrent_events "
        f"{s.get('concurrent_events')}, ui.queue_max_size {s.get('queue_max_size')}; {s.get('model')}, "
        f"vLLM --max-num-seqs {v.get('max_num_seqs')}, vLLM {r.get('machine', {}).get('versions', {}).get('vllm')}."
    )
    checks = ", ".join(
        f"{k.replace('_', ' ')}: {'pass' if ok else 'FAIL'}" for k, ok in r.get("checks", {}).items()
    )
    return "\n\n".join([run_line(r, load_small(r)), note, r.get("markdown", ""), f"Checks: {checks}."])


def sources_small(r: dict[str, Any]) -> str | None:
    s = r.get("settings", {})
    if min(s.get("files", 0), s.get("messages", 0)) < FULL_SOURCE_FILES:
        return (
            f"{s.get('files', 0):,} files and {s.get('messages', 0):,} messages per source "
            f"(the full run has {FULL_SOURCE_FILES:,} of each)"
        )
    return None


def sources_rows(r: dict[str, Any]) -> list[list[str]]:
    rows = []
    for a in r.get("resync", []):
        first, last = a["first"], a["resyncs"]
        fetched = max(x["bytes_fetched"] for x in last)
        rows.append(
            [
                f"source re-sync, unchanged, {first['listed']:,} entries, {a['connector']}",
                "re-sync s (median); bytes fetched",
                f"{fmt(a['resync_median_s'])}; {fetched:,}",
                f"first mirror {fmt(first['seconds'])} s; {first['bytes_fetched']:,} bytes",
                f"{a['first_over_resync']:.1f}x (first / re-sync)" if a.get("first_over_resync") else "—",
            ]
        )
    for b in r.get("first_sync", []):
        sync, local = b["sync"], b["local_ingest"]
        rows.append(
            [
                f"source first sync, {sync['documents']:,} documents, {b['connector']}",
                "documents/s (command wall, start included)",
                fmt(sync["documents_per_s"], 1),
                f"local `enclave ingest` {fmt(local['documents_per_s'], 1)}",
                f"{b['sync_over_local']:.2f}x (sync / local)",
            ]
        )
    return rows


def sources_block(r: dict[str, Any]) -> str:
    c = r.get("corpus", {})
    files, first, mail = c.get("files", {}), c.get("first_sync_files", {}), c.get("messages", {})

    def sizes(s: dict[str, Any]) -> str:
        return f"{s.get('min_bytes', '?')}-{s.get('max_bytes', '?')} bytes, mean {s.get('mean_bytes', '?')}"

    note = (
        f"Corpus: {c.get('kind', '?')}; {files.get('count', 0):,} files per source ({sizes(files)}); the "
        f"mailbox {mail.get('count', 0):,} messages of the same texts ({sizes(mail)}); the first-sync "
        f"comparison {first.get('count', 0):,} of the same files ({sizes(first)}). Servers on 127.0.0.1: "
        f"smbd, WsgiDAV, Dovecot (tests/support). Bytes: MirrorResult.bytes_fetched; socket payload "
        f"this process received (plaintext protocols); the server's /proc rchar (its file reads, and its "
        f"socket reads where it reads them with read()), for the folder this process's own."
    )
    p = r.get("product") or {}
    changed = p.get("uncommitted", [])
    if p:
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        note += f" Code: commit `{str(p.get('commit', '?'))[:12]}`" + (
            f", uncommitted: {shown}." if changed else "."
        )
    skipped = r.get("skipped") or {}
    parts = [run_line(r, sources_small(r)), note, r.get("markdown", "")]
    if skipped:
        parts.append("Skipped: " + "; ".join(f"{k}: {why}" for k, why in skipped.items()) + ".")
    return "\n\n".join(parts)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.0f}%"


def _then_now(before: Any, after: Any, show: Callable[[Any], str]) -> str:
    """`after`, preceded by `before -> ` when a before figure exists."""
    if after is None and before is None:
        return "—"
    if before is None:
        return show(after)
    if after is None:
        return show(before)
    return f"{show(before)} → {show(after)}"


GROUNDING_FIGURES = (
    ("evidence_in_context", "evidence in context"),
    ("answer_contains", "answer contains the facts"),
    ("refused_wrongly", "refused (wrongly)"),
    ("empty_answerable", "empty"),
    ("refused_rightly", "refused (rightly)"),
    ("empty_unanswerable", "empty"),
)


def grounding_block(after: dict[str, Any] | None, before: dict[str, Any] | None) -> str:
    """The grounding table per set, split and answer mode (before → after), and the chunk shape."""
    if after is None and before is None:
        return f"*Not run yet: `{COMMANDS['grounding']}`.*"
    parts = []
    for label, r in (("After", after), ("Before", before)):
        if r is None:
            continue
        p = r.get("product", {})
        changed = p.get("uncommitted", [])
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        state = f"commit `{str(p.get('commit', '?'))[:12]}`" + (f", uncommitted: {shown}" if changed else "")
        small = f"--limit {r['limit']} (a smoke run)" if r.get("limit") else None
        parts.append(f"**{label}** ({state}): " + run_line(r, small))
    if after is None:
        parts.append(f"**After**: not run yet (`{COMMANDS['grounding']}`); the figures below are the before.")
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    counts: dict[tuple[str, str, str], tuple[int, int]] = {}
    models: set[str] = set()
    for side, r in (("before", before), ("after", after)):
        for one in (r or {}).get("sets", []):
            models.update(f"{m}: {name}" for m, name in one.get("models", {}).items())
            for s in one.get("summary", []):
                key = (one["set"], s["split"], s["mode"])
                rows.setdefault(key, {})[side] = s
                counts[key] = (s["answerable"], s["unanswerable"])
    head = ["set", "split", "mode", "answerable"] + [n for _, n in GROUNDING_FIGURES[:4]]
    head += ["unanswerable"] + [n for _, n in GROUNDING_FIGURES[4:]]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|" + "---:|" * (len(head) - 3)]
    order = {"tune": 0, "heldout": 1}
    for key in sorted(rows, key=lambda k: (k[0], order.get(k[1], 2), k[2])):
        b, a = rows[key].get("before"), rows[key].get("after")
        cells = [
            _then_now(b and b.get(f), a and a.get(f), _pct) if (a or b) else "—" for f, _ in GROUNDING_FIGURES
        ]
        n_ans, n_una = counts[key]
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {n_ans} | "
            + " | ".join(cells[:4])
            + f" | {n_una} | "
            + " | ".join(cells[4:])
            + " |"
        )
    parts.append(
        "Shares of the answerable questions (evidence in context, answer contains the facts, refused, "
        "empty) and of the unanswerable ones (refused, empty), as before → after. Held-out lines are "
        "never tuned on (bench/grounding/README.md)."
        + (f" Answerers: {'; '.join(sorted(models))}." if models else "")
    )
    parts.append("\n".join(lines))
    chunk_head = ["corpus", "chunks", "< 5 words", "< 15 words", "median words", "PDF chunks per page"]
    chunk_lines = ["| " + " | ".join(chunk_head) + " |", "|---|" + "---:|" * (len(chunk_head) - 1)]
    corpora: dict[str, dict[str, Any]] = {}
    for side, r in (("before", before), ("after", after)):
        for one in (r or {}).get("sets", []):
            if one.get("chunks"):
                corpora.setdefault(Path(one["corpus"]).name, {})[side] = one["chunks"]
    for name, sides in corpora.items():
        b, a = sides.get("before"), sides.get("after")

        def fig(c: dict[str, Any] | None, f: str) -> Any:
            return None if c is None else c.get(f)

        def per_page(c: dict[str, Any] | None) -> Any:
            return None if c is None or "pdf" not in c else c["pdf"]["chunks_per_page"]

        chunk_lines.append(
            f"| {name} | {_then_now(fig(b, 'chunks'), fig(a, 'chunks'), lambda v: f'{v:,}')} "
            f"| {_then_now(fig(b, 'share_lt5_words'), fig(a, 'share_lt5_words'), _pct)} "
            f"| {_then_now(fig(b, 'share_lt15_words'), fig(a, 'share_lt15_words'), _pct)} "
            f"| {_then_now(fig(b, 'median_words'), fig(a, 'median_words'), str)} "
            f"| {_then_now(per_page(b), per_page(a), lambda v: f'{v:.2f}') if per_page(a) or per_page(b) else '—'} |"
        )
    parts.append("Chunks of the indexes the questions were asked of (words per chunk):")
    parts.append("\n".join(chunk_lines))
    return "\n\n".join(parts)


SECTIONS: dict[
    str,
    tuple[
        Callable[[dict[str, Any]], list[list[str]]],
        Callable[[dict[str, Any]], str],
        Callable[[dict[str, Any]], str | None],
    ],
] = {
    "ingest": (ingest_rows, ingest_block, ingest_small),
    "retrieval": (retrieval_rows, retrieval_block, retrieval_small),
    "quality": (quality_rows, quality_block, lambda r: "quick subset" if r.get("quick") else None),
    "load": (load_rows, load_block, load_small),
    "sources": (sources_rows, sources_block, sources_small),
}


def summary_block(results: dict[str, dict[str, Any] | None]) -> str:
    head = ["benchmark", "figure", "Enclave", "comparison, same run", "ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    runs = []
    for kind, (rows_of, _, small_of) in SECTIONS.items():
        r = results.get(kind)
        if r is None:
            lines.append(f"| {kind} | not run yet: `{COMMANDS[kind]}` | | | |")
            continue
        for row in rows_of(r):
            lines.append("| " + " | ".join(row) + " |")
        m = r.get("machine", {})
        load = r.get("loadavg", {})
        flags = []
        if load.get("reliable") is False and kind != "quality":
            flags.append("timings unreliable (shared CPU)")
        small = small_of(r)
        if small:
            flags.append(f"small run: {small}")
        runs.append(
            f"- {kind}: {r.get('started_utc', '?')[:16].replace('T', ' ')} UTC, {m.get('cpu_model', '?')} "
            f"{m.get('cores', '?')} cores, load average up to {load.get('max_seen', '?')}"
            + (f"; **{'; '.join(flags)}**" if flags else "")
        )
    return "\n".join(lines) + "\n\n" + "\n".join(runs)


def blocks(
    results: dict[str, dict[str, Any] | None],
    grounding: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None),
) -> dict[str, str]:
    """Every generated block; `grounding` is the (after, before) pair of grounding results."""
    out = {"summary": summary_block(results)}
    for kind, (_, block_of, _) in SECTIONS.items():
        r = results.get(kind)
        out[kind] = missing(kind) if r is None else block_of(r)
    out["grounding"] = grounding_block(*grounding)
    return out


def rewrite(text: str, generated: dict[str, str]) -> str:
    for name, body in generated.items():
        start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
        if not pattern.search(text):
            raise SystemExit(f"docs: marker {start} ... {end} not found; add it where the block belongs")
        text = pattern.sub(lambda _m, b=body, s=start, e=end: f"{s}\n{b}\n{e}", text, count=1)
    return text


def load_result(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    if not path.is_file():  # that benchmark failed or was not run: its block says so
        print(f"no result file {path}: reported as not run", file=sys.stderr)
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    data["_path"] = (
        str(path.resolve().relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else str(path)
    )
    return data


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for kind in SECTIONS:
        ap.add_argument(
            f"--{kind}",
            type=Path,
            help=f"the {kind} result JSON (default: the newest full one in bench/results)",
        )
    ap.add_argument(
        "--grounding", type=Path, help="the grounding result JSON (default: the newest in bench/results)"
    )
    ap.add_argument(
        "--grounding-before",
        type=Path,
        help="the grounding result before the change (default: the newest grounding-baseline-<date>.json)",
    )
    target = ap.add_mutually_exclusive_group()
    target.add_argument(
        "--doc",
        type=Path,
        default=DOC,
        help="the Markdown file whose blocks are rewritten (default docs/benchmarks.md)",
    )
    target.add_argument("--standalone", type=Path, help="write the blocks to this file instead")
    args = ap.parse_args(argv)
    results = {kind: load_result(getattr(args, kind) or newest(kind)) for kind in SECTIONS}
    grounding = (
        load_result(args.grounding or newest("grounding")),
        load_result(args.grounding_before or newest("grounding-baseline")),
    )
    generated = blocks(results, grounding)
    if args.standalone:
        parts = ["# Benchmarks (generated by bench/report.py)"]
        parts += [f"## {name}\n\n{body}" for name, body in generated.items()]
        args.standalone.parent.mkdir(parents=True, exist_ok=True)
        args.standalone.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
        print(f"wrote {args.standalone}")
        return 0
    text = args.doc.read_text(encoding="utf-8")
    args.doc.write_text(rewrite(text, generated), encoding="utf-8")
    print(f"rewrote the generated blocks of {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
