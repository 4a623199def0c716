"""Pipelining across stages, measured at the endpoint: cohort W, the split-pool cohort, and how soon the first
evaluation is answered (at 50 and at 5,000 generations).

  W      4 concepts (6 combinations) x 2 draft templates x 1 generation model = 12 drafts, 12 llm essays, 2 judges =
         24 evaluations; one pool `paid` of 5; every call 0.5 s. Ideal: ceil(48 / 5) = 10 rounds x 0.5 s = 5.0 s.
  split  3 concepts (3 combinations) x 2 draft templates x 2 generation models: `gen-free` in pool `free` (limit 1)
         and `gen-paid` in pool `paid` (limit 5), 6 drafts and their 6 essays each (an essay is written by its draft's
         model); 2 judges in `paid`: 24 evaluations. 0.5 s calls. Bound: the busiest pool's calls x latency / limit,
         plus one evaluation after its last essay: free, 12 x 0.5 / 1 + 0.5 = 6.5 s (paid: 36 x 0.5 / 5 + 0.5 = 4.1 s).
  first  5 concepts (10 combinations) x r draft replicates, 3 judges: 50 r generations (r = 1 and 100), pool `paid`
         of 5, 0.5 s calls. First request received to the first evaluation answered; floor 3 latencies (a draft, its
         essay, one evaluation), target 5. The big cohort is stopped (SIGTERM) once that answer is in.

Span = first request received to last answer sent, on the endpoint's clock (start-up and the reports are not in it;
the CLI's whole wall time is reported beside it). The "rule floor" is the same cohort scheduled by the pipeline's own
rule (depth first: earliest lineage first) with exact latencies and no overhead (baseline.simulate).
"""

import math

import baseline
import harness
import runs
from project import Model, Shape
from table import Row

LATENCY = 0.5
W = Shape(concepts=4, draft_templates=2, judges=(Model("judge-1", "paid"), Model("judge-2", "paid")), pools={"paid": 5})
SPLIT = Shape(
    concepts=3,
    draft_templates=2,
    generators=(Model("gen-free", "free"), Model("gen-paid", "paid")),
    judges=(Model("judge-1", "paid"), Model("judge-2", "paid")),
    pools={"free": 1, "paid": 5},
)


def first_shape(replicates: int) -> Shape:
    return Shape(
        concepts=5,
        judges=tuple(Model(f"judge-{i}", "paid") for i in (1, 2, 3)),
        draft_replicates=replicates,
        pools={"paid": 5},
    )


def busiest_pool_bound(shape: Shape, latency: float) -> float:
    """max over pools of calls x latency / limit, plus one evaluation after the last essay for a pool writing essays."""
    writers = {model.pool for model in shape.generators}
    return max(
        calls * latency / shape.pools[pool] + (latency if pool in writers else 0.0)
        for pool, calls in shape.calls_by_pool().items()
    )


def _measure(shape: Shape, codes: list, log, **options) -> dict:
    measured = {"baseline": runs.plain(shape, LATENCY)} if "stop_after_first_judgment" not in options else {}
    for code in codes:
        measured[code.label.split()[0]] = runs.pipeline(code, shape, LATENCY, **options)
    for label, run in measured.items():
        judged = "none" if run.first_judgment_s is None else f"{run.first_judgment_s:.2f} s"
        log(
            f"  {label:8} span {run.span_s:6.2f} s, first evaluation answered {judged} after the first call, "
            f"{run.calls} calls, at most {run.max_concurrent} at once; command wall {run.wall_s:.2f} s, first call "
            f"{run.first_call_s:.2f} s after its start (load {harness.load()})"
        )
    return measured


def _span_rows(name: str, shape, ideal: float, target: float, codes: list, log) -> tuple[list[Row], dict]:
    """The call span (against `ideal`, with its target factor) and the first evaluation of one cohort at LATENCY."""
    measured = _measure(shape, codes, log)
    floor, first_floor = baseline.simulate(shape.lineages(), shape.pools, LATENCY)
    rows = [
        Row(f"{name}: call span", "s", ideal, target * ideal, {"rule floor": floor, **_spans(measured)}),
        Row(
            f"{name}: first evaluation answered",
            "s",
            3 * LATENCY,
            None,
            {"rule floor": first_floor, **_firsts(measured)},
        ),
    ]
    return rows, measured


def cohort_w(codes: list, log=print) -> tuple[list[Row], dict]:
    log(f"cohort W: {W.drafts} drafts, {W.drafts} essays, {W.drafts * 2} evaluations, pool paid 5, {LATENCY} s calls")
    return _span_rows("W", W, math.ceil(W.generations / W.pools["paid"]) * LATENCY, 1.05, codes, log)


def split_pools(codes: list, log=print) -> tuple[list[Row], dict]:
    log(f"split pools: {SPLIT.calls_by_pool()} calls by pool, limits {SPLIT.pools}, {LATENCY} s calls")
    return _span_rows("split pools", SPLIT, busiest_pool_bound(SPLIT, LATENCY), 1.10, codes, log)


def first_evaluation(codes: list, replicates: list[int], cap_s: float, log=print) -> tuple[list[Row], dict]:
    """`cap_s`: a run that has had no evaluation answered by then is stopped and reported as '> cap'."""
    rows, out = [], {}
    for r in replicates:
        shape = first_shape(r)
        log(
            f"first evaluation: {shape.generations} generations, pool paid 5, {LATENCY} s calls"
            f"{'' if r == 1 else ', each run stopped once an evaluation is answered'}"
        )
        options = {} if r == 1 else {"stop_after_first_judgment": cap_s}
        measured = _measure(shape, codes, log, **options)
        _, first_floor = baseline.simulate(shape.lineages(), shape.pools, LATENCY)
        row = Row(
            f"first evaluation, {shape.generations:,} generations: answered after",
            "s",
            3 * LATENCY,
            5 * LATENCY,
            {"rule floor": first_floor, **_firsts(measured)},
        )
        row.notes = {
            label: f"> {cap_s:.0f} s (none yet)" for label, run in measured.items() if run.first_judgment_s is None
        }
        rows.append(row)
        rows.append(
            Row(
                f"first evaluation, {shape.generations:,} generations: command start to first call",
                "s",
                None,
                None,
                {label: run.first_call_s for label, run in measured.items() if label != "baseline"},
            )
        )
        out[shape.generations] = measured
    return rows, out


def _spans(measured: dict) -> dict:
    return {label: run.span_s for label, run in measured.items()}


def _firsts(measured: dict) -> dict:
    return {label: run.first_judgment_s for label, run in measured.items()}
