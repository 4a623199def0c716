"""The plain baseline: the same calls as a benchmark cohort, in the same dependency order and pool limits, sent from
plain threads (one keep-alive `requests` session each) with no Luigi, no templates and no files.

Each pool gets as many threads as its limit; a thread takes the ready generation of its pool that comes first in the
order Luigi's priorities ask for (`schedule.priorities`: earliest lineage first, a draft ranked as if it were a
pool-full of lineages earlier, the tail's drafts and essays first), and a generation becomes ready the moment its
parent's answer arrives. What it measures is the floor of this endpoint, this client library and this machine for the
cohort's dependency graph.
"""

import heapq
import itertools
import threading
import time

import requests


def _children(lineage: list, position: int):
    """(position, pool) of the generations of `lineage` made from the one at `position`."""
    return [(child, pool) for child, (_, pool, parent) in enumerate(lineage) if parent == position]


TAIL_POOL_FULLS, DEPTH_FIRST_POOL_FULLS = 8, 3  # as in `schedule` (this process does not import the pipeline)


def _rank(lineages: list, pools: dict, i: int, position: int, tail: bool = True) -> tuple:
    """The order of `schedule.priorities`, smallest first: lineage i's essays and evaluations at 2i, its draft just
    below lineage i - L's (L = the limit of the draft's pool); in the tail (the last 8 L lineages, never the first
    3 L), every draft just below the tail's first draft and every essay level with the tail's first lineage. The
    baseline has no parts, so its tail is not limited to the last two. `tail` False: the rule before the tail (every
    lineage depth first)."""
    stage, _, _ = lineages[i][position]
    ahead = pools[lineages[i][0][1]]
    start = max(len(lineages) - TAIL_POOL_FULLS * ahead, DEPTH_FIRST_POOL_FULLS * ahead) if tail else len(lineages)
    if stage == "draft":
        return (2 * (min(i, start) - ahead) + 1, i, position)
    return (2 * (start if stage == "essay" and i >= start else i), i, position)


def _first_ready(lineages: list, pools: dict, tail: bool = True) -> dict:
    """pool -> heap of (rank, lineage, position) ready at the start: every lineage's draft."""
    ready = {pool: [] for pool in pools}
    for i, lineage in enumerate(lineages):
        heapq.heappush(ready[lineage[0][1]], _rank(lineages, pools, i, 0, tail))
    return ready


def simulate(lineages: list, pools: dict, latency, tail: bool = True) -> tuple[float, float | None]:
    """(span, first evaluation answered) of the same depth-first rule with no overhead at all: the floor of the rule
    itself, which can be above calls x latency / limit (the rule may leave a pool without ready work near the end).

    `latency` is every call's latency, or a sequence of them in the order the calls are sent (the fake endpoint draws
    its lognormal latencies in the order requests arrive); `tail` False: the rule before the tail (see `_rank`)."""
    latencies = iter(latency) if isinstance(latency, (list, tuple)) else itertools.repeat(latency)
    ready = _first_ready(lineages, pools, tail)
    running, now, first, order = [], 0.0, None, itertools.count()
    free = dict(pools)
    while True:
        for pool, queue in ready.items():
            while queue and free[pool]:
                _, i, position = heapq.heappop(queue)
                free[pool] -= 1
                heapq.heappush(running, (now + next(latencies), next(order), i, position))
        if not running:
            return now, first
        now = running[0][0]
        while running and running[0][0] == now:  # every call ending now, before the freed slots are handed out
            _, _, i, position = heapq.heappop(running)
            stage, pool, _ = lineages[i][position]
            free[pool] += 1
            if stage == "evaluation" and first is None:
                first = now
            for child, child_pool in _children(lineages[i], position):
                heapq.heappush(ready[child_pool], _rank(lineages, pools, i, child, tail))


def run(base_url: str, lineages: list, pools: dict) -> float:
    """Send every call of `lineages` (project.Shape.lineages()) with `pools` limits; returns the wall time."""
    ready = _first_ready(lineages, pools)
    left = {pool: sum(1 for lineage in lineages for _, p, _ in lineage if p == pool) for pool in pools}
    condition = threading.Condition()
    failures = []

    def call(session: requests.Session, i: int, position: int) -> None:
        stage = lineages[i][position][0]
        prompt = f"{stage} {i}.{position}: write about concept {i}" + (
            "\nEnd with SCORE: N" if stage == "evaluation" else ""
        )
        response = session.post(
            f"{base_url}/chat/completions",
            timeout=300,
            headers={"Authorization": "Bearer bench"},
            json={
                "model": f"bench/{stage}",
                "temperature": 0.5,
                "max_tokens": 500,
                "messages": [{"role": "user", "content": prompt}],
            },
        )
        if response.status_code != 200 or not response.json()["choices"][0]["message"]["content"]:
            failures.append(f"{response.status_code} {response.text[:200]}")

    def worker(pool: str) -> None:
        with requests.Session() as session:
            while True:
                with condition:
                    while not ready[pool] and left[pool]:
                        condition.wait()
                    if not left[pool]:
                        return
                    _, i, position = heapq.heappop(ready[pool])
                call(session, i, position)
                with condition:
                    left[pool] -= 1
                    for child, child_pool in _children(lineages[i], position):
                        heapq.heappush(ready[child_pool], _rank(lineages, pools, i, child))
                    condition.notify_all()

    threads = [threading.Thread(target=worker, args=(pool,)) for pool, limit in pools.items() for _ in range(limit)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"baseline: {len(failures)} calls failed, e.g. {failures[0]}")
    return time.perf_counter() - start
