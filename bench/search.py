"""Budgeted search (issue 21): how many calls each strategy spends before the first gate pass, and whether it finds
the planted combination, over 20 seeds.

A loopback judge (tests/fake_judge.py's generator, which carries the draft prompt's concept names into the draft and
the essay) scores an essay a base + noise, plus a planted bonus:

  planted   4, +3 when the essay names all 3 concepts of the planted combination (8 concepts, k = 3: 56 combinations)
  additive  1, +3 per concept of the planted combination the essay names (beam grows combinations from k = 1 to 3)

noise is -1, 0 or +1, drawn from the judge, the prompt and the world's noise seed (scores are clipped to 0..10).
The gate, by 2 judges: mean >= 6.5 (planted: 6-8 against 3-5 elsewhere) or >= 9 (additive: 9-10 for the planted
combination, at most 8 for one with 2 of its concepts). A finalist is judged with 3 drafts x 2 judges x 2
replicates; the cube gives that to every combination (56 x 18 = 1,008 calls).

The 20 seeds are 2 noise seeds (worlds, each with its planted combination drawn from the seed) x 10 strategy seeds.
Each world's cube is made once, live, by `daydream run` against the judge; the strategies are then replayed over it
(`daydream search --replay`, no model call) for every strategy seed, and one live search per world is checked against
its replay (same rounds.csv). Random gets halving's calls for the same seed as its budget.

Targets: halving finds the planted combination in >= 19 of 20 seeds, with a median of <= 30% of the cube's calls
until the first pass; random at the same budget finds it less often; on the additive world beam spends fewer calls
than halving (median).

Usage: python bench/run_all.py --only search    (this file's --replays is the child that replays, see `replays`)
"""

import hashlib
import json
import random
import statistics
import subprocess
import sys
from pathlib import Path

import harness
import yaml
from project import _write_config

sys.path.insert(0, str(harness.REPO / "tests"))
from fake_judge import FakeJudge

NAMES = ("Amber", "Basalt", "Cobalt", "Dunes", "Ember", "Fjords", "Garnet", "Harbors")
CONCEPTS = [name.lower() for name in NAMES]
WORLDS = (1, 2)  # noise seeds
STRATEGY_SEEDS = tuple(range(1, 11))
GATE = {"planted": 6.5, "additive": 9.0}
STRATEGIES = ("halving", "beam", "random", "exhaustive")


def planted_of(world: int) -> tuple[str, ...]:
    return tuple(sorted(random.Random(f"planted-{world}").sample(CONCEPTS, 3)))


class PlantedJudge(FakeJudge):
    def __init__(self, kind: str, world: int):
        super().__init__()
        self.kind, self.world = kind, world
        self.names = [NAMES[CONCEPTS.index(c)] for c in planted_of(world)]

    def chat_answer(self, prompt: str, model: str = "") -> str:
        if "SCORE" not in prompt:
            return super().chat_answer(prompt, model)
        found = sum(name in prompt for name in self.names)
        bonus = 3 * found if self.kind == "additive" else 3 * (found == len(self.names))
        noise = int(hashlib.sha256(f"{self.world}|{model}|{prompt}".encode()).hexdigest(), 16) % 3 - 1
        base = 1 if self.kind == "additive" else 4
        return f"Strengths: some.\nSCORE: {max(0, min(10, base + bonus + noise))}"


