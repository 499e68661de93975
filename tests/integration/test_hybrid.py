"""Hybrid retrieval on the real parts: the FTS5 lexical index kept in step with embedded Chroma by
the real ingest (add, replace, move, delete, crash recovery), the group filter inside both
searches, hostile query text, and `enclave eval` on a small BEIR-shaped set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from assistant.evaluation import Scores, mrr_at, ndcg_at, recall_at
from core.settings import Settings
from core.types import Chunk, Principal
from enclave import wiring
from enclave.cli import app
from tests.support.chroma_server import both_store_modes
from vectorstore.lexical import LexicalIndex, query_terms

pytestmark = pytest.mark.slow

PARKING = "# Parking\n\nStaff park in the blue car park behind Building C. Permits cost 12 euros a month.\n"
CRANE = "# Crane\n\nThe capital budget for the new gantry crane at berth 7 is 4.2 million euros.\n"
SOUP = "The canteen serves lentil soup on Tuesdays and closes at 14:00.\n"

ALICE = Principal("alice", "staff", ("public",))
FIONA = Principal("fiona", "staff", ("finance", "public"))


@pytest.fixture
def stack(settings: Settings, embedder: Any) -> dict[str, Any]:
    store = wiring.build_store(settings)
    return {
        "store": store,
        "pipeline": wiring.build_pipeline(settings, embedder=embedder, store=store),
        "assistant": wiring.build_assistant(settings, embedder=embedder, store=store),
    }


def in_step(store: Any) -> dict[tuple[str, str], int]:
    """The lexical index holds exactly Chroma's chunks, class by class; returns the counts."""
    from vectorstore.lexical import class_token

    dense = {(class_token(g), d): n for (g, d), n in store.dense.class_doc_counts().items()}
    assert store.lexical.class_doc_counts() == dense
    return dense


@both_store_modes
def test_ingest_keeps_the_lexical_index_in_step(tmp_path: Path, stack: dict[str, Any]) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "parking.md").write_text(PARKING)
    (docs / "crane.md").write_text(CRANE)
    store, pipeline = stack["store"], stack["pipeline"]
    pipeline.run([docs], ["public"])
    assert len(in_step(store)) == 2
    assert [h.chunk.source for h in store.search_lexical("gantry crane budget", 5, ["public"])] == [
        str(docs / "crane.md")
    ]

    (docs / "crane.md").write_text(CRANE.replace("gantry", "harbour"))  # changed: replaced
    pipeline.run([docs], ["public"])
    in_step(store)
    assert store.search_lexical("gantry", 5, ["public"]) == []
    assert len(store.search_lexical("harbour crane", 5, ["public"])) == 1

    pipeline.run([docs], ["finance"])  # new groups: moved without re-embedding
    in_step(store)
    assert store.search_lexical("harbour crane", 5, ["public"]) == []
    assert len(store.search_lexical("harbour crane", 5, ["finance"])) == 1

    (docs / "crane.md").unlink()  # pruned: gone from both
    pipeline.run([docs], ["finance"], prune=True)
    counts = in_step(store)
    assert len(counts) == 1
    assert store.search_lexical("harbour crane", 5, ["finance"]) == []


@both_store_modes
def test_a_write_cut_between_chroma_and_the_lexical_index_is_rolled_back(
    tmp_path: Path, stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "parking.md").write_text(PARKING)
    store, pipeline = stack["store"], stack["pipeline"]

    def crash(chunks: Any) -> None:
        raise KeyboardInterrupt("killed between the two writes")

    monkeypatch.setattr(store.lexical, "upsert", crash)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run([docs], ["public"])
    monkeypatch.undo()
    assert store.dense.count() == 1 and store.lexical.count() == 0  # Chroma written, BM25 not

    report = pipeline.run([docs], ["public"])
    assert report.recovered >= 1
    assert len(in_step(store)) == 1
    assert store.dense.count() == store.lexical.count() == 1


@both_store_modes
def test_sync_rebuilds_a_missing_lexical_index_from_chroma(
    tmp_path: Path, settings: Settings, stack: dict[str, Any], embedder: Any
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "parking.md").write_text(PARKING)
    (docs / "soup.txt").write_text(SOUP)
    stack["pipeline"].run([docs], ["public"])
    stack["store"].lexical.close()
    settings.lexical_path.unlink()  # an older data folder, or a lost file
    store = wiring.build_store(settings)
    assert store.lexical.count() == 0
    assert store.sync_lexical() == 2
    in_step(store)
    assert store.sync_lexical() == 0  # nothing to do the second time
    assert len(store.search_lexical("lentil soup", 3, ["public"])) == 1


