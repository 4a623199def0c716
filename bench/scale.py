"""Scale at zero latency: full `daydream run` of growing cohorts, the no-op re-run, and peak memory.

Cohorts of C(n, 2) combinations x 1 draft template x 1 generation model, an llm essay and 1 judge each (3 generations
a lineage; ~1,000 = 27 concepts, 1,053 generations; ~20,000 = 116 concepts, 20,010), pool `paid` of 5 (the shipped
limit) and the default worker count, endpoint latency 0. Each run is a new store and the whole command: validation,
cohort expansion, every generation (render, one HTTP round trip, its files), the results tables and report.html.

  all-in     wall / n
  marginal   (wall - start-up) / (n - 3), start-up = the wall of the same command on a 3-generation cohort
  flatness   marginal at the largest size / marginal at the smallest (target <= 1.3)
  no-op      the same command again on the complete largest store (it must make no call; target <= 10 s)
  memory     ru_maxrss of the run (os.wait4): the largest resident set of the run's process or of any one task process
             it forked (they share most pages with it; the sum over processes is not measured)
  baseline   the same calls through the plain baseline (HTTP only: no Luigi, no files), ms per call
"""

import harness
import runs
from project import Shape, concepts_for
from table import Row

POOLS = {"paid": 5}


def shape_for(size: int) -> Shape:
    return Shape(concepts=concepts_for(size) if size > 3 else 2, pools=POOLS)


def _one(code: harness.Code, size: int, part_size: int | None, rerun: bool, log) -> runs.Run:
    shape = shape_for(size)
    run = runs.pipeline(code, shape, part_size=part_size, rerun=rerun)
    n = shape.generations
    rerun_text = f", no-op re-run {run.extra['rerun_wall_s']:.2f} s" if rerun else ""
    log(
        f"  {code.label.split()[0]:6} n={n:>6,}{'' if part_size is None else f' part_size {part_size}'}: wall "
        f"{run.wall_s:7.1f} s = {1000 * run.wall_s / n:5.2f} ms/gen, CPU {1000 * run.cpu_s / n:5.2f} ms/gen, peak RSS "
        f"{run.maxrss_mb:.0f} MB, first call after {run.first_call_s:.2f} s{rerun_text} (load {harness.load()})"
    )
    return run


def scale(codes: list, sizes: list[int], part_sizes: list[int] = (), log=print) -> tuple[list[Row], dict]:
    largest = max(sizes)
    out = {"startup": {}, "sizes": {}, "part_sizes": {}, "baseline": {}}  # sizes: label -> size -> run
    log(f"scale: sizes {', '.join(f'{shape_for(s).generations:,}' for s in sizes)} at zero latency")
    for code in codes:
        label = code.label.split()[0]
        out["startup"][label] = _one(code, 3, None, False, log)
        out["sizes"][label] = {size: _one(code, size, None, size == largest, log) for size in sizes}
    for part_size in part_sizes:
        out["part_sizes"][part_size] = _one(harness.after(), largest, part_size, False, log)
    for size in sizes:
        out["baseline"][size] = runs.plain(shape_for(size))
        log(f"  baseline n={out['baseline'][size].calls:,}: {out['baseline'][size].wall_s:.1f} s")
    return _rows(codes, sizes, out), out


def _rows(codes: list, sizes: list[int], out: dict) -> list[Row]:
    labels = [code.label.split()[0] for code in codes]
    smallest, largest = min(sizes), max(sizes)
    n = {size: shape_for(size).generations for size in sizes}

    def marginal(label: str, size: int) -> float:
        return 1000 * (out["sizes"][label][size].wall_s - out["startup"][label].wall_s) / (n[size] - 3)

    rows = []
    for size in sizes:
        all_in = {label: 1000 * out["sizes"][label][size].wall_s / n[size] for label in labels}
        all_in["baseline"] = 1000 * out["baseline"][size].wall_s / n[size]
        rows.append(Row(f"zero latency, {n[size]:,} generations: ms per generation, all-in", "ms", None, None, all_in))
        rows.append(
            Row(
                f"zero latency, {n[size]:,} generations: ms per generation, marginal",
                "ms",
                None,
                None,
                {label: marginal(label, size) for label in labels},
            )
        )
        rows.append(
            Row(
                f"zero latency, {n[size]:,} generations: CPU ms per generation (run + task processes)",
                "ms",
                None,
                None,
                {label: 1000 * out["sizes"][label][size].cpu_s / n[size] for label in labels},
            )
        )
    rows.append(
        Row(
            f"flatness: marginal ms/gen, {n[largest]:,} / {n[smallest]:,}",
            "x",
            1.0,
            1.3,
            {label: marginal(label, largest) / marginal(label, smallest) for label in labels},
        )
    )
    rows.append(
        Row(
            "start-up: the command on a 3-generation cohort",
            "s",
            None,
            None,
            {label: out["startup"][label].wall_s for label in labels},
        )
    )
    rows.append(
        Row(
            f"no-op re-run of the complete {n[largest]:,}",
            "s",
            None,
            10.0,
            {label: out["sizes"][label][largest].extra["rerun_wall_s"] for label in labels},
        )
    )
    rows.append(
        Row(
            f"peak RSS, run of {n[largest]:,} generations",
            "MB",
            None,
            None,
            {label: out["sizes"][label][largest].maxrss_mb for label in labels},
        )
    )
    for part_size, run in sorted(out["part_sizes"].items()):
        rows.append(
            Row(
                f"{n[largest]:,} generations with part_size {part_size}: ms/gen all-in (peak RSS)",
                "ms",
                None,
                None,
                {"after": 1000 * run.wall_s / n[largest]},
                {"after": f"{1000 * run.wall_s / n[largest]:.2f} ms ({run.maxrss_mb:.0f} MB)"},
            )
        )
    return rows
