"""Editing a document re-embeds only what changed: chunks whose embedded text (words, title,
heading) an earlier version of the file already had take that version's stored vector. On the
real parts: the real embedding model, Chroma embedded and as a server."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from enclave import wiring
from ingest.chunking import embedding_text
from ingest.manifest import Manifest
from tests.support.chroma_server import both_store_modes

pytestmark = pytest.mark.slow


class CountingEmbedder:
    """The real embedder, keeping every passage it is asked to embed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.texts: list[str] = []

    def embed_documents(self, texts: Any) -> list[list[float]]:
        self.texts.extend(texts)
        return self.inner.embed_documents(texts)  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)  # type: ignore[no-any-return]


SECTIONS = {
    "Heating": "The boiler in the basement is serviced every October by the facilities team.",
    "Parking": "Visitors park on level two of the north garage and register at the front desk.",
    "Canteen": "The canteen serves a vegetarian dish every day and closes at three in the afternoon.",
    "Security": "Badges must be worn visibly; lost badges are reported to the security office.",
    "Printing": "Colour printing needs a cost code, which the finance office hands out on request.",
}


def manual(sections: dict[str, str]) -> str:
    """The manual, each section long enough to be a chunk of its own (shorter ones would join
    their neighbours, ingest.chunking)."""
    return "# Office manual\n\n" + "".join(
        f"## {h}\n\n{t} The {h.lower()} rules apply to staff, visitors and contractors alike, on "
        f"every site. Questions about {h.lower()} go to the office manager, who keeps this "
        f"section up to date and answers within a working day.\n\n"
        for h, t in sections.items()
    )


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@pytest.fixture
def parts(settings: Settings, embedder: Any) -> dict[str, Any]:
    counting = CountingEmbedder(embedder)
    store = wiring.build_store(settings)
    return {
        "embedder": counting,
        "store": store,
        "pipeline": wiring.build_pipeline(settings, embedder=counting, store=store),  # type: ignore[arg-type]
        "manifest": Manifest(settings.manifest_path),
    }


def stored(parts: dict[str, Any], path: Path) -> tuple[str, dict[str, list[float]]]:
    entry = parts["manifest"].file(str(path.resolve()))
    doc = parts["manifest"].doc(entry.doc_id)
    pairs = parts["store"].document_embeddings(doc.doc_id, doc.groups)
    return doc.doc_id, {embedding_text(chunk): vector for chunk, vector in pairs}


@both_store_modes
def test_an_edited_document_embeds_only_its_changed_chunks(parts: dict[str, Any], tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    path = docs / "manual.md"
    path.write_text(manual(SECTIONS))
    pipeline, emb = parts["pipeline"], parts["embedder"]
    first = pipeline.run([docs], ["staff"])
    old_id, old = stored(parts, path)
    n = len(old)  # a chunk per section, and the title's own
    assert n >= len(SECTIONS) and (first.embedded, first.reused) == (n, 0)

    edited = dict(SECTIONS, Canteen="The canteen now closes at four and serves breakfast from eight.")
    path.write_text(manual(edited))
    emb.texts.clear()
    report = pipeline.run([docs], ["staff"])

    assert [f.status for f in report.files] == ["changed"]
    assert len(emb.texts) == 1 and "closes at four" in emb.texts[0]  # the edited section alone
    assert (report.embedded, report.reused) == (1, n - 1)
    assert f"{n - 1} reused from earlier versions" in report.summary()
    assert report.as_dict()["chunks_reused"] == n - 1
    new_id, new = stored(parts, path)
    assert new_id != old_id and parts["manifest"].doc(old_id) is None
    assert parts["store"].document_ids() == {new_id: n}  # the old version is gone
    for text, vector in new.items():
        if text in old:
            assert vector == pytest.approx(old[text], abs=1e-6)  # the stored vector, reused
        else:
            # Embedded now, and the vector the embedder gives that text.
            assert cosine(vector, emb.inner.embed_documents([text])[0]) > 0.9999
    hits = parts["store"].search(emb.embed_query("When does the canteen close?"), 1, ["staff"])
    assert "closes at four" in hits[0].chunk.text


def test_nothing_is_reused_from_another_model_or_a_retitled_document(
    parts: dict[str, Any], tmp_path: Path, settings: Settings
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    path = docs / "manual.md"
    path.write_text(manual(SECTIONS))
    n = parts["pipeline"].run([docs], ["staff"]).embedded

    # A new title changes every chunk's embedded text: all are embedded again.
    path.write_text(manual(SECTIONS).replace("# Office manual", "# Office handbook"))
    report = parts["pipeline"].run([docs], ["staff"])
    assert (report.embedded, report.reused) == (n, 0)

    # Vectors stored by another model are never mixed with this one's.
    other = CountingEmbedder(parts["embedder"].inner)
    other.model_id = "another-model"
    pipeline = wiring.build_pipeline(settings, embedder=other, store=parts["store"])  # type: ignore[arg-type]
    path.write_text(
        manual(dict(SECTIONS, Heating="The boiler is serviced in spring.")).replace("manual", "handbook")
    )
    report = pipeline.run([docs], ["staff"])
    # Every chunk embedded again, none reused (the shorter Heating section may join its neighbour).
    assert report.reused == 0 and report.embedded == report.chunks_added > 0


def test_a_passage_two_documents_share_is_embedded_once(parts: dict[str, Any], tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    # Two versions of one manual under two names, differing in one section: one batch.
    (docs / "manual-2025.md").write_text(manual(SECTIONS))
    (docs / "manual-2026.md").write_text(
        manual(
            dict(
                SECTIONS, Parking="Parking is now on level three of the south garage, from the first of May."
            )
        )
    )
    report = parts["pipeline"].run([docs], ["staff"])
    n = report.chunks_added // 2  # chunks of each version
    assert report.count("new") == 2 and n >= len(SECTIONS)
    assert report.embedded == n + 1 == len(parts["embedder"].texts)  # the shared ones once
    assert parts["store"].count() == 2 * n  # each document keeps all its chunks