@both_store_modes
def test_groups_filter_inside_both_searches(tmp_path: Path, stack: dict[str, Any]) -> None:
    public, finance = tmp_path / "public", tmp_path / "finance"
    public.mkdir()
    finance.mkdir()
    (public / "parking.md").write_text(PARKING)
    (finance / "crane.md").write_text(CRANE)
    stack["pipeline"].run([public], ["public"])
    stack["pipeline"].run([finance], ["finance"])
    retriever = stack["assistant"].retriever
    for mode in ("dense", "lexical", "hybrid", "hybrid-rrf"):
        alice = retriever.rank(ALICE, "crane budget berth 7", 10, mode)
        fiona = retriever.rank(FIONA, "crane budget berth 7", 10, mode)
        assert all("finance" not in h.chunk.groups for h in alice), mode
        assert any(h.chunk.source.endswith("crane.md") for h in fiona), mode
        assert fiona[0].chunk.source.endswith("crane.md"), mode


def test_hybrid_hits_carry_cosines_and_relevance_uses_them(tmp_path: Path, stack: dict[str, Any]) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in (("parking.md", PARKING), ("crane.md", CRANE), ("soup.txt", SOUP)):
        (docs / name).write_text(text)
    stack["pipeline"].run([docs], ["public"])
    retriever = stack["assistant"].retriever
    hits = retriever.rank(ALICE, "Where is the blue car park?", 3, "hybrid")
    assert hits[0].chunk.source.endswith("parking.md")
    assert all(h.cosine is not None for h in hits)
    assert hits[0].lexical is not None  # both retrievers found it
    relevant, _searched = retriever.retrieve(ALICE, "Where is the blue car park?")
    assert relevant and all(h.cosine is not None and h.cosine >= retriever.min_score for h in relevant)
    none, _ = retriever.retrieve(ALICE, "quantum chromodynamics of gluon plasma")
    assert none == []


