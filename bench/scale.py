"""P2 scale, P3 no-op re-run and peak memory: full `daydream run` of growing cohorts at zero model latency.

Scheduling overhead per generation is given two ways (both should stay flat in n):
  all-in    = wall / n                                   (everything: interpreter start, validation, cohort expansion,
                                                          scheduling, the generations' own work, the results tables)
  marginal  = (wall - wall of a 3-generation run) / (n - 3)   (the fixed start-up cost taken out)
At zero latency each generation still does its real work (render, one HTTP round trip to the loopback endpoint,
5 files written, metadata), so both figures are an upper bound on pure scheduling overhead.

Usage: python bench/scale.py [--repeat R] [--workers W] [--window N] [--keep] [N ...]   (default sizes 1000 5000 20000)
"""

import queue
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (EndpointProcess, daydream, model_calls, parser_for, run_dir, run_then_clean,  # noqa: E402
                     summarize)
from project import concepts_for, generations_of, make_project  # noqa: E402

from daydream_luigi import llm, store  # noqa: E402


def _one_run(size: int, endpoint: EndpointProcess, workers: int, window: int | None, rerun: bool) -> dict:
    n_concepts = concepts_for(size) if size > 3 else 2
    root = make_project(run_dir(f"scale-{size}"), n_concepts, pool_limit=workers, window=window)
    generations = sum(generations_of(n_concepts).values())
    before = endpoint.stats()["requests"]
    cpu_before = endpoint.cpu_seconds()
    run = daydream(root, endpoint.base_url, "run", "--workers", str(workers))
    requests = endpoint.stats()["requests"] - before
    row = {"generations": generations, "wall_s": run.wall_s, "user_s": run.user_s, "sys_s": run.sys_s,
           "maxrss_mb": run.maxrss_mb, "calls": model_calls(run.stdout), "requests": requests,
           "endpoint_cpu_s": endpoint.cpu_seconds() - cpu_before, "root": str(root)}
    if row["calls"] != generations or requests != generations:
        sys.exit(f"expected {generations} model calls, the run reports {row['calls']} and the endpoint saw {requests}")
    if rerun:
        again = daydream(root, endpoint.base_url, "run", "--workers", str(workers))
        if model_calls(again.stdout) != 0:
            sys.exit("the no-op re-run called the model")
        row.update(rerun_wall_s=again.wall_s, rerun_maxrss_mb=again.maxrss_mb)
    return row


def floor_per_generation(n: int, endpoint: EndpointProcess, threads: int = 8) -> dict:
    """The mandatory work of n generations without the pipeline: from `threads` threads (a keep-alive session each),
    per generation the store's own calls (folder + lock, prompt, raw, call.json, parsed, metadata: 7 new files written
    via temp + rename) and one model call to the zero-latency endpoint. No Luigi, no templates, no parsing."""
    root = run_dir(f"floor-{n}") / "gens"
    work: queue.SimpleQueue = queue.SimpleQueue()
    for i in range(n):
        work.put(i)
    prompt = "Judge this essay about Concept 1 and Concept 2 ... End with SCORE: N\n" * 3

    def worker():
        with requests.Session() as session:
            while True:
                try:
                    i = work.get_nowait()
                except queue.Empty:
                    return
                directory = root / f"g{i:07d}"
                with store.generation_lock(directory):
                    store.atomic_write_text(directory / store.PROMPT, prompt)
                    answer = llm.chat_completion(endpoint.base_url, "bench", "bench/floor", f"{prompt}{i}",
                                                 session=session)
                    store.atomic_write_text(directory / store.RAW, answer.text)
                    store.atomic_write_json(directory / store.CALL, {"finish_reason": answer.finish_reason, "n": i})
                    store.atomic_write_text(directory / store.PARSED, answer.text[-20:])
                    (directory / store.ERROR).unlink(missing_ok=True)
                    store.atomic_write_json(directory / store.METADATA, {"gen_id": f"g{i}", "attempts": 1})

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    start = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - start
    return {"generations": n, "wall_s": wall, "ms_per_gen": 1000 * wall / n}


def run_scale(sizes: list[int], workers: int = 8, window: int | None = None, repeat: int = 1,
              endpoint: EndpointProcess | None = None, rerun_sizes: tuple = (), log=print) -> dict:
    """Measure each size `repeat` times (new store each time); returns per-size best/median figures."""
    if endpoint is None:
        with EndpointProcess(latency=0.0) as own:
            return run_scale(sizes, workers, window, repeat, own, rerun_sizes, log)
    startup = [_one_run(3, endpoint, workers, window, False)["wall_s"] for _ in range(max(3, repeat))]
    startup_s = summarize(startup)
    log(f"start-up (3-generation cohort, full run): best {startup_s['best']:.2f} s, median {startup_s['median']:.2f} s")
    out = {"startup_s": startup_s, "sizes": {}}
    floor_n = sorted(sizes)[len(sizes) // 2]
    floors = [floor_per_generation(floor_n, endpoint) for _ in range(max(3, repeat))]
    out["floor_ms_per_gen"] = summarize([f["ms_per_gen"] for f in floors])
    log(f"floor (n={floor_n:,}, 8 threads, no pipeline: store files + one HTTP call per generation): best "
        f"{out['floor_ms_per_gen']['best']:.2f}, median {out['floor_ms_per_gen']['median']:.2f} ms/gen")
    for size in sizes:
        rows = []
        for _ in range(repeat):
            row = _one_run(size, endpoint, workers, window, rerun=not rerun_sizes or size in rerun_sizes)
            n = row["generations"]
            row["ms_per_gen"] = 1000 * row["wall_s"] / n
            row["marginal_ms_per_gen"] = 1000 * (row["wall_s"] - startup_s["median"]) / (n - 3)
            rows.append(row)
            rerun = f"  no-op re-run {row['rerun_wall_s']:5.2f} s" if "rerun_wall_s" in row else ""
            log(f"n={n:>6}  wall {row['wall_s']:7.1f} s  all-in {row['ms_per_gen']:5.2f} ms/gen  marginal "
                f"{row['marginal_ms_per_gen']:5.2f} ms/gen  (run process: user {row['user_s']:.1f} s, sys "
                f"{row['sys_s']:.1f} s, peak RSS {row['maxrss_mb']:.0f} MB; endpoint CPU "
                f"{1000 * row['endpoint_cpu_s'] / n:.2f} ms/request){rerun}")
        best = min(rows, key=lambda r: r["wall_s"])
        out["sizes"][size] = {
            "generations": best["generations"], "runs": rows,
            "ms_per_gen": summarize([r["ms_per_gen"] for r in rows]),
            "marginal_ms_per_gen": summarize([r["marginal_ms_per_gen"] for r in rows]),
            "maxrss_mb": summarize([r["maxrss_mb"] for r in rows]),
            "rerun_s": summarize([r["rerun_wall_s"] for r in rows if "rerun_wall_s" in r] or [float("nan")])}
    return out


def main(argv=None) -> None:
    parser = parser_for(__doc__)
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 5000, 20000])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    run_then_clean(args.keep, lambda: run_scale(args.sizes, args.workers, args.window, args.repeat))


if __name__ == "__main__":
    main()
