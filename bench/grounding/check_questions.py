#!/usr/bin/env python3
"""Validate the grounding question sets in this folder.

Standard library only, plus `pdftotext` (poppler-utils) for PDFs, falling back to
pypdf when pdftotext is not installed (pypdf lays text out differently, so a few
form-field evidence lines may then fail to match; install poppler-utils for a
faithful check).

Checks, for every line of ntsb.jsonl, 18f.jsonl, github-policy.jsonl and demo.jsonl:
  * the fields, their types and allowed values;
  * ids are unique across all files, questions are unique within a file;
  * the source document exists; `page` is a valid 1-based page for answerable PDF
    lines and null otherwise;
  * answerable: 1-3 answer strings, each found in `evidence` and in the document
    text; `evidence` itself found in the document text (on `page` for PDFs);
  * unanswerable: `answer` is [] and `evidence` is "";
  * the per-file counts of kind x split are the ones stated in EXPECTED (and in
    README.md).
Matching normalises case, whitespace, curly quotes and Markdown table pipes.

Usage:
  python3 bench/grounding/check_questions.py [--root NAME=PATH ...] [--skip-missing]

Corpus roots default to /work/shared/corpus/<name> for the shared corpora (or
$SHARED_CORPUS/<name>) and to enclave/demo_corpus in this repository.
Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import html
import json
import os
import re
import shutil
import subprocess
import sys
import unicodedata
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

FILES = {
    # file: (corpus, answerable, unanswerable, heldout answerable, heldout unanswerable, id prefix)
    "ntsb.jsonl": ("ntsb-reports", 92, 40, 40, 15, "ntsb-"),
    "18f.jsonl": ("18f-handbook", 76, 31, 33, 11, "18f-"),
    "github-policy.jsonl": ("github-site-policy", 64, 28, 27, 10, "gh-"),
    "demo.jsonl": ("demo_corpus", 20, 8, 7, 3, "demo-"),
}

KEYS = ["id", "corpus", "split", "kind", "question", "source", "page", "answer", "evidence", "type"]
SPLITS = {"tune", "heldout"}
KINDS = {"answerable", "unanswerable"}
TYPES = {"number", "date", "name", "field", "deadline", "yes-no", "definition", "procedure", "other"}


def default_roots() -> dict[str, Path]:
    shared = Path(os.environ.get("SHARED_CORPUS", "/work/shared/corpus"))
    return {
        "ntsb-reports": shared / "ntsb-reports",
        "18f-handbook": shared / "18f-handbook",
        "github-site-policy": shared / "github-site-policy",
        "demo_corpus": REPO / "enclave" / "demo_corpus",
    }


# ---------------------------------------------------------------- normalisation

_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u00a0": " ",
        "\u2009": " ",
        "\u202f": " ",
        "|": " ",
    }
)


def norm(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\u00ad", "")
    text = text.translate(_QUOTES).lower()
    return re.sub(r"\s+", " ", text).strip()


# ---------------------------------------------------------------- text extraction


def pdf_pages(path: Path) -> list[str]:
    """Text of each page, 1-based order (index 0 is page 1)."""
    if shutil.which("pdftotext"):
        out = subprocess.run(
            ["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True
        ).stdout.decode("utf-8", "replace")
        pages = out.split("\f")
        if pages and not pages[-1].strip():
            pages = pages[:-1]
        return pages
    try:
        from pypdf import PdfReader  # type: ignore
    except ImportError:  # pragma: no cover
        raise SystemExit("need pdftotext (poppler-utils) or pypdf to read PDFs") from None
    return [(p.extract_text() or "") for p in PdfReader(str(path)).pages]


def _xml_text(fragment: str, tag: str) -> str:
    return html.unescape("".join(re.findall(rf"<{tag}(?: [^>]*)?>([^<]*)</{tag}>", fragment)))


def docx_text(path: Path) -> str:
    xml = zipfile.ZipFile(path).read("word/document.xml").decode("utf-8")
    paras = re.findall(r"<w:p[ >].*?</w:p>", xml, flags=re.S)
    return "\n".join(_xml_text(p, "w:t") for p in paras)


def pptx_text(path: Path) -> str:
    z = zipfile.ZipFile(path)
    slides = [n for n in z.namelist() if re.match(r"ppt/slides/slide\d+\.xml$", n)]
    slides.sort(key=lambda n: int(re.findall(r"\d+", n)[0]))
    out = []
    for n in slides:
        xml = z.read(n).decode("utf-8")
        out.extend(_xml_text(p, "a:t") for p in re.findall(r"<a:p>.*?</a:p>", xml, flags=re.S))
    return "\n".join(out)


def xlsx_text(path: Path) -> str:
    """Each row as its cell values joined with ' | ', rows on separate lines."""
    z = zipfile.ZipFile(path)
    names = z.namelist()
    shared = []
    if "xl/sharedStrings.xml" in names:
        xml = z.read("xl/sharedStrings.xml").decode("utf-8")
        shared = [_xml_text(si, "t") for si in re.findall(r"<si>(.*?)</si>", xml, flags=re.S)]
    sheets = [n for n in names if re.match(r"xl/worksheets/sheet\d+\.xml$", n)]
    sheets.sort(key=lambda n: int(re.findall(r"\d+", n)[0]))
    rows = []
    for n in sheets:
        xml = z.read(n).decode("utf-8")
        for row in re.findall(r"<row[^>]*>(.*?)</row>", xml, flags=re.S):
            cells = []
            for attrs, body in re.findall(r"<c([^>]*?)(?:/>|>(.*?)</c>)", row, flags=re.S):
                body = body or ""
                v = re.search(r"<v>(.*?)</v>", body)
                inline = re.search(r"<is>(.*?)</is>", body, flags=re.S)
                if 't="s"' in attrs and v:
                    cells.append(shared[int(v.group(1))])
                elif inline:
                    cells.append(_xml_text(inline.group(1), "t"))
                elif v:
                    cells.append(html.unescape(v.group(1)))
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def html_text(path: Path) -> str:
    raw = path.read_text(encoding="utf-8", errors="replace")
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.S | re.I)
    return html.unescape(re.sub(r"<[^>]+>", " ", raw))


def eml_text(path: Path) -> str:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    parts = [f"{h}: {msg[h]}" for h in ("From", "To", "Cc", "Subject", "Date") if msg[h]]
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            content = part.get_content()
            parts.append(
                html.unescape(re.sub(r"<[^>]+>", " ", content))
                if part.get_content_subtype() == "html"
                else content
            )
    return "\n".join(parts)


_CACHE: dict[Path, list[str]] = {}


def document_pages(path: Path) -> list[str]:
    """A list of page texts for PDFs, a one-element list for everything else."""
    if path not in _CACHE:
        suffix = path.suffix.lower()
        if suffix == ".pdf":
            pages = pdf_pages(path)
        elif suffix == ".docx":
            pages = [docx_text(path)]
        elif suffix == ".pptx":
            pages = [pptx_text(path)]
        elif suffix == ".xlsx":
            pages = [xlsx_text(path)]
        elif suffix in (".html", ".htm"):
            pages = [html_text(path)]
        elif suffix == ".eml":
            pages = [eml_text(path)]
        else:
            pages = [path.read_text(encoding="utf-8", errors="replace")]
        _CACHE[path] = pages
    return _CACHE[path]


# ---------------------------------------------------------------- checks


def check_line(rec: dict, corpus: str, prefix: str, root: Path | None, errors: list[str], where: str):
    def err(msg):
        errors.append(f"{where} [{rec.get('id', '?')}]: {msg}")

    if list(rec.keys()) != KEYS:
        missing = [k for k in KEYS if k not in rec]
        extra = [k for k in rec if k not in KEYS]
        if missing or extra:
            err(f"keys: missing {missing}, unexpected {extra}")
            return
    if not isinstance(rec["id"], str) or not rec["id"].startswith(prefix):
        err(f"id must be a string starting with {prefix!r}")
    if rec["corpus"] != corpus:
        err(f"corpus {rec['corpus']!r} != {corpus!r}")
    if rec["split"] not in SPLITS:
        err(f"split {rec['split']!r}")
    if rec["kind"] not in KINDS:
        err(f"kind {rec['kind']!r}")
    if rec["type"] not in TYPES:
        err(f"type {rec['type']!r}")
    if not isinstance(rec["question"], str) or len(rec["question"].strip()) < 10:
        err("question missing or too short")
    if not isinstance(rec["source"], str) or not rec["source"] or rec["source"].startswith("/"):
        err("source must be a path relative to the corpus folder")
        return
    is_pdf = rec["source"].lower().endswith(".pdf")
    answer, evidence, page = rec["answer"], rec["evidence"], rec["page"]
    if not isinstance(answer, list) or not all(isinstance(a, str) and a.strip() for a in answer):
        err("answer must be a list of non-empty strings")
        return
    if not isinstance(evidence, str):
        err("evidence must be a string")
        return
    if rec["kind"] == "answerable":
        if not 1 <= len(answer) <= 3:
            err(f"answerable needs 1-3 answer strings, has {len(answer)}")
        if not evidence.strip():
            err("answerable needs evidence")
        if is_pdf:
            if not isinstance(page, int) or isinstance(page, bool) or page < 1:
                err("answerable PDF line needs a 1-based integer page")
        elif page is not None:
            err("page must be null for a non-PDF source")
        for a in answer:
            if norm(a) not in norm(evidence):
                err(f"answer {a!r} not found in evidence")
    else:
        if answer != []:
            err("unanswerable line must have answer []")
        if evidence != "":
            err('unanswerable line must have evidence ""')
        if page is not None and not (isinstance(page, int) and page >= 1):
            err("page must be null or a 1-based integer")

    if root is None:
        return
    path = root / rec["source"]
    if not path.is_file():
        err(f"source not found: {path}")
        return
    pages = document_pages(path)
    if isinstance(page, int) and not isinstance(page, bool) and page > len(pages) and is_pdf:
        err(f"page {page} beyond the document's {len(pages)} pages")
        return
    if rec["kind"] != "answerable":
        return
    whole = norm("\n".join(pages))
    for a in answer:
        if norm(a) not in whole:
            err(f"answer {a!r} not found in {rec['source']}")
    if norm(evidence) not in whole:
        err(f"evidence not found in {rec['source']}: {evidence[:80]!r}")
    elif is_pdf and isinstance(page, int) and norm(evidence) not in norm(pages[page - 1]):
        found = [i + 1 for i, p in enumerate(pages) if norm(evidence) in norm(p)]
        err(f"evidence is on page(s) {found}, not page {page}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--root",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="corpus root override, e.g. ntsb-reports=/data/ntsb-reports",
    )
    ap.add_argument(
        "--skip-missing", action="store_true", help="skip document checks for corpora whose folder is absent"
    )
    args = ap.parse_args(argv)
    roots = default_roots()
    for item in args.root:
        name, _, p = item.partition("=")
        roots[name] = Path(p)

    errors: list[str] = []
    warnings: list[str] = []
    seen_ids: dict[str, str] = {}
    summary = []
    for fname, (corpus, n_ans, n_un, h_ans, h_un, prefix) in FILES.items():
        fpath = HERE / fname
        if not fpath.is_file():
            errors.append(f"{fname}: missing")
            continue
        root: Path | None = roots.get(corpus)
        if root is None or not root.is_dir():
            msg = f"{fname}: corpus folder for {corpus} not found ({root})"
            if args.skip_missing:
                warnings.append(msg + "; document checks skipped")
                root = None
            else:
                errors.append(msg)
                root = None
        counts = {(k, s): 0 for k in KINDS for s in SPLITS}
        questions = set()
        for n, line in enumerate(fpath.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{fname}:{n}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(f"{where}: invalid JSON ({e})")
                continue
            if not isinstance(rec, dict):
                errors.append(f"{where}: not a JSON object")
                continue
            rid = rec.get("id")
            if rid in seen_ids:
                errors.append(f"{where}: duplicate id {rid!r} (also {seen_ids[rid]})")
            else:
                seen_ids[rid] = where
            q = norm(str(rec.get("question", "")))
            if q in questions:
                errors.append(f"{where}: duplicate question")
            questions.add(q)
            check_line(rec, corpus, prefix, root, errors, where)
            if (rec.get("kind"), rec.get("split")) in counts:
                counts[(rec["kind"], rec["split"])] += 1
        got_ans = counts[("answerable", "tune")] + counts[("answerable", "heldout")]
        got_un = counts[("unanswerable", "tune")] + counts[("unanswerable", "heldout")]
        for label, got, want in (
            ("answerable", got_ans, n_ans),
            ("unanswerable", got_un, n_un),
            ("heldout answerable", counts[("answerable", "heldout")], h_ans),
            ("heldout unanswerable", counts[("unanswerable", "heldout")], h_un),
        ):
            if got != want:
                errors.append(f"{fname}: {label} count {got}, expected {want}")
        summary.append(
            f"{fname:22s} answerable {got_ans:3d} (tune {counts[('answerable', 'tune')]:2d}, "
            f"heldout {counts[('answerable', 'heldout')]:2d})  unanswerable {got_un:3d} "
            f"(tune {counts[('unanswerable', 'tune')]:2d}, heldout {counts[('unanswerable', 'heldout')]:2d})"
        )

    for line in summary:
        print(line)
    for w in warnings:
        print("WARNING:", w)
    if not shutil.which("pdftotext"):
        print("WARNING: pdftotext not found; PDF text read with pypdf")
    if errors:
        for e in errors:
            print("ERROR:", e)
        print(f"FAILED: {len(errors)} problem(s)")
        return 1
    print(f"OK: {len(seen_ids)} lines checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
