"""Hybrid retrieval steps (vectorstore.fusion): ranks, ties, empty lists, weights, the BM25 ceiling
checked against SQLite FTS5's own bm25()."""

from __future__ import annotations

import math
import sqlite3

import pytest

from vectorstore import fusion

# -- lexical query ------------------------------------------------------------------------------------


def test_query_terms_drop_function_words_and_repeats_keep_order() -> None:
    terms = fusion.lexical_query_terms("The cells of the Heart: heart-cells, not the LIVER's cells")
    assert terms == ["cells", "heart", "liver"]


def test_query_terms_keep_content_words_that_longer_stop_lists_drop() -> None:
    # scikit-learn's list drops these; an organisation's questions need them.
    assert fusion.lexical_query_terms("fire system bill interest") == ["fire", "system", "bill", "interest"]


def test_query_terms_split_like_unicode61_and_casefold() -> None:
    assert fusion.lexical_query_terms("IL-6_receptor β-catenin Straße 3.5mg") == [
        "il",
        "6",
        "receptor",
        "β",
        "catenin",
        "strasse",
        "3",
        "5mg",
    ]


def test_query_terms_with_a_custom_stop_list() -> None:
    assert fusion.lexical_query_terms("the cat and the hat", stop_words=["cat"]) == ["the", "and", "hat"]


def test_query_of_only_stop_words_has_no_terms_and_no_match_expression() -> None:
    assert fusion.lexical_query_terms("Is it not the one?") == ["one"]
    assert fusion.lexical_query_terms("is it not?") == []
    with pytest.raises(ValueError, match="at least one term"):
        fusion.fts5_match([])


def _fts5() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE VIRTUAL TABLE c USING fts5(title, text, tokenize='porter unicode61 remove_diacritics 2')"
    )
    rows = [
        ("Heart cells", "Cardiac cells beat; the heart pumps blood."),
        ("Liver", "The liver cleans blood and stores glycogen."),
        ("Quotes", 'A "quoted" AND NEAR(term) OR column:filter text.'),
        ("Empty title", "Nothing about organs here at all."),
        ("Cells", "Cells cells cells divide."),
    ]
    rows += [("Filler", f"unrelated words number {i}") for i in range(20)]
    db.executemany("INSERT INTO c(title, text) VALUES (?, ?)", rows)
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(c, 'row')")
    return db


def test_match_expression_quotes_fts5_syntax_so_it_is_searched_as_words() -> None:
    db = _fts5()
    terms = fusion.lexical_query_terms('quoted AND NEAR(term) column:filter "x')
    assert terms == ["quoted", "near", "term", "column", "filter", "x"]
    expr = fusion.fts5_match(terms)
    rows = db.execute("SELECT title FROM c WHERE c MATCH ?", (expr,)).fetchall()
    assert rows == [("Quotes",)]
    assert fusion.fts5_match(['say "hi"']) == '"say ""hi"""'


# -- BM25 ceiling -------------------------------------------------------------------------------------


def test_ceiling_bounds_fts5_bm25_and_a_row_full_of_the_terms_comes_close() -> None:
    db = _fts5()
    expr = fusion.fts5_match(["cells", "blood"])

    def ceiling() -> float:
        n_rows = db.execute("SELECT count(*) FROM c").fetchone()[0]
        freqs = [
            db.execute("SELECT doc FROM v WHERE term = ?", (stem,)).fetchone()[0]
            for stem in ("cell", "blood")
        ]
        return fusion.fts5_bm25_ceiling(freqs, n_rows)

    scores = [s for (s,) in db.execute("SELECT -bm25(c) FROM c WHERE c MATCH ?", (expr,))]
    assert len(scores) == 3
    assert all(0 < s < ceiling() for s in scores)
    assert max(scores) < 0.8 * ceiling()
    db.execute("INSERT INTO c(title, text) VALUES (?, ?)", ("", " ".join(["cells blood"] * 500)))
    best = max(s for (s,) in db.execute("SELECT -bm25(c) FROM c WHERE c MATCH ?", (expr,)))
    assert 0.9 * ceiling() < best < ceiling()


