"""One measured run of a benchmark cohort: through the real `daydream run` of some code, or through the plain baseline,
each against its own fresh endpoint process, with what the endpoint saw."""

import sys
import time
from dataclasses import dataclass, field

import baseline
import harness
from project import COHORT, Shape, make_project


@dataclass
class Run:
    label: str
    calls: int  # chat requests the endpoint answered
    span_s: float  # first request received to last answer (endpoint clock)
    busy_s: float  # sum of the calls' time in flight at the endpoint
    first_judgment_s: float | None  # first request received to the first evaluation's answer
    max_concurrent: int
    wall_s: float  # the whole command (the baseline: its threads), start to exit
    first_call_s: float = 0.0  # command started to the first request received (start-up, graph building)
    cpu_s: float = 0.0
    maxrss_mb: float = 0.0
    extra: dict = field(default_factory=dict)


def _from_endpoint(label: str, endpoint: harness.Endpoint, wall_s: float, started_at: float) -> Run:
    timeline, stats = endpoint.timeline(), endpoint.stats()
    if not timeline:
        sys.exit(f"{label}: the endpoint answered no call")
    run = Run(
        label,
        len(timeline),
        harness.span(timeline),
        harness.busy(timeline),
        harness.first_judgment(timeline),
        stats["max_concurrent"],
        wall_s,
    )
    run.first_call_s = min(received for received, _, _ in timeline) - started_at
    run.extra["latencies"] = [answered - received for received, answered, _ in sorted(timeline)]
    run.extra["kinds"] = [kind for _, _, kind in sorted(timeline)]  # "judge" (an evaluation) or "text", as received
    run.extra["handovers"] = harness.handovers(timeline)
    return run


def pipeline(
    code: harness.Code,
    shape: Shape,
    latency: float = 0.0,
    sigma: float = 0.0,
    part_size: int | None = None,
    stop_after_first_judgment: float | None = None,
    rerun: bool = False,
    seed: int = 0,
    cap: float | None = None,
) -> Run:
    """`daydream run --cohort bench` of `code` on a new project of `shape`.

    All calls must be made exactly once (the endpoint's count) and never more at once than the pools allow;
    `stop_after_first_judgment` (seconds) stops the run (SIGTERM) as soon as the endpoint has answered an evaluation,
    or that many seconds after the start if none has been answered by then (first_judgment_s is then None); `rerun`
    runs the same command again on the complete store and records its wall time (it must make no call); `seed` and
    `cap` are the endpoint's latency seed and longest lognormal latency."""
    root = make_project(harness.run_dir(f"{shape.generations}"), shape, code.root, part_size)
    with harness.Endpoint(latency, sigma, seed, cap) as endpoint:
        stop = None
        if stop_after_first_judgment is not None:
            deadline = time.perf_counter() + stop_after_first_judgment

            def judged_or_late() -> bool:
                return time.perf_counter() > deadline or harness.first_judgment(endpoint.timeline()) is not None

            stop = judged_or_late
        measured = harness.daydream(
            code, root, endpoint, "run", "--cohort", COHORT, stop_when=stop, ok=(0, 143, -15, -9) if stop else (0,)
        )
        run = _from_endpoint(code.label, endpoint, measured.wall_s, measured.started_at)
        run.cpu_s, run.maxrss_mb = measured.cpu_s, measured.maxrss_mb
        if not stop and run.calls != shape.generations:
            sys.exit(f"{code.label}: {shape.generations} calls expected, the endpoint answered {run.calls}")
        if run.max_concurrent > sum(shape.pools.values()):
            sys.exit(f"{code.label}: {run.max_concurrent} calls at once, over the pool limits {shape.pools}")
        if rerun:
            again = harness.daydream(code, root, endpoint, "run", "--cohort", COHORT)
            made = endpoint.stats()["requests"] - run.calls
            if made:
                sys.exit(f"{code.label}: the re-run of a complete cohort made {made} calls")
            run.extra.update(rerun_wall_s=again.wall_s, rerun_maxrss_mb=again.maxrss_mb)
    run.extra["root"] = str(root)
    return run


def plain(shape: Shape, latency: float = 0.0, sigma: float = 0.0, seed: int = 0, cap: float | None = None) -> Run:
    """The same calls through the plain baseline (see baseline.py)."""
    with harness.Endpoint(latency, sigma, seed, cap) as endpoint:
        started_at = time.time()
        wall = baseline.run(endpoint.base_url, shape.lineages(), shape.pools)
        run = _from_endpoint("baseline", endpoint, wall, started_at)
    if run.calls != shape.generations:
        sys.exit(f"baseline: {shape.generations} calls expected, the endpoint answered {run.calls}")
    return run
