"""How a cohort is cut into Luigi graphs (lineages, parts, priorities), without Luigi."""

from daydream_luigi.core.expansion import Member
from daydream_luigi.core.schedule import lineages, parts, priorities


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
