"""Scheduling overhead per generation at zero model latency, for growing cohorts (should stay flat in n).

Usage: python bench/scale.py [N ...]   (default 1000 5000 20000)
"""

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from project import concepts_for, make_project  # noqa: E402

from daydream_luigi.fake_endpoint import FakeEndpoint  # noqa: E402


def run(root: Path, base_url: str, workers: int) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "DAYDREAM_DATA_ROOT": str(root / "data"), "DAYDREAM_CONFIG_DIR": str(root / "config"),
           "DAYDREAM_LLM_BASE_URL": base_url, "OPENROUTER_API_KEY": "bench"}
    env.pop("LUIGI_CONFIG_PATH", None)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "daydream_luigi", "run", "--workers", str(workers)], env=env,
                          cwd=root, capture_output=True, text=True)
    return time.perf_counter() - start, done


def main(sizes: list[int], workers: int = 8) -> list[dict]:
    rows = []
    with FakeEndpoint() as endpoint:
        for size in sizes:
            root = make_project(Path("/tmp/daydream-bench") / f"scale-{size}", concepts_for(size), pool_limit=workers)
            n = concepts_for(size)
            generations = n * (n - 1) // 2 * 3
            endpoint.reset_stats()
            wall, done = run(root, endpoint.base_url, workers)
            if done.returncode != 0:
                sys.exit(done.stdout[-2000:] + done.stderr[-2000:])
            rerun, _ = run(root, endpoint.base_url, workers)
            rows.append({"generations": generations, "wall_s": wall, "ms_per_gen": 1000 * wall / generations,
                         "calls": endpoint.stats["requests"], "rerun_s": rerun})
            print(f"n={generations:>6}  wall {wall:8.1f} s  {1000 * wall / generations:6.2f} ms/generation  "
                  f"calls {endpoint.stats['requests']}  no-op re-run {rerun:5.1f} s", flush=True)
    return rows


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 5000, 20000])
