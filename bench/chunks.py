"""Chunk shape: how many words Enclave's chunks hold, per corpus, with the real parser and chunker.

    .venv/bin/python bench/chunks.py [FOLDER ...] [--out FILE] [--workers N] [--langchain]
        [--chunk-chars N] [--chunk-overlap N]

Without FOLDER: the shared corpora ../shared/corpus/{ntsb-reports,18f-handbook,github-site-policy}.
Files are parsed by `ingest.parsing.parse_file` in worker processes and chunked by
`ingest.chunking.Chunker` as `enclave ingest` does (same settings defaults, the shipped model's
window); nothing is embedded,
so a run takes minutes, not the hour an ingest would. Per folder it reports the chunks, the share
holding fewer than 5 and fewer than 15 words, the median, p90 and largest word count, the
embedded text's word pieces (all-MiniLM-L6-v2's window is 256 with [CLS]/[SEP]; how many chunks
overflow it), and for PDFs the chunks per page. `--langchain` also counts the chunks of the plain
LangChain pipeline on the same files (UnstructuredLoader, one Document per file, the
RecursiveCharacterTextSplitter at the same size and overlap), as in bench/ingest.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

CORPUS = ROOT.parent / "shared" / "corpus"
SHARED = ("ntsb-reports", "18f-handbook", "github-site-policy")
SHORT_WORDS = (5, 15)


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from core.offline import disable_telemetry

    disable_telemetry()


def _chunk_file(job: tuple[str, int, int]) -> dict[str, Any]:
    """Parse and chunk one file (in a worker process): its chunks' texts, pages, embedded texts."""
    path, chunk_chars, overlap = job
    from core.errors import ParseError
    from ingest.chunking import Chunker, WordPieces, document_id, embedding_text
    from ingest.parsing import parse_file

    try:
        doc = parse_file(Path(path), table_chars=chunk_chars)
    except ParseError as exc:
        return {"path": path, "error": str(exc)[:300]}
    chunker = Chunker(chunk_chars, overlap, word_pieces=WordPieces.of(None))
    chunks = chunker.chunks(doc, document_id("0" * 64), path, ["bench"])
    return {
        "path": path,
        "chunks": [{"text": c.text, "page": c.page, "embedded": embedding_text(c)} for c in chunks],
    }


def _pdf_pages(path: Path) -> int:
    import pypdf

    return len(pypdf.PdfReader(str(path)).pages)


def _percentile(values: Sequence[int], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))])


def _tokens(texts: Sequence[str]) -> list[int]:
    """Word pieces of each text as the embedder runs it ([CLS] and [SEP] included)."""
    from tokenizers import Tokenizer

    from vectorstore.embedding import default_model_path

    tok = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return [len(e.ids) for e in tok.encode_batch(list(texts), add_special_tokens=True)]


def distribution(files: Sequence[dict[str, Any]], window: int = 256) -> dict[str, Any]:
    """Word counts of the chunks of parsed `files` (results of `_chunk_file`)."""
    chunks = [c for f in files for c in f.get("chunks", [])]
    words = [len(c["text"].split()) for c in chunks]
    tokens = _tokens([c["embedded"] for c in chunks]) if chunks else []
    out: dict[str, Any] = {
        "files": len(files),
        "failed": sum(1 for f in files if "error" in f),
        "chunks": len(chunks),
        "words": {
            **{
                f"share_lt{n}": round(sum(1 for w in words if w < n) / max(len(words), 1), 4)
                for n in SHORT_WORDS
            },
            "median": statistics.median(words) if words else 0,
            "p90": _percentile(words, 0.9),
            "max": max(words, default=0),
            "total": sum(words),
        },
        "tokens": {
            "window": window,
            "median": statistics.median(tokens) if tokens else 0,
            "max": max(tokens, default=0),
            "over_window": sum(1 for t in tokens if t > window),
        },
    }
    pdfs = [f for f in files if f["path"].lower().endswith(".pdf") and "chunks" in f]
    if pdfs:
        pages = sum(_pdf_pages(Path(f["path"])) for f in pdfs)
        per_page: dict[tuple[str, int | None], int] = {}
        for f in pdfs:
            for c in f["chunks"]:
                per_page[(f["path"], c["page"])] = per_page.get((f["path"], c["page"]), 0) + 1
        pdf_chunks = sum(len(f["chunks"]) for f in pdfs)
        out["pdf"] = {
            "files": len(pdfs),
            "pages": pages,
            "chunks": pdf_chunks,
            "chunks_per_page": round(pdf_chunks / max(pages, 1), 2),
            "pages_with_text": len(per_page),
            "max_chunks_on_a_page": max(per_page.values(), default=0),
        }
    return out


