"""Every benchmark of BENCHMARKS.md in one run (`make bench`), before and after, beside the ideal and a baseline.

Each figure is printed beside its ideal, the plain baseline, the pipeline before the execution model of issue 9
(commit c67a468) and after it (this checkout), all measured in the same run.

  w          cohort W (12 drafts, 12 essays, 24 evaluations, pool of 5, 0.5 s calls): call span <= 1.05 x 5.0 s
  split      drafts and essays over a free pool (1) and a paid pool (5), judged on the paid pool: call span <= 1.10 x
             the busiest pool's bound (6.5 s)
  first      first evaluation answered within 5 call latencies of the first call, at 50 and at 5,000 generations
  lognormal  2,000 calls, lognormal latency (median 0.5 s, sigma 1), pool of 20: wall <= 1.10 x sum of latencies / 20
  slow       Luigi's forked task processes next to a 2 s call: 120 calls, pool of 10, time lost per generation
  scale      ~1,000 / 5,000 / 20,000 generations at zero latency: ms per generation, flatness (20k / 1k <= 1.3), the
             no-op re-run (<= 10 s), peak RSS; --part-sizes adds runs of the largest size at other part sizes
  wide       one pool of 20-200 at 1 s and 5 s (issue 22): span vs floor, max in flight, CPU per generation
  scaleout   the wide cohort at pool 100, 1 s, by one run process or two on one luigid (issue 22): span vs floor
             (two: <= 1.15x), calls per process, CPU per generation
  tails      the wide cohort's 2,160 calls at lognormal latency (median 0.5 s, sigma 1, cap 30 s), pool of 20, latency
             seeds 0-4 (issue 22): span <= 1.10 x sum of call times / 20 for each seed, first evaluation <= 5 latencies
  results    ParseScores + Pivot over ~100,000 evaluations (< 30 s, < 1 GB), and `daydream report`
  search     budgeted search over 20 seeds against a judge with a planted combination: halving finds it in >= 19
             with a median <= 30% of the cube's calls to the first pass; random at halving's budget as the baseline;
             on an additive planted effect beam spends fewer calls than halving

Usage: python bench/run_all.py [--quick] [--only w,split,...] [--before REV | --no-before] [--part-sizes 500,2000]
                               [--json FILE] [--markdown] [--keep]
Stores go under $DAYDREAM_BENCH_ROOT (default /var/tmp/daydream-bench) and are deleted at the end unless --keep.
Exit 1 when a target is missed (full run only: --quick uses small sizes, to which the targets do not apply).
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import efficiency
import harness
import pipelining
import results_bench
import scale
import scaleout
import search
import table
import tails
import wide

PARTS = ("w", "split", "first", "lognormal", "slow", "scale", "wide", "scaleout", "tails", "results", "search")
FULL = {
    "first_replicates": [1, 100],
    "first_cap_s": 60.0,
    "lognormal_replicates": 50,
    "slow_replicates": 3,
    "sizes": [1000, 5000, 20000],
    "evaluations": 100_000,
    "wide": [  # (pool, latency, draft replicates): the 2,160 and 3,600 calls at 1 s; 360 calls at 5 s
        (20, 1.0, 2),
        (50, 1.0, 6),
        (100, 1.0, 10),
        (200, 1.0, 10),
        (20, 5.0, 1),
        (50, 5.0, 1),
        (100, 5.0, 1),
        (200, 5.0, 1),
    ],
    "scaleout_replicates": 10,  # 3,600 calls
    "tails": (6, [0, 1, 2, 3, 4]),  # (draft replicates, latency seeds): 2,160 calls a seed
}
QUICK = {
    "first_replicates": [1, 10],
    "first_cap_s": 30.0,
    "lognormal_replicates": 5,
    "slow_replicates": 1,
    "sizes": [300, 1000],
    "evaluations": 10_000,
    "wide": [(50, 1.0, 2), (100, 1.0, 4)],
    "scaleout_replicates": 4,
    "tails": (2, [0, 1]),
}


def _part_size() -> int:
    import yaml

    return yaml.safe_load((harness.REPO / "config" / "daydream.yaml").read_text())["scheduling"]["part_size"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, a few minutes (targets are for the full run)"
    )
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of: {', '.join(PARTS)}")
    parser.add_argument(
        "--before", default=harness.BEFORE, help="commit (or checkout folder) measured as 'before' [%(default)s]"
    )
    parser.add_argument("--no-before", action="store_true", help="measure only the current code (and the baseline)")
    parser.add_argument("--part-sizes", default="", help="also run the largest scale size at these part sizes")
    parser.add_argument("--json", type=Path, help="also write every measurement to this file")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown too")
    parser.add_argument("--keep", action="store_true", help="keep the stores under the bench root")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    only = [part.strip() for part in args.only.lower().split(",") if part.strip()]
    unknown = sorted(set(only) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    log = harness.log
    harness.wait_for_discarded(log)
    codes = ([] if args.no_before else [harness.before(args.before)]) + [harness.after()]
    info = harness.machine()
    log(
        f"machine: {info['cores']} cores ({info['cpu']}), {info['memory_gb']} GB RAM, Python {info['python']}, "
        f"Luigi {info['luigi']}, pandas {info['pandas']}, kernel {info['kernel']}; load average {info['load_at_start']}"
    )
    log(
        f"codes: {', '.join(f'{code.label} = {code.root}' for code in codes)}; scheduling.part_size "
        f"{_part_size()} (config/daydream.yaml as shipped); {'quick' if args.quick else 'full'} run"
    )
    rows, results = [], {"machine": info, "quick": args.quick, "codes": [dataclasses.asdict(c) for c in codes]}
    try:
        for part in (p for p in PARTS if p in only):
            if part == "w":
                new, results[part] = pipelining.cohort_w(codes, log)
            elif part == "split":
                new, results[part] = pipelining.split_pools(codes, log)
            elif part == "first":
                new, results[part] = pipelining.first_evaluation(
                    codes, config["first_replicates"], config["first_cap_s"], log
                )
            elif part == "lognormal":
                new, results[part] = efficiency.lognormal(codes, config["lognormal_replicates"], log=log)
            elif part == "slow":
                new, results[part] = efficiency.slow_calls(codes, config["slow_replicates"], log=log)
            elif part == "scale":
                part_sizes = [int(size) for size in args.part_sizes.split(",") if size.strip()]
                new, results[part] = scale.scale(codes, config["sizes"], part_sizes, log)
            elif part == "wide":
                new, results[part] = wide.wide(codes, config["wide"], log)
            elif part == "scaleout":
                new, results[part] = scaleout.scaleout(codes, config["scaleout_replicates"], log)
            elif part == "tails":
                new, results[part] = tails.tails(codes, *config["tails"], log=log)
            elif part == "results":
                new, results[part] = results_bench.run_results(config["evaluations"], log=log)
            else:
                new, results[part] = search.run_search_bench(log=log)
            rows += new
    finally:
        results["load_at_end"] = harness.load()
        if not args.keep:
            trash = harness.discard_stores()
            if trash:
                log(f"the stores are being deleted in the background ({trash})")
    print()
    print("\n".join(table.lines(rows)))
    if args.markdown:
        print()
        print("\n".join(table.lines(rows, markdown=True)))
    print(
        f"\nload average at start {info['load_at_start']}, at end {results['load_at_end']} ({info['cores']} cores; "
        f"other work on the machine shows up in every wall time)"
    )
    if args.quick:
        print("quick run: small sizes; the targets apply to the full run (`python bench/run_all.py`)")
    if args.json:
        results["table"] = [dataclasses.asdict(row) for row in rows]
        args.json.write_text(json.dumps(results, indent=1, default=_plain) + "\n")
    return 0 if args.quick or all(row.met is not False for row in rows) else 1


def _plain(value):
    """JSON for the measurements: runs without their per-call latency, kind and hand-over lists, Measured results
    without their output."""
    if dataclasses.is_dataclass(value):
        data = dataclasses.asdict(value)
        data.get("extra", {}).pop("latencies", None)
        data.get("extra", {}).pop("handovers", None)
        data.get("extra", {}).pop("kinds", None)
        data.pop("stdout", None)
        data.pop("stderr", None)
        return data
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