def test_ceiling_uses_fts5_idf_with_its_floor() -> None:
    k1 = fusion.FTS5_K1
    assert fusion.fts5_bm25_ceiling([1], 10) == pytest.approx(math.log(9.5 / 1.5) * (k1 + 1))
    # A term in more than half the rows has a negative idf, floored at 1e-6 as FTS5 does.
    assert fusion.fts5_bm25_ceiling([9], 10) == pytest.approx(1e-6 * (k1 + 1))
    # Each OR'd phrase counts, repeats included.
    assert fusion.fts5_bm25_ceiling([1, 1], 10) == pytest.approx(2 * fusion.fts5_bm25_ceiling([1], 10))
    assert fusion.fts5_bm25_ceiling([], 10) == 0.0


@pytest.mark.parametrize(("freqs", "rows"), [([11], 10), ([-1], 10), ([0], -1)])
def test_ceiling_rejects_impossible_counts(freqs: list[int], rows: int) -> None:
    with pytest.raises(ValueError):
        fusion.fts5_bm25_ceiling(freqs, rows)


# -- hybrid fusion ------------------------------------------------------------------------------------


def test_hybrid_fusion_scores_are_the_weighted_sum_on_fixed_scales() -> None:
    dense = [("a", 0.8), ("b", 0.6), ("c", 0.4)]
    lexical = [("b", 9.0), ("d", 3.0)]
    fused = dict(fusion.hybrid_fusion(dense, lexical, lexical_ceiling=10.0, dense_weight=0.5))
    assert fused["a"] == pytest.approx(0.5 * 0.8)
    assert fused["b"] == pytest.approx(0.5 * 0.6 + 0.5 * 0.9)
    assert fused["c"] == pytest.approx(0.5 * 0.4)
    # Missing from the dense list: the lowest cosine that list returned.
    assert fused["d"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.3)


def test_hybrid_fusion_default_weight_is_the_studied_one() -> None:
    fused = dict(fusion.hybrid_fusion([("a", 0.6)], [("a", 5.0)], 10.0))
    assert fused["a"] == pytest.approx(fusion.DENSE_WEIGHT * 0.6 + (1 - fusion.DENSE_WEIGHT) * 0.5)


def test_hybrid_fusion_ranks_agreement_first_and_is_sorted() -> None:
    dense = [("a", 0.8), ("b", 0.7), ("c", 0.2)]
    lexical = [("c", 5.0), ("b", 4.0)]
    fused = fusion.hybrid_fusion(dense, lexical, lexical_ceiling=10.0, dense_weight=0.5)
    assert [i for i, _ in fused] == ["b", "a", "c"]
    scores = [s for _, s in fused]
    assert scores == sorted(scores, reverse=True)


def test_hybrid_fusion_weight_moves_the_ranking_between_retrievers() -> None:
    dense = [("d", 0.9), ("l", 0.1)]
    lexical = [("l", 9.0), ("d", 1.0)]
    assert fusion.hybrid_fusion(dense, lexical, 10.0, dense_weight=1.0)[0][0] == "d"
    assert fusion.hybrid_fusion(dense, lexical, 10.0, dense_weight=0.0)[0][0] == "l"
    assert fusion.hybrid_fusion(dense, lexical, 10.0, dense_weight=0.8)[0][0] == "d"
    assert fusion.hybrid_fusion(dense, lexical, 10.0, dense_weight=0.2)[0][0] == "l"


def test_hybrid_fusion_ties_keep_first_appearance_dense_first() -> None:
    dense = [("x", 0.5), ("y", 0.5)]
    assert [i for i, _ in fusion.hybrid_fusion(dense, [], 1.0, dense_weight=0.5)] == ["x", "y"]
    # "l" (lexical only, scoring 0) ties "y" (dense only, the lowest cosine): "y" was met first.
    fused = fusion.hybrid_fusion([("x", 0.9), ("y", 0.1)], [("l", 0.0)], 10.0, dense_weight=0.5)
    assert [i for i, _ in fused] == ["x", "y", "l"]
    assert fused[1][1] == fused[2][1]


