"""How a cohort is cut into Luigi graphs (lineages, parts, priorities), without Luigi."""

from daydream_luigi.core.expansion import Member
from daydream_luigi.core.schedule import last_parts_start, lineages, parts, priorities, tail_start


def member(stage: str, gen_id: str, parent: str = "") -> Member:
    return Member(stage, gen_id, "c", parent, "combo", "t", "m", 1)


COHORT = [  # two drafts; d1 has two essays (one judged twice), d2 one essay judged once
    member("draft", "d1"),
    member("draft", "d2"),
    member("essay", "e1", "d1"),
    member("essay", "e2", "d1"),
    member("essay", "e3", "d2"),
    member("evaluation", "v1", "e1"),
    member("evaluation", "v2", "e1"),
    member("evaluation", "v3", "e3"),
]


def test_a_lineage_is_a_draft_with_everything_made_from_it_in_membership_order():
    found = lineages(COHORT)
    assert [lineage.index for lineage in found] == [0, 1]
    assert [[m.gen_id for m in lineage.members] for lineage in found] == [
        ["d1", "e1", "e2", "v1", "v2"],
        ["d2", "e3", "v3"],
    ]


def test_parts_hold_whole_lineages_of_about_part_size_generations():
    found = lineages(COHORT)
    assert [[lineage.index for lineage in part] for part in parts(found, 5)] == [[0], [1]]
    assert [[lineage.index for lineage in part] for part in parts(found, 8)] == [[0, 1]]
    assert [[lineage.index for lineage in part] for part in parts(found, 2)] == [[0], [1]]  # a bigger lineage: alone
    assert parts([], 10) == []


def test_earlier_lineages_outrank_later_ones_and_every_priority_is_above_the_wrappers():
    assert priorities(lineages(COHORT), lambda draft: 0) == {
        "d1": 3,
        "e1": 4,
        "e2": 4,
        "v1": 4,
        "v2": 4,
        "d2": 1,
        "e3": 2,
        "v3": 2,
    }


def test_a_draft_runs_a_pool_full_of_lineages_ahead_just_below_the_lineage_it_stands_in_for():
    three = COHORT + [member("draft", "d3"), member("essay", "e4", "d3")]
    ranks = priorities(lineages(three), lambda draft: 1)
    assert ranks["d2"] == ranks["e1"] - 1 and ranks["d3"] == ranks["e3"] - 1  # lineage i+1's draft next to lineage i
    assert ranks["d1"] > ranks["e1"] and min(ranks.values()) > 0


def chains(count: int) -> list[Member]:
    """`count` lineages of a draft, its essay and one evaluation each, in membership order (drafts first)."""
    return (
        [member("draft", f"d{i}") for i in range(count)]
        + [member("essay", f"e{i}", f"d{i}") for i in range(count)]
        + [member("evaluation", f"v{i}", f"e{i}") for i in range(count)]
    )


def test_the_tail_is_the_last_eight_pool_fulls_of_lineages_never_the_first_three_nor_before_the_last_two_parts():
    assert tail_start(540, 20) == 380  # the wide cohort at pool 20: its last 160 lineages
    assert tail_start(540, 20, 450) == 450  # ... of which the last two parts hold only the last 90
    assert tail_start(200, 20) == 60  # a short cohort keeps its first three pool-fulls in depth-first order
    assert tail_start(50, 20) == 60  # none: every lineage is among the first three pool-fulls
    assert tail_start(12, 0) == 12  # no lookahead (an imported essay's lineage), no tail


def test_the_last_two_parts_start_at_the_first_lineage_of_the_part_before_the_last():
    found = lineages(chains(5))
    assert last_parts_start(parts(found, 6)) == 2  # parts of 2 lineages (3 generations each): [0, 1], [2, 3], [4]
    assert last_parts_start(parts(found, 15)) == 0  # one part
    assert last_parts_start([]) == 0


def test_the_tails_drafts_and_essays_run_before_its_evaluations_the_rest_depth_first():
    """13 lineages, a pool of 1: lineages 5-12 are the tail. Lineages 0-4 rank as before (each draft a lineage early);
    the tail's drafts rank level with its first draft (lineage 5's, at 4), its essays level with its first lineage (5),
    above the evaluations of lineages 6-12, which keep their order."""
    ranks = priorities(lineages(chains(13)), lambda draft: 1)
    assert ranks == {
        **{f"d{i}": 27 - 2 * i for i in range(5)},
        **{f"e{i}": 26 - 2 * i for i in range(5)},
        **{f"v{i}": 26 - 2 * i for i in range(5)},
        **{f"d{i}": 17 for i in range(5, 13)},
        **{f"e{i}": 16 for i in range(5, 13)},
        **{f"v{i}": 26 - 2 * i for i in range(5, 13)},
    }
    later = priorities(lineages(chains(13)), lambda draft: 1, tail_earliest=9)  # the last two parts: lineages 9-12
    assert {gen_id: rank for gen_id, rank in later.items() if gen_id[1:] in {"9", "10", "11", "12"}} == {
        **{f"d{i}": 9 for i in range(9, 13)},
        **{f"e{i}": 8 for i in range(9, 13)},
        **{f"v{i}": 26 - 2 * i for i in range(9, 13)},
    }
    assert {gen_id: rank for gen_id, rank in later.items() if int(gen_id[1:]) < 9} == {
        **{f"d{i}": 27 - 2 * i for i in range(9)},
        **{f"e{i}": 26 - 2 * i for i in range(9)},
        **{f"v{i}": 26 - 2 * i for i in range(9)},
    }


def test_no_generation_ranks_below_one_made_from_it_so_luigi_passes_no_priority_down():
    """Luigi raises a task's dependencies to its own priority: a draft at or above its essays and an essay at or above
    its evaluations leave every priority as computed, in the tail too."""
    members = chains(200)
    ranks = priorities(lineages(members), lambda draft: 20)
    assert all(ranks[m.parent_gen_id] >= ranks[m.gen_id] for m in members if m.parent_gen_id)
    assert ranks["d199"] == ranks["d60"] < ranks["d59"] and ranks["e199"] == ranks["v60"] > ranks["v61"]