def langchain_chunks(paths: Sequence[Path], chunk_chars: int, overlap: int) -> dict[str, Any]:
    """The plain pipeline's chunk count: one Document per file, split recursively."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from langchain_unstructured import UnstructuredLoader

    from ingest._spacy_offline import ensure_offline_nlp

    ensure_offline_nlp()
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_chars, chunk_overlap=overlap)
    count, failed = 0, 0
    words: list[int] = []
    for path in paths:
        try:
            elements = UnstructuredLoader(str(path)).load()
        except Exception:  # counted, as bench/ingest.py's plain side does
            failed += 1
            continue
        text = "\n\n".join(e.page_content for e in elements if e.page_content and e.page_content.strip())
        pieces = splitter.split_text(text) if text.strip() else []
        count += len(pieces)
        words.extend(len(p.split()) for p in pieces)
    return {
        "chunks": count,
        "failed": failed,
        "share_lt15": round(sum(1 for w in words if w < 15) / max(len(words), 1), 4),
        "median_words": statistics.median(words) if words else 0,
    }


def _files(folder: Path) -> list[Path]:
    from ingest.parsing import is_supported
    from ingest.pipeline import walk

    return [p for p in walk([folder]) if is_supported(p)]


def _commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folders", nargs="*", type=Path, help="folders to measure (default: the shared corpora)"
    )
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    parser.add_argument("--workers", type=int, default=2, help="parser processes (default 2)")
    parser.add_argument("--chunk-chars", type=int, default=1000, help="as ingest.chunk_chars (default 1000)")
    parser.add_argument(
        "--chunk-overlap", type=int, default=120, help="as ingest.chunk_overlap (default 120)"
    )
    parser.add_argument(
        "--langchain", action="store_true", help="also count the plain LangChain pipeline's chunks"
    )
    parser.add_argument(
        "--samples", type=int, default=0, help="print N of the shortest chunks of each folder"
    )
    args = parser.parse_args(argv)
    _offline()
    folders = args.folders or [CORPUS / name for name in SHARED]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        print(f"no such folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "commit": _commit(),
        "chunk_chars": args.chunk_chars,
        "chunk_overlap": args.chunk_overlap,
        "corpora": {},
    }
    every: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for folder in folders:
            paths = _files(folder)
            jobs = [(str(p), args.chunk_chars, args.chunk_overlap) for p in paths]
            files = list(pool.map(_chunk_file, jobs))
            every.extend(files)
            stats = distribution(files)
            if args.langchain:
                stats["langchain"] = langchain_chunks(paths, args.chunk_chars, args.chunk_overlap)
            result["corpora"][folder.name] = stats
            print(_line(folder.name, stats), flush=True)
            if args.samples:
                short = sorted(
                    (c["text"] for f in files for c in f.get("chunks", [])), key=lambda t: len(t.split())
                )
                for text in short[: args.samples]:
                    print("    ", repr(text[:120]))
    if len(folders) > 1:
        result["all"] = distribution(every)
        print(_line("all", result["all"]), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


def _line(name: str, s: dict[str, Any]) -> str:
    w = s["words"]
    text = (
        f"{name}: {s['chunks']} chunks of {s['files']} files ({s['failed']} failed); words <5: "
        f"{w['share_lt5']:.1%}, <15: {w['share_lt15']:.1%}, median {w['median']}, p90 {w['p90']:.0f}, "
        f"max {w['max']}; word pieces max {s['tokens']['max']}, over {s['tokens']['window']}: "
        f"{s['tokens']['over_window']}"
    )
    if "pdf" in s:
        text += f"; PDF chunks per page {s['pdf']['chunks_per_page']} ({s['pdf']['pages']} pages)"
    if "langchain" in s:
        text += f"; plain LangChain {s['langchain']['chunks']} chunks"
    return text


if __name__ == "__main__":
    sys.exit(main())
