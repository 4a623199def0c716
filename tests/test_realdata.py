"""Regression over real judge answers and a real draft kept in the shared folder.

The data lives outside the repo (``../shared/realdata`` or ``$DAYDREAM_SHARED_DIR/realdata``);
without it these tests are skipped rather than failing.
"""

import csv
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from daydream_luigi.cli import main
from daydream_luigi.core.parsers import parse_draft, parse_score

SHARED = os.environ.get("DAYDREAM_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared")
REALDATA = Path(SHARED) / "realdata"
SCORES_CSV = REALDATA / "evaluation_scores.csv"
DRAFT = REALDATA / "draft_responses" / "vtt9vuxeila0t9rp.txt"
EXPECTED_ESSAY = REALDATA / "draft_responses" / "vtt9vuxeila0t9rp.expected_essay_block.txt"

pytestmark = pytest.mark.skipif(
    not REALDATA.is_dir(),
    reason=f"shared realdata folder not found at {REALDATA} (set DAYDREAM_SHARED_DIR)",
)


def _score_cases():
    """One (file, accepted scores) case per CSV row; none when the data is absent."""
    if not SCORES_CSV.is_file():
        return []
    with SCORES_CSV.open(newline="", encoding="utf-8") as handle:
        return [
            pytest.param(row["file"], {float(v) for v in row["accepted_scores"].split(";")}, id=row["file"])
            for row in csv.DictReader(handle)
        ]


SCORE_CASES = _score_cases()


def test_score_table_is_populated():
    assert len(SCORE_CASES) >= 40


@pytest.mark.parametrize(("name", "accepted"), SCORE_CASES)
def test_complex_parser_matches_accepted_score(name, accepted):
    text = (REALDATA / name).read_text(encoding="utf-8")
    assert parse_score("complex", text) in accepted


@pytest.mark.parametrize(("name", "accepted"), SCORE_CASES)
def test_parse_score_cli_prints_the_accepted_score(name, accepted):
    result = CliRunner().invoke(main, ["parse", "score", "--parser", "complex", str(REALDATA / name)])
    assert result.exit_code == 0 and float(result.stdout) in accepted


def test_essay_block_matches_expected_extract():
    """The parser strips the block's surrounding whitespace; the expected file has none."""
    text = DRAFT.read_text(encoding="utf-8")
    expected = EXPECTED_ESSAY.read_text(encoding="utf-8")
    assert parse_draft("essay_block", text) == expected
