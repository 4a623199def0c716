"""Every benchmark figure in one run, each as a ratio to its ideal or target (`make bench`).

  P1 efficiency   2,000 model calls through the real stages (`daydream run`), latency 0.5 s, pool limit 8, 8 workers:
                  wall <= 1.05 x ideal (calls x latency / pool = 125 s); plus the same calls from 8 plain threads
                  (the floor) and pipeline / baseline.
  P2 scale        cohorts of ~1,000, 5,000 and 20,000 generations at zero latency: ms per generation, all-in
                  (wall / n) and marginal ((wall - start-up) / n), each < 5 ms and the 20,000 figure within 1.5 x the
                  1,000 figure.
  P3 no-op        `daydream run` again on the complete 20,000-generation cohort: < 10 s.
  P4 results      ParseScores + Pivot (parsed scores, pivot, summaries, agreement) over ~100,000 evaluations:
                  < 30 s and < 1 GB peak RSS; also the whole `daydream run --stage results` with report.html.
  Memory          peak RSS of the 20,000-generation run (one process: Luigi's worker runs tasks in its threads).

Usage: python bench/run_all.py [--quick] [--repeat N] [--only p1,p2,p3,p4] [--keep] [--json FILE]
Stores go under $DAYDREAM_BENCH_ROOT (default /var/tmp/daydream-bench) and are deleted at the end unless --keep.
"""

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from efficiency import run_efficiency  # noqa: E402
from results_bench import run_results  # noqa: E402
from scale import run_scale  # noqa: E402

FULL = {"p1_calls": 2000, "p1_latency": 0.5, "sizes": [1000, 5000, 20000], "evaluations": 100_000}
QUICK = {"p1_calls": 400, "p1_latency": 0.1, "sizes": [300, 1000, 3000], "evaluations": 10_000}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _row(figure: str, target: str, best: float, median: float, ratio: float | None, met: bool | None, unit: str,
         fmt: str = "{:.2f}") -> dict:
    return {"figure": figure, "target": target, "best": best, "median": median, "ratio": ratio, "met": met,
            "unit": unit, "measured": f"{fmt.format(best)} / {fmt.format(median)} {unit}".strip()}


def build_table(p1: dict | None, p2: dict | None, p4: dict | None, sizes: list[int]) -> list[dict]:
    rows = []
    if p1:
        ideal = p1["ideal_s"]
        rows.append(_row(f"P1 pipeline wall, {p1['calls']} calls x {p1['latency_s']:g} s / pool {p1['workers']}",
                         f"<= 1.05 x ideal ({ideal:.1f} s)", p1["pipeline_s"], p1["pipeline_s"],
                         p1["pipeline_s"] / ideal, p1["pipeline_s"] / ideal <= 1.05, "s", "{:.1f}"))
        rows.append(_row("P1 plain baseline (8 threads, same calls, no pipeline)", "(the floor)", p1["baseline_s"],
                         p1["baseline_s"], p1["baseline_s"] / ideal, None, "s", "{:.1f}"))
        ratio = p1["pipeline_s"] / p1["baseline_s"]
        rows.append(_row("P1 pipeline / baseline", "(info)", ratio, ratio, ratio, None, "", "{:.3f}"))
    if p2:
        small, large = sizes[0], sizes[-1]
        for kind, label in (("ms_per_gen", "all-in, wall / n"), ("marginal_ms_per_gen", "marginal, (wall - start-up) / n")):
            for size in sizes:
                stats = p2["sizes"][size][kind]
                n = p2["sizes"][size]["generations"]
                rows.append(_row(f"P2 {label}, n = {n:,}", "< 5 ms/gen", stats["best"], stats["median"],
                                 stats["median"] / 5, stats["median"] < 5, "ms"))
            a, b = p2["sizes"][small][kind]["median"], p2["sizes"][large][kind]["median"]
            rows.append(_row(f"P2 flatness ({label}): n = {p2['sizes'][large]['generations']:,} vs "
                             f"{p2['sizes'][small]['generations']:,}", "<= 1.5 x", b / a, b / a, b / a, b / a <= 1.5,
                             "x", "{:.2f}"))
        startup = p2["startup_s"]
        rows.append(_row("P2 start-up (3-generation cohort, full run)", "(info)", startup["best"], startup["median"],
                         None, None, "s"))
        rerun = p2["sizes"][large]["rerun_s"]
        if not math.isnan(rerun["best"]):
            rows.append(_row(f"P3 no-op re-run, complete cohort of {p2['sizes'][large]['generations']:,}", "< 10 s",
                             rerun["best"], rerun["median"], rerun["median"] / 10, rerun["median"] < 10, "s"))
        rss = p2["sizes"][large]["maxrss_mb"]
        rows.append(_row(f"Peak RSS, run of {p2['sizes'][large]['generations']:,} generations (one process)",
                         "(info)", rss["best"], rss["median"], None, None, "MB", "{:.0f}"))
    if p4:
        n = p4["evaluations"]
        for key, label in (("tables", "ParseScores + Pivot"), ("cli", "`daydream run --stage results` (+ report.html)"),
                           ("current", "`daydream run --stage results`, tables up to date")):
            walls = [r["wall_s"] for r in p4[key]]
            rsss = [r["maxrss_mb"] for r in p4[key]]
            wall, rss = harness.summarize(walls), harness.summarize(rsss)
            target = key == "tables"
            rows.append(_row(f"P4 {label}, {n:,} evaluations: wall", "< 30 s" if target else "(info)", wall["best"],
                             wall["median"], wall["median"] / 30 if target else None,
                             wall["median"] < 30 if target else None, "s", "{:.1f}"))
            rows.append(_row(f"P4 {label}, {n:,} evaluations: peak RSS", "< 1024 MB" if target else "(info)",
                             rss["best"], rss["median"], rss["median"] / 1024 if target else None,
                             rss["median"] < 1024 if target else None, "MB", "{:.0f}"))
    return rows


