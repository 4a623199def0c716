"""Wide pools (issue 22): the issue's cohort through one pool of 20 to 200 calls at once, at a fixed latency.

10 concepts (45 combinations) x 2 draft templates x R draft replicates, one llm essay each, 2 judges: 4 calls a
lineage, 360 R calls, all in pool `paid`. For each (pool, latency, R) of the run:

  floor      ceil(calls / pool) x latency: no executor does better
  span       first request received to last answer sent, at the endpoint, and its ratio to the floor
  in flight  the most calls the endpoint held at once (never above the pool: the run exits otherwise)
  CPU/gen    user + system of the run and every process it started and reaped (the build process and the task
             processes it forked), per generation
  baseline   the same calls through the plain-threads baseline (`baseline.py`): span and CPU per call

Target (issue 22): pool 100 at 1 s within 1.15x of its floor, pool 50 within 1.10x, CPU at most 10 ms a generation at
pool 100.
"""

import math
import resource

import harness
import runs
from project import Model, Shape
from table import Row

JUDGES = (Model("judge-a", "paid"), Model("judge-b", "paid"))
TARGETS = {50: 1.10, 100: 1.15}  # pool -> span / floor, at 1 s
CPU_TARGET_MS = 10.0  # at pool 100


def shape_for(pool: int, replicates: int) -> Shape:
    return Shape(concepts=10, judges=JUDGES, draft_templates=2, draft_replicates=replicates, pools={"paid": pool})


def _own_cpu() -> float:
    """This process's CPU: the baseline's threads run in it."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wide(codes: list, settings: list[tuple[int, float, int]], log=print) -> tuple[list[Row], dict]:
    """`settings`: (pool, latency in s, draft replicates) per figure."""
    rows, out = [], {}
    for pool, latency, replicates in settings:
        shape = shape_for(pool, replicates)
        calls = shape.generations
        floor = math.ceil(calls / pool) * latency
        name = f"wide, pool {pool}, {latency:g} s, {calls:,} calls"
        span = Row(
            f"{name}: call span", "s", floor, floor * TARGETS[pool] if latency == 1 and pool in TARGETS else None
        )
        flight = Row(f"{name}: max in flight", "calls", pool, None)
        cpu = Row(f"{name}: CPU ms per generation", "ms", None, CPU_TARGET_MS if pool == 100 else None)
        for code in codes:
            label = code.label.split()[0]
            run = runs.pipeline(code, shape, latency)
            span.values[label], flight.values[label] = run.span_s, run.max_concurrent
            cpu.values[label] = 1000 * run.cpu_s / calls
            out[f"{label} {pool} {latency} {replicates}"] = run
            log(
                f"  {label:6} pool {pool:>3} at {latency:g} s, {calls:,} calls: span {run.span_s:6.1f} s "
                f"({run.span_s / floor:.2f}x floor {floor:.0f} s), max in flight {run.max_concurrent}, CPU "
                f"{run.cpu_s:.1f} s = {1000 * run.cpu_s / calls:.1f} ms/gen, wall {run.wall_s:.1f} s "
                f"(load {harness.load()})"
            )
        before = _own_cpu()
        plain = runs.plain(shape, latency)
        span.values["baseline"], flight.values["baseline"] = plain.span_s, plain.max_concurrent
        cpu.values["baseline"] = 1000 * (_own_cpu() - before) / calls
        log(
            f"  baseline pool {pool:>3} at {latency:g} s: span {plain.span_s:.1f} s, CPU {cpu.values['baseline']:.2f} "
            f"ms/call (load {harness.load()})"
        )
        rows += [span, flight, cpu]
    return rows, out
