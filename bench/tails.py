"""Heavy tails (issue 22): lognormal latencies through a pool of 20, one run per latency seed.

The wide cohort (`wide.shape_for`): 10 concepts (45 combinations) x 2 draft templates x R draft replicates, one llm
essay each, 2 judges, 4 calls a lineage, all in pool `paid` of 20; R = 6 is the issue's 2,160 calls (quick: R = 2,
720). Latency lognormal, median 0.5 s, sigma 1, capped at 30 s: the endpoint draws the k-th latency of its seeded
sequence for the k-th request it receives, whatever that request is, so every run of one seed gets the same latencies.

Per seed, for the pipeline and the plain-threads baseline (`baseline.py`, the same order of work):

  sum/20     the calls' time in flight at the endpoint, summed, / 20: no executor ends earlier (the target's unit)
  seq floor  the seed's latencies, in the order they are drawn, through 20 slots with no gap and no dependency: no
             executor ends earlier either, as the k-th request cannot start before 20 slots have made room for it; a
             long latency drawn among the last requests puts it above sum/20 whatever the order of the work
  span       first request received to last answer sent (endpoint clock), and its ratio to sum/20
  first      the first evaluation answered, after the first request, in latencies (median 0.5 s)
  in flight  the most calls the endpoint held at once (the run stops if it is ever above 20)
  after text the evaluations received after the last draft or essay: what the order of work leaves at the end (the
             tail's drafts and essays first: many; depth first to the end: a few), whatever the load

Targets (issue 22): span <= 1.10 x sum/20 for each seed, first evaluation within 5 latencies. The rule floor column is
the pipeline's own order of work (`schedule.priorities`, mirrored by `baseline.simulate`) with the pipeline's
latencies in the order it sent its calls and no overhead; the log gives it beside the floor of the rule before the
tail (depth first with a pool-full of lookahead throughout), which no load on the machine changes.
"""

import heapq

import baseline
import harness
import runs
import wide
from table import Row

MEDIAN, SIGMA, CAP = 0.5, 1.0, 30.0
POOL = 20
FIRST_TARGET = 5  # latencies


def sequence_floor(latencies: list[float], slots: int) -> float:
    """When `latencies`, taken in order, end through `slots` slots that each take the next one the moment they free."""
    free = [0.0] * slots
    for latency in latencies:
        heapq.heappush(free, heapq.heappop(free) + latency)
    return max(free)


def _line(label: str, seed: int, run: runs.Run) -> str:
    ideal = run.busy_s / POOL
    first = "none" if run.first_judgment_s is None else f"{run.first_judgment_s / MEDIAN:.1f}"
    floor = sequence_floor(run.extra["latencies"], POOL)
    kinds = run.extra["kinds"]
    after_text = len(kinds) - 1 - max(i for i, kind in enumerate(kinds) if kind == "text")
    return (
        f"  {label:8} {seed:>4}  {run.calls:>5,}  {ideal:6.1f} s  {floor:6.1f} s ({floor / ideal:.3f}x)  "
        f"{run.span_s:6.1f} s  {run.span_s / ideal:.3f}x  {first:>5}  {run.max_concurrent:>3}  {after_text:>10}  "
        f"(load {harness.load()})"
    )


def tails(codes: list, replicates: int, seeds: list[int], log=print) -> tuple[list[Row], dict]:
    shape = wide.shape_for(POOL, replicates)
    log(
        f"heavy tails: {shape.generations:,} calls, pool {POOL}, lognormal median {MEDIAN} s, sigma {SIGMA}, cap "
        f"{CAP:g} s, seeds {', '.join(map(str, seeds))}"
    )
    log("  code     seed  calls   sum/20   seq floor (/ sum)    span      ratio  first  max  after text")
    rows, out = [], {}
    for seed in seeds:
        measured = {"baseline": runs.plain(shape, MEDIAN, SIGMA, seed, CAP)}
        log(_line("baseline", seed, measured["baseline"]))
        for code in codes:
            label = code.label.split()[0]
            measured[label] = runs.pipeline(code, shape, MEDIAN, SIGMA, seed=seed, cap=CAP)
            log(_line(label, seed, measured[label]))
        ideal = measured["after"].busy_s / POOL
        sent = measured["after"].extra["latencies"]
        floor, _ = baseline.simulate(shape.lineages(), shape.pools, sent)
        before_tail, _ = baseline.simulate(shape.lineages(), shape.pools, sent, tail=False)
        log(
            f"  rule floors, seed {seed}: depth first throughout (the rule before the tail) {before_tail:.1f} s "
            f"({before_tail / ideal:.3f}x), with the tail {floor:.1f} s ({floor / ideal:.3f}x); sequence floor "
            f"{sequence_floor(sent, POOL):.1f} s ({sequence_floor(sent, POOL) / ideal:.3f}x)"
        )
        name = f"heavy tails, {shape.generations:,} calls, pool {POOL}, seed {seed}"
        rows.append(
            Row(
                f"{name}: call span",
                "s",
                ideal,
                1.10 * ideal,
                {"rule floor": floor, **{label: run.span_s for label, run in measured.items()}},
            )
        )
        rows.append(
            Row(
                f"{name}: first evaluation answered",
                "latencies",
                None,
                FIRST_TARGET,
                {
                    label: None if run.first_judgment_s is None else run.first_judgment_s / MEDIAN
                    for label, run in measured.items()
                },
            )
        )
        out.update({f"{label} {seed}": run for label, run in measured.items()})
    return rows, out
