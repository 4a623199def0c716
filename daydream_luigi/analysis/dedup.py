"""Near-duplicate essays: clusters at a cosine-similarity threshold, one representative per cluster.

Clustering is greedy leader clustering in rank order (best mean score first, ties by gen_id, unscored essays
last): the best essay not yet in a cluster founds one and takes every unclustered essay at similarity >= the
threshold to it. Unlike connected components of the threshold graph, this never chains (A~B and B~C putting C
with A although A and C differ), so every essay a shortlist drops is a near-duplicate of the essay it keeps, and
no two representatives are near-duplicates of each other. The representative of a cluster is its founder, which
is its best-scoring member by construction.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from daydream_luigi.core.errors import InputError

DEFAULT_THRESHOLD = 0.8  # Si et al. (2024) deduplicated generated ideas at cosine 0.8 of all-MiniLM-L6-v2
DEDUP_COLUMNS = ["gen_id", "cluster", "representative", "nearest_similarity", "nearest", "mean_score"]


def _unit_rows(gen_ids: Sequence[str], vectors: ArrayLike) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != len(gen_ids):
        raise InputError(
            f"dedup: got {matrix.shape[0] if matrix.ndim else 0} embedding vectors for "
            f"{len(gen_ids)} essays; embed every essay once"
        )
    norms = np.linalg.norm(matrix, axis=1)
    for gen_id, row, norm in zip(gen_ids, matrix, norms):
        if not np.all(np.isfinite(row)) or norm == 0.0:
            raise InputError(
                f"dedup: the embedding of essay {gen_id!r} is zero or not finite; "
                f"delete its embedding-*.json file and embed it again"
            )
    unit: np.ndarray = matrix / norms[:, None]
    return unit


def dedup_clusters(
    gen_ids: Sequence[str], vectors: ArrayLike, mean_scores: Mapping[str, float], threshold: float = DEFAULT_THRESHOLD
) -> pd.DataFrame:
    """reports/dedup_clusters.csv: one row per essay, by cluster (1 = the best representative), representative
    first, then members in rank order.

    ``vectors`` has one row per gen_id (any length, not necessarily normalised); ``mean_scores`` maps gen_id to
    the essay's mean score (missing or NaN: unscored). ``nearest_similarity`` is the essay's highest cosine
    similarity to any other essay (NaN when it is alone) and ``nearest`` that essay.
    """
    ids = list(gen_ids)
    duplicates = sorted(g for g, n in Counter(ids).items() if n > 1)
    if duplicates:
        raise InputError(f"dedup: essay {duplicates[0]!r} is listed twice; list each essay once")
    if not 0.0 < threshold <= 1.0:
        raise InputError(f"dedup: --threshold must be above 0 and at most 1, got {threshold}")
    if not ids:
        return pd.DataFrame(columns=DEDUP_COLUMNS)
    units = _unit_rows(ids, vectors)
    similarity = units @ units.T

    scores = [float(mean_scores.get(g, math.nan)) for g in ids]
    order = sorted(range(len(ids)), key=lambda k: (math.isnan(scores[k]), -np.nan_to_num(scores[k]), ids[k]))
    rank = np.empty(len(ids), dtype=int)
    rank[order] = np.arange(len(ids))
    cluster_of = np.zeros(len(ids), dtype=int)
    representatives: list[str] = []
    members: list[int] = []  # cluster by cluster, each in rank order
    for k in order:
        if cluster_of[k]:
            continue
        representatives.append(ids[k])
        joining = np.flatnonzero((cluster_of == 0) & (similarity[k] >= threshold))
        joining = np.union1d(joining, [k])  # k itself, even if rounding put its self-similarity below 1
        joining = joining[np.argsort(rank[joining])]
        cluster_of[joining] = len(representatives)
        members.extend(int(m) for m in joining)

    others = similarity.copy()
    np.fill_diagonal(others, -np.inf)
    nearest = others.argmax(axis=1)
    alone = len(ids) == 1
    rows = [
        {
            "gen_id": ids[k],
            "cluster": int(cluster_of[k]),
            "representative": representatives[cluster_of[k] - 1],
            "nearest_similarity": math.nan if alone else float(others[k, nearest[k]]),
            "nearest": "" if alone else ids[nearest[k]],
            "mean_score": scores[k],
        }
        for k in members
    ]
    return pd.DataFrame(rows, columns=DEDUP_COLUMNS)
