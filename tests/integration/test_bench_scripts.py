"""Smoke tests of the benchmark scripts (bench/): they start, a tiny retrieval run goes through the
product's path on both Chroma modes, its build resumes, and the report labels a small run as
such. No timing is asserted: timings belong to the benchmark runs themselves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import report, retrieval
from ingest.chunking import embedding_text
from vectorstore.chroma import ChromaStore
from vectorstore.lexical import LexicalIndex

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.parametrize(
    "script",
    [
        "ingest.py",
        "embed_cost.py",
        "load.py",
        "retrieval.py",
        "quality.py",
        "sources.py",
        "report.py",
        "fit_evidence.py",
    ],
)
def test_bench_script_help(script: str) -> None:
    done = run(str(BENCH / script), "--help")
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_retrieval_build_resumes_with_the_same_chunks(tmp_path: Path) -> None:
    """A build stopped part-way (here: a smaller target first) goes on where it was, and the
    chunks it adds are those a build in one go would have made."""
    first = retrieval.side_build(tmp_path, 120, "random")
    assert (first["built"], first["added"]) == (120, 120)
    second = retrieval.side_build(tmp_path, 300, "random")
    assert (second["built"], second["added"]) == (300, 180)

    expected, _ = retrieval.make_batch(0, retrieval.vocabulary(), retrieval.zipf_cdf(retrieval.VOCAB_SIZE))
    lexical = LexicalIndex(tmp_path / "lexical.sqlite3")
    assert lexical.count() == 300
    assert lexical.document_ids() == {f"d{d:07d}": 10 for d in range(30)}
    dense = ChromaStore.embedded(tmp_path / "chroma", retrieval.PREFIX)
    assert dense.count() == 300
    # Chunk 150 was added by the second run, from the middle of batch 0.
    [(doc, chunks)] = dense.documents_in_class(expected[150].groups, [expected[150].doc_id])
    assert chunks[0].text == expected[150].text and doc == expected[150].doc_id
    lexical.close()
    with pytest.raises(SystemExit, match="vectors made by --vectors random"):
        retrieval.side_build(tmp_path, 400, "pool")


def test_retrieval_pool_vectors(tmp_path: Path) -> None:
    """--vectors pool: the first --pool chunks carry the real model's embedding of their text
    (kept in the work dir and checked when found there), later ones a renormalised pool vector
    moved a little; every chunk's text stays its own."""
    built = retrieval.side_build(tmp_path, 12, "pool", pool=8)
    assert (built["built"], built["state"]["pool"]) == (12, 8)
    pool = np.load(tmp_path / "pool" / "b00000.npy")
    assert pool.shape == (8, retrieval.DIM)

    chunks, _ = retrieval.make_batch(0, retrieval.vocabulary(), retrieval.zipf_cdf(retrieval.VOCAB_SIZE))
    vectors = retrieval.Vectors(tmp_path, retrieval.read_state(tmp_path))
    real = np.array(vectors.embedder.embed_documents([embedding_text(c) for c in chunks[:8]]))
    assert np.abs(real - pool).max() < retrieval.CHECK_TOLERANCE
    stored = ChromaStore.embedded(tmp_path / "chroma", retrieval.PREFIX)
    got = {c: np.array(v) for c, v in stored.embeddings(chunks[:12]).items()}
    assert np.abs(got[chunks[3].chunk_id] - pool[3]).max() < 1e-6
    derived = retrieval.derive(pool, 0)
    assert np.abs(got[chunks[10].chunk_id] - derived[10]).max() < 1e-6
    assert abs(np.linalg.norm(derived[10]) - 1) < 1e-5
    assert len({c.text for c in chunks[:12]}) == 12

    # A pool file that disagrees with the embedder stops the build.
    np.save(tmp_path / "pool" / "b00000.npy", pool[::-1].copy())
    state = retrieval.read_state(tmp_path)
    state["pool_checked"] = {}
    retrieval.write_state(tmp_path, state)
    with pytest.raises(SystemExit, match="differ from this embedder"):
        retrieval.side_build(tmp_path, 20, "pool", pool=8)


@pytest.mark.slow
def test_retrieval_bench_small_run_and_its_report(tmp_path: Path) -> None:
    out = tmp_path / "retrieval.json"
    done = run(
        str(BENCH / "retrieval.py"), "--sizes", "200", "--queries", "3", "--no-baseline",
        "--work-dir", str(tmp_path / "work"), "--output", str(out), "--pool", "20",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["corpus"]["synthetic"] is True
    assert [(m["chunks"], m["mode"]) for m in result["measurements"]] == [(200, "embedded"), (200, "http")]
    for m in result["measurements"]:
        for user in ("wide", "narrow"):
            assert m[user]["total_ms"]["n"] == 3 and m[user]["total_ms"]["p50"] > 0
    assert result["sizes"][0]["disk_bytes"] > 0
    assert (result["corpus"]["vector_mode"], result["corpus"]["pool"]) == ("pool", 20)
    assert result["corpus"]["vector_stats"]["derived_cosine_to_parent_mean"] > 0.9

    # --skip-build measures the kept store as it stands, building nothing.
    again = tmp_path / "again.json"
    done = run(
        str(BENCH / "retrieval.py"), "--skip-build", "--modes", "embedded", "--queries", "2",
        "--no-baseline", "--work-dir", str(tmp_path / "work"), "--output", str(again),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    second = json.loads(again.read_text())
    assert [(s["chunks"], s["build"]["added_this_run"]) for s in second["sizes"]] == [(200, 0)]
    assert second["measurements"][0]["wide"]["total_ms"]["n"] == 2

    doc = tmp_path / "report.md"
    absent = str(tmp_path / "absent.json")  # not the newest results in bench/results
    args = ["--retrieval", str(out), "--ingest", absent, "--quality", absent, "--load", absent]
    assert report.main([*args, "--standalone", str(doc)]) == 0
    text = doc.read_text()
    assert "Small run, not the full benchmark: largest size 200 chunks" in text
    assert "not run yet: `python bench/load.py" in text  # no load result was given


def test_sources_bench_small_run_and_its_report(tmp_path: Path) -> None:
    """A tiny re-sync run on every connector whose server runs here (smbd and Dovecot need root:
    reported as skipped otherwise): the re-syncs fetch nothing, the first mirror every byte."""
    out = tmp_path / "sources.json"
    done = run(
        str(BENCH / "sources.py"), "--files", "12", "--messages", "12", "--repeats", "2",
        "--no-first-sync", "--output", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    measured = {a["connector"]: a for a in result["resync"]}
    assert set(measured) | set(result["skipped"]) == {"folder", "smb", "webdav", "imap"}
    assert {"folder", "webdav"} <= set(measured)  # these need no root
    files = result["corpus"]["files"]
    assert files["count"] == 12 and 300 <= files["min_bytes"] <= files["max_bytes"] <= 700
    for kind, a in measured.items():
        assert a["nothing_fetched"], kind
        assert a["first"]["bytes_fetched"] > 0 and a["first"]["fetched"] == a["first"]["listed"] == 12
        assert [r["bytes_fetched"] for r in a["resyncs"]] == [0, 0]
    assert measured["webdav"]["first"]["wire_received_bytes"] > measured["webdav"]["first"]["bytes_fetched"]

    block = report.sources_block(report.load_result(out) or {})
    assert "Small run, not the full benchmark: 12 files and 12 messages" in block
    assert "| webdav | 12 |" in block
    assert any(row[0].startswith("source re-sync") for row in report.sources_rows(result))
