"""Synthetic projects for the benchmarks: n concepts, k=2, one template per stage, one generator, `judges` judges.

Each draft yields 1 llm essay and `judges` x `evaluation_templates` evaluations, so with the defaults (1 judge,
1 evaluation template, 1 replicate) C(n, 2) * 3 generations in all.
"""

import math
import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def concepts_for(generations: int) -> int:
    """Smallest concept count whose C(n, 2) * 3 reaches `generations`."""
    n = 2
    while math.comb(n, 2) * 3 < generations:
        n += 1
    return n


def generations_of(n_concepts: int, judges: int = 1, evaluation_templates: int = 1, draft_replicates: int = 1) -> dict:
    drafts = math.comb(n_concepts, 2) * draft_replicates
    return {"draft": drafts, "essay": drafts, "evaluation": drafts * judges * evaluation_templates}


def make_project(root: Path, n_concepts: int, pool_limit: int = 8, window: int | None = None, judges: int = 1,
                 evaluation_templates: int = 1, draft_replicates: int = 1, fresh: bool = True) -> Path:
    """Write a project (data/1_raw + config) under `root`.

    A non-empty folder is deleted first (`fresh`) or refused. Prefer a new folder: deleting a big store right before a
    timed run makes ext4 scan past thousands of recently freed inodes on every file it then creates (`recently_deleted`
    in perf), which would be charged to the pipeline. The benchmarks write each run to a new folder.
    """
    if root.exists() and any(root.iterdir()):
        if not fresh:
            raise FileExistsError(root)
        shutil.rmtree(root)
    raw = root / "data" / "1_raw"
    (raw / "concepts" / "descriptions-sentence").mkdir(parents=True)
    lines = ["concept_id,name,active"]
    for i in range(n_concepts):
        lines.append(f"c{i:04d},Concept {i},true")
        (raw / "concepts" / "descriptions-sentence" / f"c{i:04d}.txt").write_text(f"Concept number {i}.\n")
    (raw / "concepts_metadata.csv").write_text("\n".join(lines) + "\n")
    templates = {"draft": ("draft_templates.csv", "parser", ["essay_block"],
                           "{% for c in concepts %}{{ c.name }}: {{ c.content }}\n{% endfor %}"),
                 "essay": ("essay_templates.csv", "generator", ["llm"], "Essay from: {{ draft_block }}"),
                 "evaluation": ("evaluation_templates.csv", "parser", ["in_last_line", "complex"],
                                "Judge ({}): {{{{ response }}}} End with SCORE: N")}
    for stage, (filename, column, kinds, source) in templates.items():
        count = evaluation_templates if stage == "evaluation" else 1
        rows = [f"template_id,template_name,description,active,{column}"]
        (raw / "generation_templates" / stage).mkdir(parents=True)
        for i in range(count):
            template_id = f"t-{stage}" if i == 0 else f"t-{stage}-{i + 1}"
            rows.append(f"{template_id},T,d,true,{kinds[i % len(kinds)]}")
            text = source.format(template_id) if stage == "evaluation" else source
            (raw / "generation_templates" / stage / f"{template_id}.txt").write_text(text)
        (raw / filename).write_text("\n".join(rows) + "\n")
    models = ["id,model,provider,display_name,for_generation,for_evaluation,pool,price_per_mtok",
              "gen,bench/gen,openrouter,Gen,true,false,paid,1"]
    models += [f"{'judge' if i == 0 else f'judge-{i + 1}'},bench/judge-{i + 1},openrouter,Judge {i + 1},false,true,paid,1"
               for i in range(judges)]
    (raw / "llm_models.csv").write_text("\n".join(models) + "\n")
    shutil.copytree(REPO / "config", root / "config")
    shutil.rmtree(root / "config" / "cohorts", ignore_errors=True)  # the repository's named cohorts are not ours
    cfg = (root / "config" / "luigi.cfg").read_text().replace("paid = 5", f"paid = {pool_limit}")
    (root / "config" / "luigi.cfg").write_text(cfg)
    settings_file = root / "config" / "daydream.yaml"
    settings = yaml.safe_load(settings_file.read_text())
    settings["replicates"]["draft"] = draft_replicates
    if window:
        settings["scheduling"]["window"] = window
    settings_file.write_text(yaml.safe_dump(settings, sort_keys=False))
    return root
