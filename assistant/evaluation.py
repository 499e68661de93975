"""Retrieval quality: the standard ranking metrics over document-level relevance judgements.

Computed as pytrec_eval and MTEB compute them, so figures are comparable with published ones:
nDCG@k with linear gains (the judged relevance) and a log2 discount, the ideal ordering taken
from all judged documents of the query; Recall@k = relevant found in the top k / relevant judged;
MRR@k = 1 / rank of the first relevant document in the top k (0 if none). A query's ranking is
of documents: chunks are mapped to their document and only a document's best-ranked chunk counts.
Each metric is the mean over queries that have at least one relevant document.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

CUTOFFS = (5, 10)


def dedupe(keys: Iterable[str]) -> list[str]:
    """Document keys in rank order, each once (its best rank)."""
    return list(dict.fromkeys(keys))


def ndcg_at(ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    dcg = sum(relevance.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranking[:k]))
    ideal = sorted((r for r in relevance.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    relevant = {d for d, r in relevance.items() if r > 0}
    return len(relevant.intersection(ranking[:k])) / len(relevant) if relevant else 0.0


def mrr_at(ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    for i, doc in enumerate(ranking[:k]):
        if relevance.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


@dataclass
class Scores:
    """Mean metrics over the judged queries of one retriever."""

    queries: int = 0
    sums: dict[str, float] = field(default_factory=dict)

    def add(self, ranking: Sequence[str], relevance: Mapping[str, int]) -> dict[str, float]:
        if not any(r > 0 for r in relevance.values()):
            return {}
        ranking = dedupe(ranking)
        one = {"ndcg@10": ndcg_at(ranking, relevance, 10), "mrr@10": mrr_at(ranking, relevance, 10)}
        for k in CUTOFFS:
            one[f"recall@{k}"] = recall_at(ranking, relevance, k)
        self.queries += 1
        for name, value in one.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        return one

    def means(self) -> dict[str, float]:
        return (
            {name: total / self.queries for name, total in sorted(self.sums.items())} if self.queries else {}
        )


__all__ = ["CUTOFFS", "Scores", "dedupe", "mrr_at", "ndcg_at", "recall_at"]
