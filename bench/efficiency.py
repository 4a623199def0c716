"""P1 efficiency: model calls through the real stages at a fixed latency, against the ideal and a plain baseline.

The cohort: 5 concepts (10 combinations) x `calls / 40` draft replicates -> drafts, one llm essay each, two judges per
essay: 2,000 calls = 500 drafts + 500 essays + 1,000 evaluations, all in the pool `paid` (limit = workers = 8).

  ideal     = calls x latency / pool                   (125 s for 2,000 x 0.5 s / 8)
  pipeline  = wall of `daydream run --workers 8`        (the real CLI: validation, cohort, three stages, results)
  baseline  = the same calls (the prompts the pipeline sent, same models and settings, same client code) from 8
              threads with a requests session each, no pipeline: the floor for this endpoint and client

Usage: python bench/efficiency.py [--calls 2000] [--latency 0.5] [--workers 8]
"""

import json
import queue
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import EndpointProcess, daydream, model_calls, parser_for, run_dir, run_then_clean  # noqa: E402
from project import generations_of, make_project  # noqa: E402

from daydream_luigi import llm  # noqa: E402
from daydream_luigi.config import Paths, load_settings  # noqa: E402

COMBOS, CALLS_PER_DRAFT = 10, 4  # 5 concepts; a draft, its essay and 2 evaluations


def recorded_calls(root: Path) -> list[tuple[str, str, llm.CallSettings]]:
    """(model, prompt, settings) of every model call the pipeline made, read back from its store."""
    settings = load_settings(Paths(root / "data", root / "config"))
    calls = []
    for stage in ("draft", "essay", "evaluation"):
        config = settings.stage(stage)
        options = llm.CallSettings(**{k: config[k] for k in ("temperature", "max_tokens", "connect_timeout",
                                                             "read_timeout")})
        for directory in sorted((root / "data" / "gens" / stage).iterdir()):
            call = json.loads((directory / "call.json").read_text())
            calls.append((call["model"], (directory / "prompt.txt").read_text(), options))
    return calls


def baseline(base_url: str, calls: list, threads: int) -> float:
    """Wall time of `calls` sent from `threads` threads (one keep-alive session each), no pipeline."""
    work: queue.SimpleQueue = queue.SimpleQueue()
    for call in calls:
        work.put(call)
    failures = []

    def worker():
        with requests.Session() as session:
            while True:
                try:
                    model, prompt, options = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    llm.chat_completion(base_url, "bench", model, prompt, options, session=session)
                except llm.LLMError as exc:
                    failures.append(str(exc))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    start = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - start
    if failures:
        sys.exit(f"baseline: {len(failures)} calls failed, e.g. {failures[0]}")
    return wall


def run_efficiency(calls: int = 2000, latency: float = 0.5, workers: int = 8, window: int | None = None,
                   log=print) -> dict:
    if calls % (COMBOS * CALLS_PER_DRAFT):
        raise ValueError(f"calls must be a multiple of {COMBOS * CALLS_PER_DRAFT}")
    replicates = calls // (COMBOS * CALLS_PER_DRAFT)
    root = make_project(run_dir(f"efficiency-{calls}"), 5, pool_limit=workers, window=window, judges=2,
                        draft_replicates=replicates)
    assert sum(generations_of(5, judges=2, draft_replicates=replicates).values()) == calls
    ideal = calls * latency / workers
    with EndpointProcess(latency=latency) as endpoint:
        run = daydream(root, endpoint.base_url, "run", "--workers", str(workers))
        stats = endpoint.stats()
        made = model_calls(run.stdout)
        if made != calls or stats["requests"] != calls:
            sys.exit(f"expected {calls} calls; the run reports {made}, the endpoint saw {stats['requests']}")
        log(f"pipeline: {calls} calls in {run.wall_s:.1f} s = {run.wall_s / ideal:.3f} x ideal ({ideal:.1f} s); "
            f"at most {stats['max_concurrent']} calls at once (pool limit {workers})")
        recorded = recorded_calls(root)
        base = baseline(endpoint.base_url, recorded, workers)
        log(f"baseline: the same {len(recorded)} calls from {workers} threads in {base:.1f} s = {base / ideal:.3f} x "
            f"ideal; pipeline / baseline = {run.wall_s / base:.3f}")
    return {"calls": calls, "latency_s": latency, "workers": workers, "ideal_s": ideal, "pipeline_s": run.wall_s,
            "baseline_s": base, "max_concurrent": stats["max_concurrent"], "pipeline_maxrss_mb": run.maxrss_mb,
            "root": str(root)}


def main(argv=None) -> None:
    parser = parser_for(__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.5)
    args = parser.parse_args(argv)
    run_then_clean(args.keep, lambda: run_efficiency(args.calls, args.latency, args.workers, args.window))


if __name__ == "__main__":
    main()