def test_hybrid_fusion_empty_lists() -> None:
    assert fusion.hybrid_fusion([], [], 0.0) == []
    assert fusion.hybrid_fusion([("a", 0.3)], [], 0.0, dense_weight=0.5) == [("a", pytest.approx(0.5 * 0.3))]
    # No dense hits: lexical order, and the dense part is 0 for everyone.
    only_lexical = fusion.hybrid_fusion([], [("a", 2.0), ("b", 4.0)], 8.0, dense_weight=0.5)
    assert only_lexical == [("b", pytest.approx(0.25)), ("a", pytest.approx(0.125))]


def test_hybrid_fusion_a_repeated_id_counts_at_its_first_place() -> None:
    fused = dict(fusion.hybrid_fusion([("a", 0.9), ("a", 0.1)], [("a", 2.0), ("a", 8.0)], 10.0, 0.5))
    assert fused == {"a": pytest.approx(0.5 * 0.9 + 0.5 * 0.2)}


def test_hybrid_fusion_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="lexical_ceiling"):
        fusion.hybrid_fusion([("a", 0.5)], [("a", 1.0)], 0.0)
    with pytest.raises(ValueError, match="dense_weight"):
        fusion.hybrid_fusion([("a", 0.5)], [], 1.0, dense_weight=1.5)
    with pytest.raises(ValueError, match="finite"):
        fusion.hybrid_fusion([("a", math.nan)], [], 1.0)


# -- reciprocal rank fusion ---------------------------------------------------------------------------


def test_rrf_scores_by_rank_not_by_score() -> None:
    fused = dict(fusion.reciprocal_rank_fusion([[("a", 100.0), ("b", 0.1)], [("b", 0.9)]], k=60))
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)


def test_rrf_weights_and_k() -> None:
    lists = [[("a", 1.0), ("b", 0.5)], [("b", 1.0), ("a", 0.5)]]
    assert [i for i, _ in fusion.reciprocal_rank_fusion(lists, weights=[2.0, 1.0])] == ["a", "b"]
    assert [i for i, _ in fusion.reciprocal_rank_fusion(lists, weights=[1.0, 2.0])] == ["b", "a"]
    # Equal weights: a tie, broken by first appearance.
    assert [i for i, _ in fusion.reciprocal_rank_fusion(lists)] == ["a", "b"]
    # A small k rewards the top rank more.
    fused = dict(fusion.reciprocal_rank_fusion([[("a", 1.0), ("b", 0.5), ("c", 0.1)], [("c", 1.0)]], k=1))
    assert fused["a"] == pytest.approx(1 / 2)
    assert fused["c"] == pytest.approx(1 / 4 + 1 / 2)


def test_rrf_empty_lists_and_repeats() -> None:
    assert fusion.reciprocal_rank_fusion([]) == []
    assert fusion.reciprocal_rank_fusion([[], []]) == []
    assert fusion.reciprocal_rank_fusion([[("a", 1.0), ("a", 0.5)]], k=1) == [("a", pytest.approx(0.5))]


def test_rrf_rejects_bad_weights_and_k() -> None:
    with pytest.raises(ValueError, match="one per list"):
        fusion.reciprocal_rank_fusion([[("a", 1.0)]], weights=[1.0, 1.0])
    with pytest.raises(ValueError, match=">= 0"):
        fusion.reciprocal_rank_fusion([[("a", 1.0)]], weights=[-1.0])
    with pytest.raises(ValueError, match="k"):
        fusion.reciprocal_rank_fusion([[("a", 1.0)]], k=0)


# -- chunks to documents ------------------------------------------------------------------------------


def test_best_per_group_keeps_each_documents_best_chunk() -> None:
    hits = [("d1-0", 0.9), ("d2-0", 0.8), ("d1-1", 0.7), ("d3-0", 0.8)]
    docs = fusion.best_per_group(hits, lambda chunk: chunk.split("-")[0])
    assert docs == [("d1", 0.9), ("d2", 0.8), ("d3", 0.8)]


def test_best_per_group_sorts_an_unsorted_input() -> None:
    hits = [("d1-0", 0.1), ("d2-0", 0.5), ("d1-1", 0.7)]
    assert fusion.best_per_group(hits, lambda c: c[:2]) == [("d1", 0.7), ("d2", 0.5)]
    assert fusion.best_per_group([], lambda c: c) == []