def print_table(rows: list[dict]) -> None:
    width = max(len(r["figure"]) for r in rows)
    print(f"\n{'figure':<{width}}  {'target':<26}  {'measured (best / median)':<26}  {'ratio':>6}  met?")
    print("-" * (width + 72))
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
        print(f"{r['figure']:<{width}}  {r['target']:<26}  {r['measured']:<26}  {ratio:>6}  {met}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke version (minutes); targets are for the full run")
    parser.add_argument("--repeat", type=int, help="repetitions of P2/P3/P4 (default 3, quick 1)")
    parser.add_argument("--p1-repeat", type=int, default=1, help="repetitions of P1 (each takes ~2 x 125 s)")
    parser.add_argument("--only", default="p1,p2,p3,p4")
    parser.add_argument("--window", type=int, help="scheduling.window for every run (default: config/daydream.yaml)")
    parser.add_argument("--keep", action="store_true", help="keep the stores under the bench root")
    parser.add_argument("--json", type=Path, help="also write every measurement to this file")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    repeat = args.repeat or (1 if args.quick else 3)
    only = set(args.only.lower().split(","))

    # Leftovers of an earlier run are moved aside, not deleted: on this kind of file system (ext4 without a journal)
    # creating files right after deleting many costs more, and that must not land in the measurements.
    trash = None
    if harness.BENCH_ROOT.exists():
        trash = harness.BENCH_ROOT.with_name(harness.BENCH_ROOT.name + f"-old-{os.getpid()}")
        harness.BENCH_ROOT.rename(trash)
    info = harness.machine()
    info["scheduling_window"] = args.window or yaml.safe_load((harness.REPO / "config" / "daydream.yaml").read_text())[
        "scheduling"]["window"]
    info["pipeline_code"] = harness.CODE or str(harness.REPO)
    log(f"machine: {info['cores']} cores ({info['cpu']}), {info['memory_gb']} GB RAM, Python {info['python']}, "
        f"kernel {info['kernel']}; stores on {info['bench_filesystem']}; load average "
        f"{' '.join(f'{v:.2f}' for v in info['load_at_start'])}")
    log(f"pipeline code: {info['pipeline_code']}; scheduling.window {info['scheduling_window']}; 8 workers, pool limit 8")
    p1 = p2 = p4 = None
    results: dict = {"machine": info, "quick": args.quick, "repeat": repeat}
    try:
        if "p1" in only:
            log(f"P1: {config['p1_calls']} calls at {config['p1_latency']} s through `daydream run`, then the baseline")
            runs = [run_efficiency(config["p1_calls"], config["p1_latency"], 8, args.window, log=log)
                    for _ in range(args.p1_repeat)]
            p1 = min(runs, key=lambda r: r["pipeline_s"])
            p1["baseline_s"] = min(r["baseline_s"] for r in runs)
            results["p1"] = runs
        if "p2" in only or "p3" in only:
            log(f"P2/P3: cohorts of ~{', '.join(f'{s:,}' for s in config['sizes'])} generations at zero latency, "
                f"{repeat} run(s) each, each followed by a no-op re-run")
            p2 = run_scale(config["sizes"], workers=8, window=args.window, repeat=repeat, log=log)
            results["p2"] = p2
        if "p4" in only:
            log(f"P4: synthetic store of ~{config['evaluations']:,} evaluations, then the results tables")
            p4 = run_results(config["evaluations"], repeat=repeat, log=log)
            results["p4"] = p4
    finally:
        results["load_at_end"] = os.getloadavg()
        if not args.keep:
            harness.clean()
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    rows = build_table(p1, p2 if ("p2" in only or "p3" in only) else None, p4, config["sizes"])
    results["table"] = rows
    print_table(rows)
    print(f"\nload average at start {' '.join(f'{v:.2f}' for v in info['load_at_start'])}, at end "
          f"{' '.join(f'{v:.2f}' for v in results['load_at_end'])} ({info['cores']} cores; other work on the machine "
          f"shows up in the wall times)")
    if args.quick:
        print("quick run: small sizes, the targets apply to the full run (`python bench/run_all.py`)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0 if all(r["met"] is not False for r in rows) or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
