"""Efficiency at realistic latencies: lognormal calls through a pool of 20, and what Luigi's stock forked workers cost
next to a 2 s call.

  lognormal  5 concepts (10 combinations) x 50 draft replicates, 2 judges: 500 drafts, 500 essays, 1,000 evaluations =
             2,000 calls in pool `paid` of 20; latency lognormal, median 0.5 s, sigma 1 (the endpoint's seeded
             sequence, drawn in the order requests arrive, so every run gets the same latencies). Ideal: the sum of the
             latencies / 20 (from the baseline's endpoint timeline; a lower bound no schedule beats). The rule floor
             replays the baseline's latencies, in the order it sent its calls, through the depth-first rule.
  2 s calls  5 concepts x 3 draft replicates, 2 judges: 120 calls in pool `paid` of 10, every call 2 s. Ideal:
             12 rounds x 2 s = 24 s. Overhead per generation = pool-slot time lost beyond the rule floor,
             (span - rule floor) x limit / calls, in ms and as a fraction of the call.
"""

import math
import statistics

import baseline
import harness
import runs
from project import Model, Shape
from table import Row

MEDIAN, SIGMA = 0.5, 1.0
SLOW = 2.0


def _shape(replicates: int, limit: int) -> Shape:
    return Shape(
        concepts=5,
        judges=(Model("judge-1", "paid"), Model("judge-2", "paid")),
        draft_replicates=replicates,
        pools={"paid": limit},
    )


def _log(log, label: str, run: runs.Run, limit: int) -> None:
    log(
        f"  {label:8} span {run.span_s:7.2f} s, wall {run.wall_s:7.2f} s, {run.calls} calls (sum of latencies "
        f"{run.busy_s:.1f} s = {run.busy_s / limit:.2f} s / {limit}), at most {run.max_concurrent} at once, "
        f"CPU {run.cpu_s:.1f} s, peak RSS {run.maxrss_mb:.0f} MB (load {harness.load()})"
    )


def lognormal(codes: list, replicates: int = 50, limit: int = 20, log=print) -> tuple[list[Row], dict]:
    shape = _shape(replicates, limit)
    log(f"lognormal: {shape.generations} calls, median {MEDIAN} s, sigma {SIGMA}, pool of {limit}")
    measured = {"baseline": runs.plain(shape, MEDIAN, SIGMA)}
    _log(log, "baseline", measured["baseline"], limit)
    for code in codes:
        label = code.label.split()[0]
        measured[label] = runs.pipeline(code, shape, MEDIAN, SIGMA)
        _log(log, label, measured[label], limit)
    ideal = measured["baseline"].busy_s / limit
    floor, _ = baseline.simulate(shape.lineages(), shape.pools, measured["baseline"].extra["latencies"])
    rows = [
        Row(
            f"lognormal, {shape.generations:,} calls, pool {limit}: command wall",
            "s",
            ideal,
            1.10 * ideal,
            {label: run.wall_s for label, run in measured.items()},
        ),
        Row(
            f"lognormal, {shape.generations:,} calls, pool {limit}: call span",
            "s",
            ideal,
            None,
            {"rule floor": floor, **{label: run.span_s for label, run in measured.items()}},
        ),
    ]
    return rows, measured


def slow_calls(codes: list, replicates: int = 3, limit: int = 10, log=print) -> tuple[list[Row], dict]:
    shape = _shape(replicates, limit)
    ideal = math.ceil(shape.generations / limit) * SLOW
    floor, _ = baseline.simulate(shape.lineages(), shape.pools, SLOW)
    log(f"2 s calls: {shape.generations} calls, pool of {limit}; ideal {ideal:.0f} s, rule floor {floor:.0f} s")
    measured = {"baseline": runs.plain(shape, SLOW)}
    _log(log, "baseline", measured["baseline"], limit)
    for code in codes:
        label = code.label.split()[0]
        measured[label] = runs.pipeline(code, shape, SLOW)
        _log(log, label, measured[label], limit)
    overhead = {label: 1000 * (run.span_s - floor) * limit / run.calls for label, run in measured.items()}
    rows = [
        Row(
            f"2 s calls, {shape.generations} calls, pool {limit}: call span",
            "s",
            ideal,
            None,
            {"rule floor": floor, **{label: run.span_s for label, run in measured.items()}},
        ),
        Row(
            f"2 s calls, {shape.generations} calls, pool {limit}: command wall",
            "s",
            ideal,
            None,
            {label: run.wall_s for label, run in measured.items()},
        ),
        Row("2 s calls: slot time lost per generation beyond the rule floor", "ms", None, None, overhead),
        Row(
            "2 s calls: the same, as a fraction of one call",
            "%",
            None,
            None,
            {label: value / (10 * SLOW) for label, value in overhead.items()},
        ),
        Row(
            "2 s calls: median slot hand-over (an answer to the request that takes its slot)",
            "ms",
            None,
            None,
            {label: 1000 * statistics.median(run.extra["handovers"]) for label, run in measured.items()},
        ),
    ]
    return rows, measured