def make_project(root: Path, kind: str) -> None:
    raw = root / "data" / "1_raw"
    folder = raw / "concepts" / "descriptions-sentence"
    folder.mkdir(parents=True)
    (raw / "concepts_metadata.csv").write_text(
        "concept_id,name,active\n" + "".join(f"{c},{n},true\n" for c, n in zip(CONCEPTS, NAMES))
    )
    for concept, name in zip(CONCEPTS, NAMES):
        (folder / f"{concept}.txt").write_text(f"All about {name}.\n")
    sources = {
        "draft": (
            "draft_templates.csv",
            "parser",
            "essay_block",
            "Combine {{ concepts | map(attribute='name') | join(' and ') }}; write <essay>...</essay>.\n",
        ),
        "essay": ("essay_templates.csv", "generator", "llm", "Write an essay from this draft:\n{{ draft_block }}\n"),
        "evaluation": (
            "evaluation_templates.csv",
            "parser",
            "in_last_line",
            "Judge:\n{{ response }}\nEnd with SCORE: N\n",
        ),
    }
    for stage, (filename, column, kind_, source) in sources.items():
        (raw / "generation_templates" / stage).mkdir(parents=True)
        (raw / "generation_templates" / stage / f"t-{stage}.txt").write_text(source)
        (raw / filename).write_text(
            f"template_id,template_name,description,active,{column}\nt-{stage},t,b,true,{kind_}\n"
        )
    (raw / "llm_models.csv").write_text(
        "id,model,provider,display_name,for_generation,for_evaluation,pool,price_per_mtok\n"
        "gen,bench/gen,openrouter,gen,true,false,paid,1\n"
        "judge-1,bench/judge-1,openrouter,judge-1,false,true,paid,1\n"
        "judge-2,bench/judge-2,openrouter,judge-2,false,true,paid,1\n"
    )
    _write_config(root / "config", harness.REPO / "config", {"paid": 10}, None)
    (root / "config" / "gates").mkdir(exist_ok=True)
    (root / "config" / "gates" / "found.yaml").write_text(
        f"criteria:\n  - {{template: t-evaluation, min: {GATE[kind]}, by: mean}}\nmin_judges: 2\n"
    )
    axes = {
        "concepts": CONCEPTS,
        "draft_templates": ["t-draft"],
        "essay_templates": ["t-essay"],
        "generation_models": ["gen"],
    }
    search = {
        **axes,
        **({"k_min": 1, "k_max": 3} if kind == "additive" else {"k": 3}),
        "screen": {"evaluation_templates": ["t-evaluation"], "evaluation_models": ["judge-1"]},
        "gate": "found",
        "evaluation_models": ["judge-1", "judge-2"],
        "replicates": {"draft": 3, "evaluation": 2},
        "budget": {"max_calls": 100_000},
        "strategy": "beam" if kind == "additive" else "halving",
        "seed": 1,
    }
    (root / "config" / "searches").mkdir()
    (root / "config" / "searches" / "s.yaml").write_text(yaml.safe_dump(search, sort_keys=False))
    cubes = {  # the finalists' cube at k = 3; beam's screens at k = 1 and 2 (1 draft, judged once by judge-1)
        "cube": {"k": 3, "replicates": {"draft": 3, "essay": 1, "evaluation": 2}, "models": ["judge-1", "judge-2"]},
        "screen-k1": {"k": 1, "replicates": {"draft": 1, "essay": 1, "evaluation": 1}, "models": ["judge-1"]},
        "screen-k2": {"k": 2, "replicates": {"draft": 1, "essay": 1, "evaluation": 1}, "models": ["judge-1"]},
    }
    for name, cube in cubes.items():
        if kind == "planted" and name != "cube":
            continue
        spec = {
            **axes,
            "k": cube["k"],
            "evaluation_templates": ["t-evaluation"],
            "evaluation_models": cube["models"],
            "replicates": cube["replicates"],
        }
        (root / "config" / "cohorts" / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def replays(root: Path, kind: str, world: int) -> dict:
    """(In the child, with the pipeline on its path.) Every strategy and seed replayed over the world's cubes."""
    import dataclasses

    from daydream_luigi.analysis import search as strategies
    from daydream_luigi.core.catalog import load_catalog
    from daydream_luigi.core.combos import make_combo
    from daydream_luigi.core.search_spec import Budget, load_search
    from daydream_luigi.core.settings import Paths, load_settings, pool_limits
    from daydream_luigi.report import search as record

    paths = Paths.from_env()
    settings = load_settings(paths)
    catalog = load_catalog(paths, pool_limits(paths), settings)
    base = load_search(paths, "s", catalog, settings, "http")
    cohorts = ["cube", "screen-k1", "screen-k2"] if kind == "additive" else ["cube"]
    kept = record.Replay(paths, base, catalog, settings, "http", cohorts)
    planted = make_combo(planted_of(world), base.level, 3).combo_id
    cube_calls = record.cube(dataclasses.replace(base, k_min=3), catalog, settings).calls
    out: dict = {"cube_calls": cube_calls, "runs": []}
    strategies_here = ("halving", "beam") if kind == "additive" else ("halving", "random", "exhaustive")
    for seed in STRATEGY_SEEDS:
        calls_of: dict = {}
        for strategy in strategies_here:
            budget = Budget(calls_of["halving"], None) if strategy == "random" else base.budget
            spec = dataclasses.replace(base, strategy=strategy, seed=seed, budget=budget)
            if strategy != "beam":
                spec = dataclasses.replace(spec, k_min=3)
            outcome = strategies.run_search(spec, kept.again(spec), record.empty_scores())
            first = next((row["total_calls"] for row in outcome.rows if row["passes"]), None)
            combos = set(outcome.scores[outcome.scores["parent_gen_id"].isin(outcome.passes)]["combo_id"])
            calls_of[strategy] = outcome.calls
            out["runs"].append(
                {
                    "seed": seed,
                    "strategy": strategy,
                    "calls": outcome.calls,
                    "first_pass_calls": first,
                    "found": planted in combos,
                    "false_passes": len(combos - {planted}),
                }
            )
    return out


def run_world(kind: str, world: int, log) -> dict:
    code = harness.after()
    root = harness.run_dir(f"search-{kind}-{world}")
    live_root = harness.run_dir(f"search-{kind}-{world}-live")
    for folder in (root, live_root):
        make_project(folder, kind)
    with PlantedJudge(kind, world) as judge:
        endpoint = type("Served", (), {"base_url": judge.base_url})()
        cohorts = ["cube", "screen-k1", "screen-k2"] if kind == "additive" else ["cube"]
        for cohort in cohorts:
            made = harness.daydream(code, root, endpoint, "run", "--cohort", cohort, "--quiet")
            log(f"search {kind} world {world}: cohort {cohort} made in {made.wall_s:.0f} s (load {harness.load()})")
        calls_before = len(judge.requests)
        env = harness.project_env(root, judge.base_url, code)
        child = subprocess.run(
            [sys.executable, __file__, "--replays", str(root), kind, str(world)],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
        )
        if child.returncode:
            sys.exit(f"search replays failed:\n{child.stderr[-3000:]}")
        result = json.loads(child.stdout.splitlines()[-1])
        result["replay_calls_at_server"] = len(judge.requests) - calls_before
        options = [option for cohort in cohorts for option in ("--replay", cohort)]
        replay = harness.daydream(code, root, endpoint, "search", "s", *options, "--quiet")
        live = harness.daydream(code, live_root, endpoint, "search", "s", "--quiet")
        folder = "replay-" + "+".join(cohorts)
        same = (root / "data" / "searches" / "s" / folder / "rounds.csv").read_text() == (
            live_root / "data" / "searches" / "s" / "rounds.csv"
        ).read_text()
        result["live_matches_replay"] = same
        log(f"  live search: {live.stdout.strip()}")
        log(f"  its replay:  {replay.stdout.strip()} (same rounds.csv: {same})")
    return result


def run_search_bench(log=print) -> tuple[list, dict]:
    from table import Row

    out = {kind: [run_world(kind, world, log) for world in WORLDS] for kind in ("planted", "additive")}
    runs = {kind: [r for world in out[kind] for r in world["runs"]] for kind in out}
    cube_calls = out["planted"][0]["cube_calls"]

    def of(kind: str, strategy: str) -> list:
        return [r for r in runs[kind] if r["strategy"] == strategy]

    def median_first(kind: str, strategy: str) -> float | None:
        firsts = [r["first_pass_calls"] for r in of(kind, strategy) if r["first_pass_calls"] is not None]
        return statistics.median(firsts) if firsts else None

    rows = []
    for strategy in ("halving", "random", "exhaustive"):
        found = sum(r["found"] for r in of("planted", strategy))
        median = median_first("planted", strategy)
        log(
            f"search planted {strategy}: found in {found} of 20 seeds; median calls to the first pass {median} "
            f"(cube {cube_calls}); false passes {sum(r['false_passes'] for r in of('planted', strategy))}"
        )
        rows.append(
            Row(
                f"search, planted: {strategy} seeds found (of 20)",
                "x",
                None,
                None,
                {"after": found},
                {"after": f"{found} of 20"},
            )
        )
        if median is not None:
            rows.append(
                Row(
                    f"search, planted: {strategy} median calls to first pass / cube",
                    "x",
                    None,
                    0.30 if strategy == "halving" else None,
                    {"after": median / cube_calls},
                )
            )
    halving_found = sum(r["found"] for r in of("planted", "halving"))
    rows.append(
        Row("search, planted: halving seeds NOT found (target <= 1)", "x", None, 1.0, {"after": 20 - halving_found})
    )
    beam, halving = median_first("additive", "beam"), median_first("additive", "halving")
    found = {strategy: sum(r["found"] for r in of("additive", strategy)) for strategy in ("beam", "halving")}
    log(
        f"search additive: median calls to the first pass: beam {beam}, halving {halving}; found: beam "
        f"{found['beam']}/20, halving {found['halving']}/20; false passes "
        f"{sum(r['false_passes'] for r in runs['additive'])}"
    )
    if beam is not None and halving is not None:
        rows.append(
            Row(
                "search, additive: beam / halving median calls to first pass", "x", None, 1.0, {"after": beam / halving}
            )
        )
    matches = all(world["live_matches_replay"] for kind in out for world in out[kind])
    zero = all(world["replay_calls_at_server"] == 0 for kind in out for world in out[kind])
    log(f"search: live searches match their replays: {matches}; replays called the server: {not zero}")
    return rows, out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--replays"]:
        print(json.dumps(replays(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))))
    else:
        sys.exit("usage: python bench/run_all.py --only search (this file's --replays is its replaying child)")
