"""The end of a cohort in the priorities a run gives Luigi: the tail's drafts and essays before its evaluations, never
before the last two parts (the plan of the shipped test cohort; no run, no call)."""

import pytest
import yaml
from conftest import members_of

from daydream_luigi.core.settings import Paths
from daydream_luigi.execution import plans
from daydream_luigi.execution.luigi_config import configure_luigi


def ranks_by_lineage(part_size: int, project) -> dict:
    """(lineage, stage) -> the set of Luigi priorities of the default cohort's generations, with a pool of 1 for its
    drafts (a pool-full is one lineage) and parts of `part_size` generations."""
    luigi_cfg = project / "config" / "luigi.cfg"
    luigi_cfg.write_text(luigi_cfg.read_text().replace("paid = 5", "paid = 1"))
    settings_file = project / "config" / "daydream.yaml"
    settings = yaml.safe_load(settings_file.read_text())
    settings["scheduling"]["part_size"] = part_size
    settings_file.write_text(yaml.safe_dump(settings))
    configure_luigi(Paths.from_env())
    plans.forget_plans()
    plan = plans.cohort_plan(members_of()[0].cohort_id)
    found = {}
    for lineage in plan.lineages:
        for m in lineage.members:
            found.setdefault((lineage.index, m.stage), set()).add(plan.priority[m.gen_id])
    return found


@pytest.mark.parametrize(
    ("part_size", "tail"),
    [(42, 3), (7, 4)],  # one part: the tail starts after the first three pool-fulls; a part a lineage: the last two
)
def test_the_runs_priorities_put_the_tails_drafts_and_essays_first_from_the_last_two_parts(project, part_size, tail):
    """6 lineages of a draft, 2 essays and 4 evaluations; drafts in a pool of 1 (ahead 1 lineage)."""
    found = ranks_by_lineage(part_size, project)
    assert len(found) == 18
    for i in range(6):
        if i < tail:
            assert found[i, "draft"] == {2 * (6 - i + 1) - 1}
            assert found[i, "essay"] == found[i, "evaluation"] == {2 * (6 - i)}
        else:
            assert found[i, "draft"] == {2 * (6 - tail + 1) - 1}
            assert found[i, "essay"] == {2 * (6 - tail)}
            assert found[i, "evaluation"] == {2 * (6 - i)}
