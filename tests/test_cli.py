"""CLI behaviour: dry runs, one stage at a time, redoing generations with `gens rm`, and what `run` loads."""

import subprocess
import sys

from conftest import daydream


def test_dry_run_counts_and_writes_no_generation(project, endpoint):
    result = daydream("run", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "draft: 6 in cohort, 6 to run, 0 done",
        "essay: 12 in cohort, 12 to run, 0 done",
        "evaluation: 24 in cohort, 24 to run, 0 done",
    ]
    assert not (project / "data" / "gens").exists() and endpoint.stats["requests"] == 0


def test_one_stage_at_a_time(project, endpoint):
    drafts = daydream("run", "--stage", "draft")
    assert drafts.returncode == 0 and "done 6, skipped (already complete) 0" in drafts.stdout
    assert endpoint.stats["requests"] == 6 and not (project / "data" / "gens" / "essay").exists()
    essays = daydream("run", "--stage", "essay")
    assert essays.returncode == 0 and "done 12," in essays.stdout and endpoint.stats["requests"] == 12


def test_gens_rm_is_a_dry_run_unless_yes_and_takes_descendants(project, endpoint):
    assert daydream("run").returncode == 0
    draft = sorted((project / "data" / "gens" / "draft").iterdir())[0].name
    listed = daydream("gens", "rm", draft)
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[0] == f"would remove draft {draft}"
    assert (
        listed.stdout.splitlines()[-1] == "7 generation(s); add --yes to delete them"
    )  # draft, 2 essays, 4 evaluations
    assert (project / "data" / "gens" / "draft" / draft / "metadata.json").exists()
    removed = daydream("gens", "rm", draft, "--yes")
    assert removed.returncode == 0 and removed.stdout.splitlines()[-1] == "removed 7 generation(s)"
    before = endpoint.stats["requests"]
    again = daydream("run")
    assert again.returncode == 0 and "done 7, skipped (already complete) 35" in again.stdout
    assert endpoint.stats["requests"] - before == 1 + 1 + 4  # the draft, its llm essay, 4 evaluations


def test_the_run_command_loads_neither_scipy_nor_the_report():
    """`daydream run` starts without the statistics and report modules it never uses (`plan --search` loads them)."""
    code = (
        "import sys; from daydream_luigi.cli.main import main; main.get_command(None, 'run'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy' or m.startswith('daydream_luigi.report')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (loaded.returncode, loaded.stdout) == (0, "[]\n"), loaded.stderr
