"""How a cohort is cut into Luigi graphs: lineages, parts and priorities (pure functions over the membership).

A lineage is a draft with everything made from it (its essays and their evaluations), or an imported essay, which has
no draft, with its evaluations: no generation depends on another lineage, so any set of whole lineages is a complete
Luigi graph. Luigi's scheduler scans every pending task on each request for work, so a graph holding all n tasks of a
cohort costs O(n) per task run, O(n^2) in all. A cohort is therefore cut into consecutive parts of whole lineages of
about `part_size` generations, and each part is brought into the one running graph by a Feed task (`tasks.Feed`): the
Feed of part k yields part k and the Feed of part k + 1, which waits until part k - 1 is complete and then runs when a
worker finds no generation left to start. The scheduler so holds about two parts at a time, the next part arrives
while the one before it still has calls in flight (no pool waits at a part boundary), and the cost per generation does
not grow with the cohort (BENCHMARKS.md). The part before the last must be complete before the next part comes in,
so a part is the slack for a long call: the shipped 600 generations are about 25 s of work for a pool of 20 at a
median latency of 0.5 s (BENCHMARKS.md); raise it for bigger pools.

Within a graph, Luigi runs the highest priority first (and a task's dependencies inherit its priority). Lineage i's
essays and evaluations rank by i, earliest first, so as soon as a draft is done its essay outranks the drafts behind
it and its evaluations outrank both: scored essays appear within a few call latencies of the start. Drafts alone rank
as if they were one pool-full of lineages earlier (`draft_lookahead`, the limit of the draft's pool): without that,
the last lineages of a graph would each start their draft, essay and evaluations one after another with slots idle,
a round lost per pool-full of lineages at the end (cohort W: 11 rounds where 10 suffice; BENCHMARKS.md).

The tail: the last TAIL_POOL_FULLS pool-fulls of lineages of the cohort run the longest remaining chain first. Their
drafts (three calls to go: draft, essay, evaluation) all rank level with the tail's first draft and their essays level
with the tail's first lineage, above the tail's evaluations, which keep their order. With heavy-tailed latencies a
draft started late, a long one above all, would otherwise run its essay and evaluations with the pool nearly empty at
the end; so every draft and essay of the tail is sent while other work still fills the pool, and the last calls are
evaluations, the only calls nothing waits for (BENCHMARKS.md, heavy tails). The tail never holds one of the first
DEPTH_FIRST_POOL_FULLS pool-fulls of lineages, whose order brings the first evaluations, nor a lineage before the last
two parts, which the scheduler holds together at the end: a part before them whose evaluations waited behind the tail
would hold back the Feed of the last part.
"""

from collections.abc import Callable
from dataclasses import dataclass

from daydream_luigi.core.expansion import Member


@dataclass(frozen=True)
class Lineage:
    index: int
    members: tuple  # the draft first, then its essays and evaluations in membership order


def lineages(members: list[Member]) -> list[Lineage]:
    """The cohort's lineages in membership order (drafts come first in a membership, each with its descendants; a
    generation without a parent, a draft or an imported essay, is the root of its own)."""
    by_id = {member.gen_id: member for member in members}
    groups: dict[str, list[Member]] = {}
    for member in members:
        root = member
        while root.parent_gen_id:
            root = by_id[root.parent_gen_id]
        groups.setdefault(root.gen_id, []).append(member)
    return [Lineage(i, tuple(group)) for i, group in enumerate(groups.values())]


def parts(all_lineages: list[Lineage], part_size: int) -> list[list[Lineage]]:
    """Consecutive whole lineages, about `part_size` generations per part (a lineage bigger than that is a part)."""
    result: list[list[Lineage]] = [[]]
    size = 0
    for lineage in all_lineages:
        if result[-1] and size + len(lineage.members) > part_size:
            result.append([])
            size = 0
        result[-1].append(lineage)
        size += len(lineage.members)
    return result if result[-1] else []


def part_members(part_lineages: list[Lineage], stage: str = "") -> list[Member]:
    """The generations of these lineages, in order; with `stage`, only those of that stage."""
    return [m for lineage in part_lineages for m in lineage.members if not stage or m.stage == stage]


TAIL_POOL_FULLS = 8  # lineages of the tail, in pool-fulls of the draft's pool (BENCHMARKS.md, heavy tails)
DEPTH_FIRST_POOL_FULLS = 3  # the first lineages, in pool-fulls, are never in the tail


def last_parts_start(all_parts: list[list[Lineage]]) -> int:
    """The first lineage of the last two parts (the whole cohort when it is one or two parts)."""
    return all_parts[-2][0].index if len(all_parts) > 1 else 0


def tail_start(count: int, ahead: int, earliest: int = 0) -> int:
    """The first lineage of the tail of `count` lineages whose drafts run `ahead` lineages early: the last
    TAIL_POOL_FULLS x `ahead` lineages, but neither one of the first DEPTH_FIRST_POOL_FULLS x `ahead` nor one before
    `earliest`; `count` (no tail) when `ahead` is 0."""
    return max(count - TAIL_POOL_FULLS * ahead, DEPTH_FIRST_POOL_FULLS * ahead, earliest)


def position(index: int, stage: str, ahead: int, tail: int) -> int:
    """Where a generation of lineage `index` ranks, in lineages (the smaller the earlier): a draft `ahead` lineages
    early (a draft of the tail, starting at lineage `tail`, level with the tail's first draft), an essay of the tail
    level with the tail's first lineage, any other generation at its own lineage."""
    if stage == "draft":
        return min(index, tail) - ahead
    if stage == "essay" and index >= tail:
        return tail
    return index


def priorities(
    all_lineages: list[Lineage], draft_lookahead: Callable[[Member], int], tail_earliest: int = 0
) -> dict[str, int]:
    """gen_id -> Luigi priority (see the module docstring); `draft_lookahead(draft)` is how many lineages ahead its
    draft may start, and its pool-full for the tail; `tail_earliest` the first lineage the tail may hold
    (`last_parts_start`). Every priority is above 0, the priority of the wrapper and report tasks, which Luigi would
    otherwise pass down to every generation; a draft ranks just below the essays and evaluations of the lineage it
    stands in for, never level with them."""
    count = len(all_lineages)
    ranks = {}
    for lineage in all_lineages:
        root = lineage.members[0]
        ahead = draft_lookahead(root) if root.stage == "draft" else 0
        tail = tail_start(count, ahead, tail_earliest)
        for m in lineage.members:
            at = position(lineage.index, m.stage, ahead, tail)
            ranks[m.gen_id] = 2 * (count - at) - (1 if m.stage == "draft" else 0)
    return ranks
