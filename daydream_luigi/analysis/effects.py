"""What each concept, and each pair of concepts held together, does to an essay's score.

The cohort's question is which combinations of concepts make better essays; these tables answer it with a
difference of means per concept and per pair, the essay as the unit, and its interval with each combination as one
cluster: the essays of one combination (its drafts, templates, models and replicates) hold the same concepts, so they
are one piece of evidence about them, not several. The interval is cluster-robust (`intervals.cluster_welch_interval`:
the Liang-Zeger variance of each mean, Welch-Satterthwaite degrees of freedom counted in combinations), closed-form and
deterministic, where a cluster bootstrap would be random and unstable with the handful of combinations a cohort has.
It is NaN unless both sides hold two combinations or more, and with one essay per combination it is the plain Welch
interval.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd

from daydream_luigi.analysis.intervals import cluster_mean_variance, cluster_welch_interval
from daydream_luigi.analysis.scores import ConceptMap, empty_table, essay_means, scored_rows

_EFFECT_STATISTICS: list[str] = [
    "n_with",
    "mean_with",
    "n_without",
    "mean_without",
    "difference",
    "ci_low",
    "ci_high",
]

CONCEPT_EFFECT_COLUMNS: list[str] = ["evaluation_template", "concept_id", "concept", *_EFFECT_STATISTICS]

CONCEPT_PAIR_EFFECT_COLUMNS: list[str] = [
    "evaluation_template",
    "concept_id_a",
    "concept_a",
    "concept_id_b",
    "concept_b",
    *_EFFECT_STATISTICS,
]


def _concept_essays(scores: pd.DataFrame, concepts: ConceptMap) -> tuple[pd.DataFrame, list[str]]:
    """Essay scores per template whose combo is known, with its ``combo_id`` and the indices (into the returned ids) of
    its concepts."""
    df = scored_rows(scores)
    df = df[df["evaluation_template"].notna()]
    combos = df.groupby("parent_gen_id", sort=True)["combo_id"].first()
    essays = essay_means(df)
    essays["combo_id"] = essays["parent_gen_id"].map(combos)
    held = essays["combo_id"].map(concepts.concept_ids)
    essays, held = essays[held.map(len) > 0].reset_index(drop=True), held[held.map(len) > 0].reset_index(drop=True)
    ids = sorted({c for concept_ids in held for c in concept_ids})
    index = {c: i for i, c in enumerate(ids)}
    essays["concepts"] = [[index[c] for c in concept_ids] for concept_ids in held]
    return essays, ids


def _effects(essays: pd.DataFrame, keys: Callable[[list[int]], list[int]]) -> pd.DataFrame:
    """With / without statistics per key over `essays` (``score``, ``combo_id``, ``concepts``), each combination one
    cluster that holds the keys `keys` gives its concepts.

    The point estimates are over essays; the interval is :func:`cluster_welch_interval` of the two essay means, each
    combination a cluster (its essays share their concepts, so they are not independent evidence about them). Works
    from per-key sums over the combinations holding the key (one row per combination and key), so the cost follows
    what the combinations hold, not essays x keys (100 concepts: 4,950 pairs over 20,000 essays in a fraction of a
    second).
    """
    # Sums of centred scores keep the variances exact enough for scores on a 0..10 scale.
    x = essays["score"].to_numpy() - essays["score"].mean()
    by_combo = (
        pd.DataFrame({"combo": essays["combo_id"].to_numpy(), "x": x})
        .groupby("combo", sort=True)["x"]
        .agg(["size", "sum"])
    )
    held = essays.groupby("combo_id", sort=True)["concepts"].first()
    clusters = pd.DataFrame(
        {
            "key": [keys(concept_ids) for concept_ids in held.loc[by_combo.index]],
            "n": by_combo["size"].to_numpy(dtype="float64"),
            "s": by_combo["sum"].to_numpy(),
        }
    )
    clusters = clusters.assign(sq=clusters["s"] ** 2, ns=clusters["n"] * clusters["s"], nn=clusters["n"] ** 2, c=1.0)
    columns = ["c", "n", "s", "sq", "ns", "nn"]
    total = clusters[columns].sum()
    inside = clusters.explode("key").dropna(subset=["key"]).groupby("key", sort=True)[columns].sum()
    sides = {"with": inside, "without": total - inside}
    means, variances = {}, {}
    with np.errstate(invalid="ignore", divide="ignore"):  # a side without essays has no mean
        for side, sums in sides.items():
            means[side] = (sums["s"] / sums["n"]).to_numpy()
            variances[side] = cluster_mean_variance(
                sums["c"], sums["n"], sums["sq"], sums["ns"], sums["nn"], means[side]
            )
    difference = means["with"] - means["without"]
    low, high = cluster_welch_interval(
        inside["c"], variances["with"], sides["without"]["c"], variances["without"], difference
    )
    return pd.DataFrame(
        {
            "n_with": inside["n"].to_numpy().astype("int64"),
            "mean_with": means["with"] + essays["score"].mean(),
            "n_without": sides["without"]["n"].to_numpy().astype("int64"),
            "mean_without": means["without"] + essays["score"].mean(),
            "difference": difference,
            "ci_low": low,
            "ci_high": high,
        },
        index=inside.index.astype("int64"),
    )


def concept_effects(scores: pd.DataFrame, concepts: ConceptMap) -> pd.DataFrame:
    """Per evaluation template and concept: how essays whose combo holds the concept score against the others.

    The unit is the essay: its score for a template is the mean of its evaluations.  Only
    essays whose ``combo_id`` ``concepts`` knows take part.  ``n_with`` / ``mean_with`` are over essays with
    the concept, ``n_without`` / ``mean_without`` over the template's other essays, ``difference`` is
    ``mean_with - mean_without`` and ``ci_low`` / ``ci_high`` its interval with each combination one cluster (the
    module docstring; NaN unless both sides hold two combinations or more).  Columns
    :data:`CONCEPT_EFFECT_COLUMNS`, sorted by template and ``concept_id``.
    """
    essays, ids = _concept_essays(scores, concepts)
    parts = []
    for template, rows in essays.groupby("evaluation_template", sort=True):
        effects = _effects(rows, list)
        chosen = [ids[i] for i in effects.index]
        parts.append(
            effects.reset_index(drop=True).assign(
                evaluation_template=template, concept_id=chosen, concept=[concepts.name(c) for c in chosen]
            )
        )
    if not parts:
        return empty_table(CONCEPT_EFFECT_COLUMNS)
    return pd.concat(parts, ignore_index=True)[CONCEPT_EFFECT_COLUMNS]


def concept_pair_effects(scores: pd.DataFrame, concepts: ConceptMap) -> pd.DataFrame:
    """As :func:`concept_effects`, per unordered pair of concepts held together by at least one essay's combo.

    "With" are the essays whose combo holds both concepts, "without" every other essay of the template
    (including those holding one of the two).  ``concept_id_a < concept_id_b``.  Columns
    :data:`CONCEPT_PAIR_EFFECT_COLUMNS`, sorted by template, then the two ids.
    """
    essays, ids = _concept_essays(scores, concepts)
    width = len(ids)
    parts = []

    def pairs(held: list[int]) -> list[int]:
        return [a * width + b for a, b in itertools.combinations(sorted(held), 2)]

    for template, rows in essays.groupby("evaluation_template", sort=True):
        if not any(len(held) >= 2 for held in rows["concepts"]):
            continue
        effects = _effects(rows, pairs)
        first, second = ([ids[i] for i in side] for side in divmod(effects.index.to_numpy(), width))
        parts.append(
            effects.reset_index(drop=True).assign(
                evaluation_template=template,
                concept_id_a=first,
                concept_a=[concepts.name(c) for c in first],
                concept_id_b=second,
                concept_b=[concepts.name(c) for c in second],
            )
        )
    if not parts:
        return empty_table(CONCEPT_PAIR_EFFECT_COLUMNS)
    return pd.concat(parts, ignore_index=True)[CONCEPT_PAIR_EFFECT_COLUMNS]
