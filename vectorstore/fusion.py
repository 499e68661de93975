"""Hybrid retrieval over plain data: the lexical query's terms, dense + BM25 fusion, chunks to documents.

Pure functions over ``(id, score)`` lists (best first, higher is better) with no store and no
database, so the retriever can call them on whatever Chroma and SQLite FTS5 returned. Every
constant was chosen on SciFact's *train* split by ``bench/retrieval_study.py`` (figures in
``bench/results/retrieval_study.json``); the test split was only reported, once.

The recipe (SciFact nDCG@10, train / test: 0.751 / 0.743; plain RRF 0.719 / 0.725, dense alone
0.682 / 0.664, FTS5 BM25 alone 0.698 / 0.686):

1. Lexical query: :func:`lexical_query_terms` (function words dropped) OR'd by :func:`fts5_match`,
   ranked by FTS5's ``bm25()`` with equal column weights.
2. The top FUSION_DEPTH chunks of each retriever, fused per chunk by :func:`hybrid_fusion`:
   0.45 x cosine + 0.55 x BM25 divided by the query's BM25 ceiling (:func:`fts5_bm25_ceiling`).
3. Documents ranked by their best chunk (:func:`best_per_group`).

Measured on train and not kept (gain below 0.003 nDCG@10 or not above noise): tuned RRF (k=5,
0.732, beaten by step 2's 0.751), z-score / min-max / distribution-based normalisation (0.743 /
0.741 / 0.721), fusing per document instead of per chunk (0.749), dense Rocchio feedback (+0.000),
RM3 lexical feedback (-0.001), other BM25 k1/b through a Python re-scorer (+0.003, P=0.85), a
title column weight (+0.002 lexical alone), adding a document's other chunks (-0.009).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

Ranked = Sequence[tuple[str, float]]

# Plain RRF's constant (Cormack, Clarke & Büttcher 2009): the baseline the study measured.
RRF_K: Final = 60.0

# Weight of the cosine in hybrid_fusion; the BM25 part gets 1 - DENSE_WEIGHT. Best of 0.05 steps
# from 0.2 to 0.8 on train (0.40 and 0.50 within 0.005 of it); every fold of a 5-fold
# cross-validation inside train picked it too.
DENSE_WEIGHT: Final = 0.45

# Chunks asked of each retriever before fusion: of 100, 300 and 1000 each on train, 300 and 300
# was best (100 from either lost 0.001-0.004 nDCG@10; 1000 gained nothing).
FUSION_DEPTH: Final = 300

# FTS5's bm25() constants: fixed by SQLite, not tunable from SQL.
FTS5_K1: Final = 1.2
FTS5_B: Final = 0.75

# bm25() column weights (title, text) for a chunks table with the document title in its own
# column: on train, lexical alone, title 1.5 gained 0.002 nDCG@10 (P(gain>0) 0.87, noise), 2.0
# nothing, 3.0 lost 0.004; so equal weights.
FTS5_TITLE_WEIGHT: Final = 1.0
FTS5_TEXT_WEIGHT: Final = 1.0

# English function words dropped from the lexical query: NLTK's English list (179 words) less its
# 26 forms with an apostrophe, which the tokenizer splits into pieces that are on the list. On train, lexical alone (nDCG@10): 0.698,
# against 0.697 for scikit-learn's 318 words (which also drop content words such as "fire",
# "system", "bill"), 0.691 for Lucene's 33 and 0.690 for none (+0.0085, P(gain>0) 1.0). It also
# keeps the longest postings out of the query: 27 ms a query here against 69 ms with none.
LEXICAL_STOP_WORDS: Final = frozenset(
    """
    a about above after again against ain all am an and any are aren as at be because been before
    being below between both but by can couldn d did didn do does doesn doing don down during each
    few for from further had hadn has hasn have haven having he her here hers herself him himself
    his how i if in into is isn it its itself just ll m ma me mightn more most mustn my myself
    needn no nor not now o of off on once only or other our ours ourselves out over own re s same
    shan she should shouldn so some such t than that the their theirs them themselves then there
    these they this those through to too under until up ve very was wasn we were weren what when
    where which while who whom why will with won wouldn y you your yours yourself yourselves
    """.split()
)

# What FTS5's unicode61 tokenizer keeps as token characters: letters and digits (\w less "_").
_TOKEN = re.compile(r"[^\W_]+")


def lexical_query_terms(text: str, stop_words: Iterable[str] = LEXICAL_STOP_WORDS) -> list[str]:
    """The words of a question to OR together in the lexical query, in order, each once.

    Casefolded runs of letters and digits (as FTS5's unicode61 tokenizer splits text), less
    `stop_words`. Words that share a stem ("cell", "cells") both stay: FTS5 scores each OR'd
    phrase, which is what the study measured.
    """
    stops = stop_words if isinstance(stop_words, frozenset | set) else frozenset(stop_words)
    terms: list[str] = []
    for token in _TOKEN.findall(text.casefold()):
        if token not in stops and token not in terms:
            terms.append(token)
    return terms


def fts5_match(terms: Sequence[str]) -> str:
    """An FTS5 MATCH expression that ORs `terms`, each quoted so that no word is FTS5 syntax."""
    if not terms:
        raise ValueError("terms: an FTS5 query needs at least one term (the question had only stop words?)")
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


def fts5_bm25_ceiling(doc_freqs: Sequence[int], n_rows: int, k1: float = FTS5_K1) -> float:
    """The score FTS5's bm25() approaches for a row holding every phrase of the query many times.

    bm25() sums, per OR'd phrase, idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len / avglen)),
    which tends to idf * (k1 + 1) as the (weighted) frequency f grows, whatever the column weights;
    idf = ln((N - n + 0.5) / (n + 0.5)), floored at 1e-6 as FTS5 does. `doc_freqs` holds n for
    each OR'd phrase (the same phrase twice counts twice, as in bm25()): for a one-token phrase,
    the ``doc`` column of an fts5vocab table of type 'row' for the phrase's token as the tokenizer
    stems it. `n_rows` is N, the rows of the whole table (bm25() does not see the group filter).
    Dividing by this ceiling puts a query's BM25 scores on a fixed [0, 1) scale.
    """
    if n_rows < 0:
        raise ValueError(f"n_rows: {n_rows} must be >= 0")
    total = 0.0
    for n in doc_freqs:
        if not 0 <= n <= n_rows:
            raise ValueError(f"doc_freqs: {n} is not between 0 and n_rows={n_rows}")
        idf = math.log((n_rows - n + 0.5) / (n + 0.5))
        total += (idf if idf > 0 else 1e-6) * (k1 + 1.0)
    return total


def _order(scores: Mapping[str, float], first_seen: Mapping[str, int]) -> list[tuple[str, float]]:
    # Ties go to the id met first (scanning the inputs in order): deterministic, independent of
    # how ids are spelled.
    return sorted(scores.items(), key=lambda item: (-item[1], first_seen[item[0]]))


def _firsts(ranked: Ranked) -> dict[str, float]:
    out: dict[str, float] = {}
    for item, score in ranked:
        if not math.isfinite(score):
            raise ValueError(f"score of {item!r} is {score}: scores must be finite")
        out.setdefault(item, score)  # an id repeated in one list counts at its first place
    return out


def hybrid_fusion(
    dense: Ranked, lexical: Ranked, lexical_ceiling: float, dense_weight: float = DENSE_WEIGHT
) -> list[tuple[str, float]]:
    """Fuse dense and lexical hits by score: w * cosine + (1 - w) * bm25 / ceiling.

    `dense` holds cosine similarities (the store's ``Hit.cosine``); `lexical` holds positive BM25
    scores (FTS5's ``-bm25(...)``) and `lexical_ceiling` is :func:`fts5_bm25_ceiling` for the same
    query. Both parts are then on fixed scales, so the fused score means the same across queries.
    An id the dense list lacks gets the lowest cosine that list returned (it ranked below all of
    them; 0.0 when the list is empty); one the lexical list lacks gets 0, as a row matching no
    term does. Ties keep first appearance, dense list first. Returns ids and scores, best first.
    """
    if not 0.0 <= dense_weight <= 1.0:
        raise ValueError(f"dense_weight: {dense_weight} must be between 0 and 1")
    cosines = _firsts(dense)
    bm25 = _firsts(lexical)
    if bm25 and not (lexical_ceiling > 0 and math.isfinite(lexical_ceiling)):
        raise ValueError(f"lexical_ceiling: {lexical_ceiling} must be > 0 when there are lexical hits")
    dense_floor = min(cosines.values()) if cosines else 0.0
    first_seen: dict[str, int] = {}
    for item in (*cosines, *bm25):
        first_seen.setdefault(item, len(first_seen))
    fused = {
        item: dense_weight * cosines.get(item, dense_floor)
        + (1.0 - dense_weight) * (bm25[item] / lexical_ceiling if item in bm25 else 0.0)
        for item in first_seen
    }
    return _order(fused, first_seen)


def reciprocal_rank_fusion(
    lists: Sequence[Ranked], k: float = RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Fuse ranked lists by weighted reciprocal rank: score(id) = sum_i w_i / (k + rank_i(id)).

    Ranks are 1-based places in each list; scores are ignored; an id repeated within a list
    counts at its first place. Ties keep first appearance, scanning the lists in order. Returns
    ids and fused scores, best first. The study's baseline: hybrid_fusion beat it at every k and
    weight tried on train.
    """
    if not (k > 0 and math.isfinite(k)):
        raise ValueError(f"k: {k} must be > 0")
    if weights is None:
        weights = [1.0] * len(lists)
    elif len(weights) != len(lists):
        raise ValueError(f"weights: {len(weights)} given for {len(lists)} ranked lists; give one per list")
    elif any(not (w >= 0 and math.isfinite(w)) for w in weights):
        raise ValueError(f"weights: {list(weights)} must be finite and >= 0")
    fused: dict[str, float] = {}
    first_seen: dict[str, int] = {}
    for weight, ranked in zip(weights, lists):
        seen: set[str] = set()
        for rank, (item, _score) in enumerate(ranked, start=1):
            if item in seen:
                continue
            seen.add(item)
            first_seen.setdefault(item, len(first_seen))
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return _order(fused, first_seen)


def best_per_group(ranked: Ranked, group_of: Callable[[str], str]) -> list[tuple[str, float]]:
    """Roll hits up to groups (chunks to their documents); a group scores its best member.

    Adding a tenth of the next chunks' scores lost 0.009 nDCG@10 on train, adding all of the
    second chunk's 0.104. Ties keep the order in which groups first appear. Returns groups and
    scores, best first.
    """
    best: dict[str, float] = {}
    first_seen: dict[str, int] = {}
    for item, score in ranked:
        group = group_of(item)
        first_seen.setdefault(group, len(first_seen))
        if group not in best or score > best[group]:
            best[group] = score
    return _order(best, first_seen)
