"""Scale-out (issue 22): the wide cohort at pool 100 and 1 s, made by one run process or shared by two on one luigid.

The `wide` cohort of the given draft replicates (360 R calls, all in pool `paid`, limit 100), three ways:

  local            one `daydream run` on Luigi's local scheduler (the default)
  luigid, 1        one `daydream run --scheduler central` on a luigid of its own (`daydream ui --no-history`)
  luigid, 2        two `daydream run --scheduler central --shared-by 2`, started together, on one such luigid
  history, 2       the same two on a luigid with its SQLite task history (`daydream ui`, as `make ui` starts it)

For each: the call span at the endpoint against the floor ceil(calls / pool) x latency, the most calls in flight, the
CPU (user + system) per generation of every process involved (each run with the build process and task processes it
reaped, and luigid, also shown apart), and each run process's own calls (its summary's "requests sent"; the
endpoint's total must be the cohort's calls: nothing made twice). Target (issue 22): two processes within 1.15x of
the floor.
"""

import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import harness
from project import COHORT, make_project
from table import Row
from wide import shape_for

POOL, LATENCY = 100, 1.0
TARGET = 1.15  # span / floor with two processes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _reaped(process: subprocess.Popen) -> tuple[float, float]:
    """(CPU s of it and of every child it reaped, the time it ended)."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime, time.perf_counter()


def _luigid(env: dict, root, history: bool) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "daydream_luigi", "ui", "--port", str(port)] + ([] if history else ["--no-history"]),
        env=env,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    for _ in range(300):
        try:
            with urllib.request.urlopen(url + "api/task_list", timeout=1):
                return server, url
        except OSError:
            time.sleep(0.1)
    server.kill()
    sys.exit(f"luigid did not answer at {url}")


def measure(code: harness.Code, replicates: int, processes: int, central: bool, history: bool = False) -> dict:
    """One measured run of the wide cohort by `processes` run processes (on luigid when `central`, with its task
    history when `history`)."""
    shape = shape_for(POOL, replicates)
    root = make_project(harness.run_dir(f"scaleout-{processes}"), shape, code.root)
    with harness.Endpoint(LATENCY) as endpoint:
        env = harness.project_env(root, endpoint.base_url, code)
        server, url = _luigid(env, root, history) if central else (None, "")
        args = [sys.executable, "-m", "daydream_luigi", "run", "--cohort", COHORT, "-q"]
        if central:
            args += ["--scheduler", "central", "--scheduler-url", url, "--shared-by", str(processes)]
        start = time.perf_counter()
        runs = [
            subprocess.Popen(
                args, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1 << 20
            )
            for _ in range(processes)
        ]
        reaped = [_reaped(run) for run in runs]  # their output is small: the pipes never fill before they end
        wall = max(ended for _, ended in reaped) - start
        cpu = sum(used for used, _ in reaped)
        sent = []
        for run in runs:
            out = run.stdout.read()
            if run.returncode != 0:
                sys.exit(
                    f"{code.label}: a run of the scale-out bench in {root} exited {run.returncode}:\n{out[-3000:]}"
                )
            sent.append(int(re.search(r"requests sent (\d+)", out).group(1)))
        luigid_cpu = 0.0
        if server is not None:
            server.send_signal(signal.SIGTERM)
            luigid_cpu = _reaped(server)[0]
        timeline, stats = endpoint.timeline(), endpoint.stats()
    if len(timeline) != shape.generations or sum(sent) != shape.generations:
        sys.exit(f"{code.label}: {shape.generations} calls expected; endpoint {len(timeline)}, runs {sent}")
    if stats["max_concurrent"] > POOL:
        sys.exit(f"{code.label}: {stats['max_concurrent']} calls at once, over the pool limit {POOL}")
    return {
        "calls": shape.generations,
        "span_s": harness.span(timeline),
        "max_concurrent": stats["max_concurrent"],
        "cpu_s": cpu + luigid_cpu,
        "luigid_cpu_s": luigid_cpu,
        "wall_s": wall,
        "sent": sent,
        "root": str(root),
    }


def scaleout(codes: list, replicates: int, log=print) -> tuple[list[Row], dict]:
    """Only the current code: --shared-by is new."""
    code = codes[-1]
    calls = shape_for(POOL, replicates).generations
    floor = math.ceil(calls / POOL) * LATENCY
    name = f"scale-out, pool {POOL}, {LATENCY:g} s, {calls:,} calls"
    rows, out = [], {}
    variants = (("local", 1, False, False), ("luigid, 1", 1, True, False), ("luigid, 2", 2, True, False))
    for label, processes, central, history in variants + (("history, 2", 2, True, True),):
        run = measure(code, replicates, processes, central, history)
        out[label] = run
        span = Row(f"{name}, {label}: call span", "s", floor, floor * TARGET if label == "luigid, 2" else None)
        cpu = Row(f"{name}, {label}: CPU ms per generation", "ms", None, None)
        span.values["after"], cpu.values["after"] = run["span_s"], 1000 * run["cpu_s"] / calls
        rows += [span, cpu]
        if processes == 2:
            share = Row(f"{name}, {label}: calls of the busier process", "%", 50.0, 60.0)
            share.values["after"] = 100 * max(run["sent"]) / calls
            share.notes["after"] = f"{max(run['sent']) / calls:.0%} ({' + '.join(f'{n:,}' for n in run['sent'])})"
            rows.append(share)
        log(
            f"  {label:18} {calls:,} calls: span {run['span_s']:6.1f} s ({run['span_s'] / floor:.2f}x floor "
            f"{floor:.0f} s), max in flight {run['max_concurrent']}, calls per process "
            f"{' + '.join(f'{n:,}' for n in run['sent'])}, CPU {run['cpu_s']:.1f} s = "
            f"{1000 * run['cpu_s'] / calls:.1f} ms/gen (luigid {1000 * run['luigid_cpu_s'] / calls:.1f}), "
            f"wall {run['wall_s']:.1f} s (load {harness.load()})"
        )
    return rows, out