@both_store_modes
def test_hybrid_scores_are_the_studied_score_fusion(tmp_path: Path, stack: dict[str, Any]) -> None:
    """hybrid = 0.45 x cosine + 0.55 x BM25 / the query's BM25 ceiling, recomputed here from the
    two searches; hybrid-rrf ranks by reciprocal rank instead."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in (("parking.md", PARKING), ("crane.md", CRANE), ("soup.txt", SOUP)):
        (docs / name).write_text(text)
    stack["pipeline"].run([docs], ["public"])
    retriever, store = stack["assistant"].retriever, stack["store"]
    question = "How much is the budget for the gantry crane?"
    hits = retriever.rank(ALICE, question, 5, "hybrid")
    assert hits[0].chunk.source.endswith("crane.md")
    ceiling = store.lexical_ceiling(question)
    assert ceiling > 0
    dense = {h.chunk.chunk_id: h.cosine for h in retriever.rank(ALICE, question, 300, "dense")}
    lexical = {h.chunk.chunk_id: h.lexical for h in retriever.rank(ALICE, question, 300, "lexical")}
    floor = min(c for c in dense.values() if c is not None)
    for hit in hits:
        cid = hit.chunk.chunk_id
        expected = 0.45 * (dense.get(cid) or floor) + 0.55 * ((lexical.get(cid) or 0.0) / ceiling)
        assert hit.score == pytest.approx(expected, abs=1e-6)
        assert hit.lexical is None or 0 < hit.lexical / ceiling < 1  # the ceiling bounds BM25
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    rrf = retriever.rank(ALICE, question, 5, "hybrid-rrf")
    assert rrf[0].chunk.source.endswith("crane.md")
    assert rrf[0].score == pytest.approx(2 / 61)  # first in both lists: 1/(60+1) twice


def test_bm25_ceiling_follows_the_index(tmp_path: Path) -> None:
    """The ceiling is FTS5's idf x (k1 + 1) per query word, from the index's own statistics
    (stemmed as indexed, N = all rows), and moves when the index changes."""
    import math

    from vectorstore import fusion

    index = LexicalIndex(tmp_path / "lexical.sqlite3")
    chunks = [
        Chunk(f"d{i}-0", f"d{i}", text, f"/d{i}.md", ("public",))
        for i, text in enumerate(
            [
                "Cranes lift containers.",
                "The crane budget is 4.2 million.",
                "Soup on Tuesdays.",
                "Parking permits.",
            ]
        )
    ]
    index.upsert(chunks)

    def idf(n: int, total: int) -> float:
        return max(math.log((total - n + 0.5) / (n + 0.5)), 1e-6)

    # "cranes" and "crane" stem alike (2 rows hold it); "budget" is in 1 row; "the" is a stop word.
    expected = (idf(2, 4) + idf(1, 4)) * (fusion.FTS5_K1 + 1)
    assert index.ceiling("the cranes budget") == pytest.approx(expected)
    assert index.ceiling("the of") > 0  # only stop words: all words are kept
    assert index.ceiling("") == 0.0
    index.upsert([Chunk("d9-0", "d9", "Another crane arrived.", "/d9.md", ("finance",))])
    assert index.ceiling("crane") == pytest.approx(idf(3, 5) * (fusion.FTS5_K1 + 1))
    index.delete_document("d9", ("finance",))
    assert index.ceiling("crane") == pytest.approx(idf(2, 4) * (fusion.FTS5_K1 + 1))
    # bm25 of any row stays below the ceiling
    for hit in index.search("the cranes budget", 5, ["public"]):
        assert hit.lexical is not None and 0 < hit.lexical < expected


@pytest.mark.parametrize(
    "query",
    [
        '"',
        'crane" OR "x',
        "crane*",
        "NEAR(crane budget)",
        "cls : c123",
        "{title body}: crane",
        "-",
        "a AND",
        "(((",
    ],
)
def test_fts_syntax_in_the_question_is_just_text(tmp_path: Path, query: str) -> None:
    index = LexicalIndex(tmp_path / "lexical.sqlite3")
    index.upsert([Chunk("d1-0", "d1", "The crane budget is 4.2 million.", "/x.md", ("finance",))])
    hits = index.search(query, 5, ["public"])  # never an FTS5 syntax error, never another class
    assert hits == []
    if "crane" in query_terms(query):
        assert len(index.search(query, 5, ["finance"])) == 1


def test_query_terms_drop_stop_words_but_never_everything() -> None:
    assert query_terms("What is the budget for the crane?") == ["budget", "crane"]
    assert query_terms("Who are they?") == ["who", "are", "they"]
    assert query_terms("") == []


# -- metrics and `enclave eval` ------------------------------------------------------------------


def test_metrics_match_hand_computed_values() -> None:
    relevance = {"a": 1, "b": 1}
    ranking = ["x", "a", "y", "b"]
    assert recall_at(ranking, relevance, 2) == 0.5
    assert mrr_at(ranking, relevance, 10) == 0.5
    # dcg = 1/log2(3) + 1/log2(5); idcg = 1 + 1/log2(3)
    assert ndcg_at(ranking, relevance, 10) == pytest.approx(
        (1 / 1.5849625 + 1 / 2.3219281) / (1 + 1 / 1.5849625)
    )
    scores = Scores()
    scores.add(["a", "a", "b"], relevance)  # a document counts once, at its best rank
    scores.add(["x"], {"q": 0})  # a query without relevant documents is not judged
    assert scores.queries == 1 and scores.means()["ndcg@10"] == pytest.approx(1.0)


def beir_set(root: Path) -> Path:
    corpus = [
        {
            "_id": "d1",
            "title": "Harbour cranes",
            "text": "The gantry crane at berth 7 lifts 60 tonnes of containers.",
        },
        {"_id": "d2", "title": "Canteen", "text": "Lentil soup is served on Tuesdays in the staff canteen."},
        {"_id": "d3", "title": "Parking", "text": "Permits for the blue car park cost 12 euros a month."},
        {"_id": "d4", "title": "Tides", "text": "Spring tides at the harbour mouth reach 4.1 metres."},
    ]
    queries = [
        {"_id": "q1", "text": "How much can the berth 7 crane lift?"},
        {"_id": "q2", "text": "When is lentil soup on the menu?"},
        {"_id": "q3", "text": "What does a parking permit cost?"},
    ]
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(c) for c in corpus))
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td3\t1\n")
    return root


def test_enclave_eval_on_a_beir_set(tmp_path: Path, settings: Settings) -> None:
    dataset = beir_set(tmp_path / "tiny")
    out = tmp_path / "result.json"
    runner = CliRunner()
    args = ["--data-dir", str(settings.data_dir), "eval", str(dataset), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "ndcg@10" in result.output and "hybrid" in result.output
    data = json.loads(out.read_text())
    assert data["questions"] == 3 and data["ingest"]["counts"]["new"] == 4
    for mode in ("dense", "lexical", "hybrid", "hybrid-rrf"):
        assert data["scores"][mode]["mrr@10"] == pytest.approx(1.0), mode
    assert data["per_query"][0]["hybrid"]["ranking"][0] == "d1"
    assert (settings.data_dir / "eval" / "tiny" / "files" / "d1.md").is_file()

    again = runner.invoke(
        app, [*args, "--json", "--retrievers", "lexical"]
    )  # incremental: nothing re-ingested
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["ingest"]["counts"]["unchanged"] == 4


def test_enclave_eval_names_a_bad_question_file(tmp_path: Path, settings: Settings) -> None:
    bad = tmp_path / "questions.jsonl"
    bad.write_text('{"question": "x"}\n')
    result = CliRunner().invoke(app, ["--data-dir", str(settings.data_dir), "eval", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}, line 1" in result.output and "relevant" in result.output


# -- optional cross-encoder ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.tiny_cross_encoder import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("models") / "tiny-cross-encoder")


def test_cross_encoder_reorders_the_head_by_its_own_scores(
    tmp_path: Path, settings: Settings, embedder: Any, cross_encoder: Path
) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in (("parking.md", PARKING), ("crane.md", CRANE), ("soup.txt", SOUP)):
        (docs / name).write_text(text)
    settings.retrieval.reranker_path = cross_encoder
    settings.retrieval.rerank_depth = 2
    store = wiring.build_store(settings)
    wiring.build_pipeline(settings, embedder=embedder, store=store).run([docs], ["public"])
    retriever = wiring.build_assistant(settings, embedder=embedder, store=store).retriever
    assert retriever.reranker is not None
    query = "crane budget for the blue car park"
    fused = retriever._rank(ALICE.groups, query, 3, "hybrid")[0]
    reranked = retriever.rank(ALICE, query, 3)

    # The same model run directly with transformers: sigmoid of the single logit per pair.
    tok = AutoTokenizer.from_pretrained(str(cross_encoder), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(cross_encoder), local_files_only=True)
    head = fused[:2]
    batch = tok([query] * 2, [h.chunk.text for h in head], padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        direct = torch.sigmoid(model(**batch).logits[:, 0]).tolist()
    expected = sorted(range(2), key=lambda i: direct[i], reverse=True)
    assert [h.chunk.chunk_id for h in reranked[:2]] == [head[i].chunk.chunk_id for i in expected]
    assert [h.score for h in reranked[:2]] == pytest.approx(sorted(direct, reverse=True), abs=1e-5)
    assert reranked[2].chunk.chunk_id == fused[2].chunk.chunk_id  # below the depth: fused order kept


def test_a_reranker_path_that_is_no_model_is_a_config_error(tmp_path: Path, settings: Settings) -> None:
    from core.errors import ConfigError

    settings.retrieval.reranker_path = tmp_path
    with pytest.raises(ConfigError, match=str(tmp_path)):
        wiring.build_reranker(settings)


def test_enclave_ingest_fills_a_lost_lexical_index_before_it_runs(tmp_path: Path, settings: Settings) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "parking.md").write_text(PARKING)
    runner = CliRunner()
    args = ["--data-dir", str(settings.data_dir), "ingest", str(docs), "--groups", "public"]
    assert runner.invoke(app, args).exit_code == 0
    settings.lexical_path.unlink()  # lost, or a data folder from before the lexical index
    for suffix in ("-wal", "-shm"):
        Path(str(settings.lexical_path) + suffix).unlink(missing_ok=True)
    result = runner.invoke(app, args)  # the file is unchanged: nothing is parsed or embedded
    assert result.exit_code == 0, result.output
    store = wiring.build_store(settings)
    in_step(store)
    assert len(store.search_lexical("blue car park", 3, ["public"])) == 1
