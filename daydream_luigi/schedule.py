"""How a cohort is cut into Luigi graphs: lineages, parts and priorities (pure functions over the membership).

A lineage is a draft with everything made from it (its essays and their evaluations), or an imported essay, which has
no draft, with its evaluations: no generation depends on another lineage, so any set of whole lineages is a complete
Luigi graph. Luigi's scheduler scans every pending task on each
request for work, so one graph of n tasks costs O(n^2); `daydream run` therefore builds a big cohort as consecutive
parts of whole lineages of about `part_size` generations each (the cost per generation stays flat), and a cohort that
fits in one part as the single graph under its `Cohort` root.

Within a graph, Luigi runs the highest priority first and a task's dependencies inherit its priority, so giving every
task of lineage i the priority n - i makes the scheduler go deep before wide: as soon as a draft is done its essay outranks
the next draft, and its evaluations outrank both, so scored essays appear from the first minutes of a long run.
"""

from dataclasses import dataclass

from .cohort import Member


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


def priorities(all_lineages: list[Lineage]) -> dict[str, int]:
    """gen_id -> Luigi priority: earlier lineages first, depth before breadth (see the module docstring). All are
    above 0, the priority of the wrapper and report tasks, which Luigi would otherwise pass down to every generation."""
    count = len(all_lineages)
    return {m.gen_id: count - lineage.index for lineage in all_lineages for m in lineage.members}
