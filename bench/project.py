"""Synthetic projects for the benchmarks: a cohort of a given shape, written so that both the current code and the
"before" checkout can run it with their own `daydream run`.

A shape is the cohort's axes: concepts (k = 2, so C(n, 2) combinations), draft templates, generation models, draft
replicates, evaluation templates and judges; one llm essay per draft, written by the draft's own model (so a draft's
essay is in its pool). Every lineage is a draft, its essay and (evaluation templates x judges) evaluations. Models say
which pool they are in; `config/luigi.cfg` [resources] gets exactly the pools of the shape.

The project's config/ is the config/ of the code under test (the current repository or the "before" checkout), with
these changes only: the pool limits, no per-pool request rates (`pools:`, so a pool is limited by its concurrency
alone, as in the issue's figures), a guard high enough never to ask, and optionally `scheduling.part_size`.
"""

import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

COHORT = "bench"  # the named cohort every benchmark project runs (config/cohorts/bench.yaml)


@dataclass(frozen=True)
class Model:
    model_id: str
    pool: str


@dataclass(frozen=True)
class Shape:
    concepts: int
    generators: tuple = (Model("gen", "paid"),)
    judges: tuple = (Model("judge", "paid"),)
    draft_templates: int = 1
    evaluation_templates: int = 1
    draft_replicates: int = 1
    pools: dict = field(default_factory=lambda: {"paid": 5})

    @property
    def combos(self) -> int:
        return math.comb(self.concepts, 2)

    @property
    def drafts(self) -> int:
        return self.combos * self.draft_templates * len(self.generators) * self.draft_replicates

    @property
    def evaluations_per_essay(self) -> int:
        return self.evaluation_templates * len(self.judges)

    @property
    def generations(self) -> int:
        return self.drafts * (2 + self.evaluations_per_essay)

    def calls_by_pool(self) -> dict:
        """Model calls per pool (every essay is an llm essay, so every generation is one call)."""
        calls = dict.fromkeys(self.pools, 0)
        per_generator = self.drafts // len(self.generators)
        for model in self.generators:
            calls[model.pool] += 2 * per_generator
        for model in self.judges:
            calls[model.pool] += self.drafts * self.evaluation_templates
        return calls

    def lineages(self) -> list[list[tuple[str, str, int]]]:
        """(stage, pool, parent index within the lineage or -1) per generation, lineage by lineage in the order the
        cohort's membership lists them (combination, draft template, model, replicate)."""
        out = []
        for _ in range(self.combos):
            for _ in range(self.draft_templates):
                for model in self.generators:
                    for _ in range(self.draft_replicates):
                        lineage = [("draft", model.pool, -1), ("essay", model.pool, 0)]
                        lineage += [
                            ("evaluation", judge.pool, 1)
                            for _ in range(self.evaluation_templates)
                            for judge in self.judges
                        ]
                        out.append(lineage)
        return out


def concepts_for(generations: int) -> int:
    """Smallest concept count whose C(n, 2) lineages of 3 (one judge) reach `generations`."""
    n = 2
    while math.comb(n, 2) * 3 < generations:
        n += 1
    return n


def make_project(root: Path, shape: Shape, code: Path, part_size: int | None = None) -> Path:
    """Write data/1_raw, config/ and the cohort spec under `root` (a new, empty folder; see harness.run_dir)."""
    raw = root / "data" / "1_raw"
    descriptions = raw / "concepts" / "descriptions-sentence"
    descriptions.mkdir(parents=True)
    concepts = [f"c{i:04d}" for i in range(shape.concepts)]
    (raw / "concepts_metadata.csv").write_text(
        "concept_id,name,active\n" + "".join(f"{c},Concept {i},true\n" for i, c in enumerate(concepts))
    )
    for i, concept in enumerate(concepts):
        (descriptions / f"{concept}.txt").write_text(f"Concept number {i}, described in one sentence.\n")
    # Each template's text names it, so two templates never render the same prompt (gen_ids hash the prompt).
    templates = {
        "draft": (
            "draft_templates.csv",
            "parser",
            "essay_block",
            shape.draft_templates,
            "Draft ({tid}):\n{{% for c in concepts %}}- {{{{ c.name }}}}: {{{{ c.content }}}}\n{{% endfor %}}",
        ),
        "essay": ("essay_templates.csv", "generator", "llm", 1, "Essay ({tid}) from: {{{{ draft_block }}}}\n"),
        "evaluation": (
            "evaluation_templates.csv",
            "parser",
            "in_last_line",
            shape.evaluation_templates,
            "Judge ({tid}): {{{{ response }}}}\nEnd with SCORE: N\n",
        ),
    }
    ids = {}
    for stage, (filename, column, kind, count, source) in templates.items():
        ids[stage] = [f"t-{stage}-{i + 1}" for i in range(count)]
        folder = raw / "generation_templates" / stage
        folder.mkdir(parents=True)
        for tid in ids[stage]:
            (folder / f"{tid}.txt").write_text(source.format(tid=tid))
        (raw / filename).write_text(
            f"template_id,template_name,description,active,{column}\n"
            + "".join(f"{tid},{tid},bench,true,{kind}\n" for tid in ids[stage])
        )
    rows = ["id,model,provider,display_name,for_generation,for_evaluation,pool,price_per_mtok"]
    rows += [f"{m.model_id},bench/{m.model_id},openrouter,{m.model_id},true,false,{m.pool},1" for m in shape.generators]
    rows += [f"{m.model_id},bench/{m.model_id},openrouter,{m.model_id},false,true,{m.pool},1" for m in shape.judges]
    (raw / "llm_models.csv").write_text("\n".join(rows) + "\n")
    _write_config(root / "config", code / "config", shape.pools, part_size)
    spec = {
        "concepts": concepts,
        "k": 2,
        "draft_templates": ids["draft"],
        "essay_templates": ids["essay"],
        "evaluation_templates": ids["evaluation"],
        "generation_models": [m.model_id for m in shape.generators],
        "evaluation_models": [m.model_id for m in shape.judges],
        "replicates": {"draft": shape.draft_replicates, "essay": 1, "evaluation": 1},
    }
    (root / "config" / "cohorts" / f"{COHORT}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


def _write_config(config: Path, shipped: Path, pools: dict, part_size: int | None) -> None:
    shutil.copytree(shipped, config, ignore=shutil.ignore_patterns("cohorts", "requirements-*"))
    (config / "cohorts").mkdir()
    luigi_cfg = config / "luigi.cfg"
    resources = "[resources]\n" + "".join(f"{pool} = {limit}\n" for pool, limit in pools.items()) + "\n"
    text, count = re.subn(r"^\[resources\]\n(?:[^\[]*\n)?(?=\[)", resources, luigi_cfg.read_text(), flags=re.M)
    if count != 1:
        raise RuntimeError(f"{shipped / 'luigi.cfg'}: no [resources] section to replace")
    luigi_cfg.write_text(text)
    settings_file = config / "daydream.yaml"
    settings = yaml.safe_load(settings_file.read_text())
    settings.pop("pools", None)  # request rates per pool: none (concurrency limits only)
    if "guard" in settings:
        settings["guard"] = {"max_calls": 10**9, "max_cost_usd": 10**9}
    if part_size is not None:
        if "part_size" not in settings.get("scheduling", {}):
            raise ValueError(f"{settings_file}: this code has no scheduling.part_size")
        settings["scheduling"]["part_size"] = part_size
    settings_file.write_text(yaml.safe_dump(settings, sort_keys=False))
