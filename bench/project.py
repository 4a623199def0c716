"""Synthetic projects for the benchmarks: n concepts, k=2, one template per stage, one generator and one judge.

Each combination yields 3 generations (draft, llm essay, evaluation), so C(n, 2) * 3 generations in all.
"""

import math
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def concepts_for(generations: int) -> int:
    """Smallest concept count whose C(n, 2) * 3 reaches `generations`."""
    n = 2
    while math.comb(n, 2) * 3 < generations:
        n += 1
    return n


def make_project(root: Path, n_concepts: int, pool_limit: int = 8, window: int | None = None) -> Path:
    if root.exists():
        shutil.rmtree(root)
    raw = root / "data" / "1_raw"
    (raw / "concepts" / "descriptions-sentence").mkdir(parents=True)
    lines = ["concept_id,name,active"]
    for i in range(n_concepts):
        lines.append(f"c{i:04d},Concept {i},true")
        (raw / "concepts" / "descriptions-sentence" / f"c{i:04d}.txt").write_text(f"Concept number {i}.\n")
    (raw / "concepts_metadata.csv").write_text("\n".join(lines) + "\n")
    templates = {"draft": ("draft_templates.csv", "parser", "essay_block",
                           "{% for c in concepts %}{{ c.name }}: {{ c.content }}\n{% endfor %}"),
                 "essay": ("essay_templates.csv", "generator", "llm", "Essay from: {{ draft_block }}"),
                 "evaluation": ("evaluation_templates.csv", "parser", "in_last_line",
                                "Judge: {{ response }} End with SCORE: N")}
    for stage, (filename, column, kind, source) in templates.items():
        (raw / filename).write_text(f"template_id,template_name,description,active,{column}\nt-{stage},T,d,true,{kind}\n")
        (raw / "generation_templates" / stage).mkdir(parents=True)
        (raw / "generation_templates" / stage / f"t-{stage}.txt").write_text(source)
    (raw / "llm_models.csv").write_text(
        "id,model,provider,display_name,for_generation,for_evaluation,pool,price_per_mtok\n"
        "gen,bench/gen,openrouter,Gen,true,false,paid,1\njudge,bench/judge,openrouter,Judge,false,true,paid,1\n")
    shutil.copytree(REPO / "config", root / "config")
    cfg = (root / "config" / "luigi.cfg").read_text().replace("paid = 5", f"paid = {pool_limit}")
    (root / "config" / "luigi.cfg").write_text(cfg)
    if window:
        settings = (root / "config" / "daydream.yaml").read_text().replace("window: 500", f"window: {window}")
        (root / "config" / "daydream.yaml").write_text(settings)
    return root
