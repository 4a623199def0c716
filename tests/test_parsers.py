"""Unit tests for the draft and score parsers, on small hand-written judge/draft texts."""

import shutil

import pytest
from click.testing import CliRunner
from conftest import REPO, write_raw

from daydream_luigi.cli import main as cli_main
from daydream_luigi.core.catalog import load_catalog
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.parsers import (
    DRAFT_PARSERS,
    PAIRWISE_PARSERS,
    SCORE_PARSERS,
    ParseError,
    parse_draft,
    parse_pairwise,
    parse_score,
)
from daydream_luigi.core.settings import Paths


def test_registries_expose_the_template_names():
    assert set(DRAFT_PARSERS) == {"essay_idea_last", "essay_block"}
    assert set(SCORE_PARSERS) == {"in_last_line", "complex", "yes_no"}


# ---------------------------------------------------------------- essay_idea_last


def test_essay_idea_last_takes_highest_stage_regardless_of_order():
    text = (
        '<essay-idea stage="2">second pass</essay-idea>\n'
        '<essay-idea stage="3">\n  third pass  \n</essay-idea>\n'
        '<essay-idea stage="1">first pass</essay-idea>\n'
    )
    assert parse_draft("essay_idea_last", text) == "third pass"


def test_essay_idea_last_tie_goes_to_the_last_block():
    text = (
        "<essay-idea stage='2'>early two</essay-idea>"
        '<essay-idea id="b" stage="2" lang="en">late two</essay-idea>'
        '<essay-idea stage="1">one</essay-idea>'
    )
    assert parse_draft("essay_idea_last", text) == "late two"


def test_essay_idea_last_numeric_not_lexical_stage_order():
    text = '<essay-idea stage="10">ten</essay-idea><essay-idea stage="9">nine</essay-idea>'
    assert parse_draft("essay_idea_last", text) == "ten"


def test_essay_idea_without_stage_ranks_lowest():
    text = '<essay-idea stage="1">staged</essay-idea><essay-idea>unstaged</essay-idea>'
    assert parse_draft("essay_idea_last", text) == "staged"


def test_essay_idea_without_any_stage_takes_last_block():
    text = "<essay-idea>alpha</essay-idea> notes <essay-idea>omega</essay-idea> trailing"
    assert parse_draft("essay_idea_last", text) == "omega"


def test_essay_idea_missing_block():
    with pytest.raises(ParseError) as err:
        parse_draft("essay_idea_last", "just prose, no tags")
    assert str(err.value) == "no <essay-idea> block found"


def test_essay_idea_empty_block():
    with pytest.raises(ParseError) as err:
        parse_draft("essay_idea_last", '<essay-idea stage="1">  \n </essay-idea>')
    assert str(err.value) == "<essay-idea> block is empty"


# ---------------------------------------------------------------- essay_block


def test_essay_block_takes_first_block_stripped():
    text = "<thinking>plan</thinking>\n<essay>\n# Title\n\nBody.\n</essay>\n<essay>second</essay>"
    assert parse_draft("essay_block", text) == "# Title\n\nBody."


def test_essay_block_is_not_confused_by_essay_idea_tags():
    text = '<essay-idea stage="1">idea</essay-idea>\n<essay>the essay</essay>'
    assert parse_draft("essay_block", text) == "the essay"


def test_essay_block_unclosed_keeps_the_rest():
    text = "preamble\n<essay>\nTruncated essay that ran out of tok"
    assert parse_draft("essay_block", text) == "Truncated essay that ran out of tok"


def test_essay_block_missing():
    with pytest.raises(ParseError) as err:
        parse_draft("essay_block", "no essay here")
    assert str(err.value) == "no <essay> block found"


def test_essay_block_empty():
    with pytest.raises(ParseError) as err:
        parse_draft("essay_block", "<essay>\n\n</essay>")
    assert str(err.value) == "<essay> block is empty"


# ---------------------------------------------------------------- draft registry


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_draft_parser_returns_text_unchanged(blank):
    text = "  raw draft\n\n"
    assert parse_draft(blank, text) == "  raw draft\n\n"


def test_unknown_draft_parser_names_known_ones():
    with pytest.raises(ParseError) as err:
        parse_draft("essay_first", "<essay>x</essay>")
    assert str(err.value) == ("unknown draft parser 'essay_first'; known: essay_block, essay_idea_last")


def test_unknown_score_parser_names_known_ones():
    with pytest.raises(ParseError) as err:
        parse_score("last_line", "SCORE: 7")
    assert str(err.value) == "unknown score parser 'last_line'; known: complex, in_last_line, yes_no"


def test_parse_error_is_a_value_error():
    assert issubclass(ParseError, ValueError)


# ---------------------------------------------------------------- in_last_line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Reasoning here.\nSCORE: 7", 7.0),
        ("Reasoning here.\n7/10\n\n  ", 7.0),
        ("Reasoning.\nScore: 6.5", 6.5),
        ("Reasoning.\n**SCORE:** 8 / 10", 8.0),
        ("Reasoning.\n## Final score: **9/10**", 9.0),
        ("Reasoning.\n**5**", 5.0),
        ("Reasoning.\nI would give it 4 out of 10.", 4.0),
        ("SCORE: 2/10\nchanged my mind\nSCORE: 10/10", 10.0),
    ],
)
def test_in_last_line_reads_the_last_line(text, expected):
    assert parse_score("in_last_line", text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "SCORE: 7/10\nThanks for reading.",
        "SCORE: 7/10\n- Connections: 2/5",
        "",
    ],
)
def test_in_last_line_ignores_everything_but_the_last_line(text):
    with pytest.raises(ParseError) as err:
        parse_score("in_last_line", text)
    assert str(err.value) == "no score found in the last non-empty line"


def test_in_last_line_out_of_range():
    with pytest.raises(ParseError) as err:
        parse_score("in_last_line", "Reasoning.\nSCORE: 12/10")
    assert str(err.value) == "score 12 is outside 0..10"


# ---------------------------------------------------------------- complex

BOLD_LABEL = """\
Assessment of the piece.
- Novelty (2/2 pts): strong.
**SCORE:** 7/10
The framing was clear.
"""

HEADING_THEN_BOLD = """\
1. **Novelty (1/2)**: partly new.
### **Final Score**
**3/10**
- **Core Concepts:** 2/5 (only one mechanism)
- **Connections:** 1/5
Closing remarks without numbers.
"""

TOTAL_DECIMAL = """\
- **Ideas Total: 3.5/5**
- **Links Total: 3/5**
- **Total Score: 6.5/10**
"""

REPEATED = """\
**SCORE:** 7/10
**Reasoning continued:** the piece is solid, resulting in a score of **7/10**.
"""

REVISED = """\
Total score: 4 (ideas) + 3 (links) = 7? Let me reconsider.
Final Score: **3/10**
"""

SUBSCORES_AFTER_FINAL = """\
### SCORE: 4/10
**Breakdown:**
- **Ideas:** 3/5 (1 pt for framing, 2 pts for mechanism).
- **Links Score: 1/5**
- Narrative: 1/2 pts
- Economics Score: 1 pt
(2/5 for Ideas + 2/5 for Links)
"""

THINK_THEN_ANSWER = """\
<think>Maybe the score is 9/10. Or lower.</think>
The answer misses the key terms.
### **SCORE:**
**Total Score: 5/10**
Summary follows.
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(BOLD_LABEL, 7.0, id="bold-label"),
        pytest.param(HEADING_THEN_BOLD, 3.0, id="heading-then-bold-fraction"),
        pytest.param(TOTAL_DECIMAL, 6.5, id="total-score-decimal"),
        pytest.param(REPEATED, 7.0, id="repeated-statement"),
        pytest.param(REVISED, 3.0, id="revised-intermediate-total"),
        pytest.param(SUBSCORES_AFTER_FINAL, 4.0, id="subscores-after-final"),
        pytest.param(THINK_THEN_ANSWER, 5.0, id="think-then-answer"),
        pytest.param("Analysis.\nSCORE: 7 / 10\nMore prose.", 7.0, id="spaced-fraction"),
        pytest.param("Analysis.\nFinal Score: **3/10**", 3.0, id="bold-value"),
        pytest.param("Analysis.\nSCORE: 7\nmore", 7.0, id="bare-integer"),
        pytest.param("Analysis.\nScore: 8.5\n", 8.5, id="bare-decimal"),
        pytest.param("Analysis.\nFinal score: 8", 8.0, id="final-score-colon"),
        pytest.param("Analysis.\nTherefore, the final score is 9.", 9.0, id="final-score-is"),
        pytest.param("Overall score = 6 in the end.", 6.0, id="overall-score-equals"),
        pytest.param("It earns a solid **8/10 score** overall.", 8.0, id="fraction-before-keyword"),
        pytest.param("SCORE: 0/10", 0.0, id="zero"),
        pytest.param("SCORE: 10/10", 10.0, id="ten"),
        pytest.param("Ideas: 2/5\nI would rate this 6/10 overall.\nLinks: 3/5", 6.0, id="fallback-fraction"),
        pytest.param("SCORE: 2/10\nOn reflection I rate it 8/10.", 2.0, id="statement-beats-fraction"),
    ],
)
def test_complex_finds_the_final_score(text, expected):
    assert parse_score("complex", text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("A thoughtful essay with no verdict.", id="prose"),
        pytest.param("- Ideas: 4/5\n- Links Score: 3/5\n- Narrative: 2 pts", id="only-subscores"),
        pytest.param("### Final Score\nSee above.", id="heading-without-value"),
        pytest.param("", id="empty"),
    ],
)
def test_complex_without_score(text):
    with pytest.raises(ParseError) as err:
        parse_score("complex", text)
    assert str(err.value) == "no score found in judge response"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SCORE: 11", "score 11 is outside 0..10"),
        ("Final Score: 10.5/10", "score 10.5 is outside 0..10"),
        ("Verdict: 12/10", "score 12 is outside 0..10"),
    ],
)
def test_complex_out_of_range(text, message):
    with pytest.raises(ParseError) as err:
        parse_score("complex", text)
    assert str(err.value) == message


def test_essay_idea_last_reads_unclosed_blocks_up_to_the_next_block():
    text = 'Brainstorm\n<essay-idea stage="1">\nfirst idea\n<essay-idea stage="2">\nsecond idea\nmore of it\n'
    assert parse_draft("essay_idea_last", text) == "second idea\nmore of it"
    mixed = '<essay-idea stage="3">\nbest\n</essay-idea>\n<essay-idea stage="2">\nworse'
    assert parse_draft("essay_idea_last", mixed) == "best"


def test_parse_score_cli_reports_a_missing_score_and_exits_1(tmp_path):
    answer = tmp_path / "answer.txt"
    answer.write_text("A thoughtful essay, but I will not grade it.\n")
    result = CliRunner().invoke(cli_main, ["parse", "score", "--parser", "in_last_line", str(answer)])
    assert result.exit_code == 1
    assert result.stderr == f"error: {answer}: no score found in the last non-empty line\n"


def test_essay_idea_last_accepts_headings_written_in_place_of_tags():
    text = (
        '### Brainstorm\n- a\n\n### Essay-idea stage="1":\n\nrough\n\n**Essay-idea stage="2":**\n\nsharper idea\n'
        "with detail\n"
    )
    assert parse_draft("essay_idea_last", text) == "sharper idea\nwith detail"
    assert (
        parse_draft(
            "essay_idea_last",
            'An essay-idea stage is mentioned inline, not as a heading.\n<essay-idea stage="1">tagged</essay-idea>',
        )
        == "tagged"
    )


# ---------------------------------------------------------------- complex: the final verdict (issue 12)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the examples: sub-scores before the verdict never win
        pytest.param("Novelty 3/10, clarity 9/10.\nOverall: 6", 6.0, id="issue-overall-after-subscores"),
        pytest.param("Clarity: 9/10\nLogic: 2/10\nFinal verdict: 4", 4.0, id="issue-final-verdict"),
        pytest.param("The essay rates 9/10 on clarity but overall I give it a 5.", 5.0, id="issue-first-person"),
        # the result of a stated sum
        pytest.param("**Final score:** 3 (Core) + 2 (Connections) = 5/10", 5.0, id="labelled-sum-with-labels"),
        pytest.param("Breakdown done.\n3 (Core) + 2 (Connections) = 5/10", 5.0, id="bare-sum-of-ten"),
        pytest.param("Total: 4 + 2.5 = 6.5", 6.5, id="sum-decimal-result"),
        pytest.param("Thus total score is 3 +1 = 4.\nNothing else.", 4.0, id="sum-in-prose"),
        pytest.param("Total connections: 1+1+0+2=4.\nTotal score: 4+4=8.", 8.0, id="subtotal-sum-then-total"),
        # fractions on another scale, read on their scale and mapped onto 0..10
        pytest.param("Overall: 4/5", 8.0, id="fifths"),
        pytest.param("Final score: 72/100", 7.2, id="hundredths"),
        pytest.param("Overall rating: 3 out of 5", 6.0, id="out-of-five"),
        pytest.param("Final score: 6/10\nOverall: 4/5", 6.0, id="template-scale-beats-other-scale"),
        # sub-scores on their own scale before or after the verdict
        pytest.param("Rubric: mechanism 4/5, novelty 2/5.\nFinal score: 6/10", 6.0, id="fifths-before"),
        pytest.param("SCORE: 6/10\n- Novelty score: 4/5\n- Clarity: 5/5", 6.0, id="qualified-after"),
        pytest.param("Total for ideas: 3/5\nTotal for links: 2/5\nTotal: 5/10", 5.0, id="totals-for-parts"),
        pytest.param(
            "SCORE: 6/10\n\n1. Mechanism\n   - Score: 2\n2. Narrative\n   - Score: 1",
            6.0,
            id="criterion-points-in-list-after",
        ),
        pytest.param("Clarity score: 9/10. Novelty score: 2/10. I rate it 4/10.", 4.0, id="qualified-then-mine"),
        # restated and revised verdicts: the last statement counts
        pytest.param("Score: 7/10\nThe mechanism is concrete.\nIn sum, the score is 7.", 7.0, id="restated"),
        pytest.param("Score: 5\nOn second thought the final score is 6.", 6.0, id="revised"),
        # alternatives and trailing notes never count
        pytest.param(
            "Overall: 5/10. A stricter reading would give the essay a score of 4/10.", 5.0, id="stricter-alternative"
        ),
        pytest.param("SCORE: 6 (a more lenient grader might say 7)", 6.0, id="lenient-alternative-in-parens"),
        pytest.param("SCORE: 6\nIf the link were explicit, the score is 8.", 6.0, id="conditional-alternative"),
        pytest.param("Final score: 6.5/10, rounded to a score of 7.", 6.5, id="rounded-alternative"),
        pytest.param(
            "Final score: 7/10\n\nNote: a total score of 8 was within reach with a sharper ending.",
            7.0,
            id="trailing-note",
        ),
        pytest.param("<think>The score is 9/10.</think>\nOverall I give it a 6.", 6.0, id="thinking-ignored"),
        # markdown and phrasing
        pytest.param("## **Verdict**\n\n**7.5**", 7.5, id="heading-then-bold-value"),
        pytest.param(
            "| Criterion | Score |\n|---|---|\n| Novelty | 3/5 |\n| **Total** | **7/10** |", 7.0, id="markdown-table"
        ),
        pytest.param("`SCORE: 8`", 8.0, id="code-span"),
        pytest.param("Final verdict \u2014 3/10", 3.0, id="em-dash"),
        pytest.param("Score (0-10): 7", 7.0, id="label-with-scale-note"),
        pytest.param("I'd give this essay a 6 overall.", 6.0, id="first-person-contracted"),
        pytest.param("The essay deserves a 7/10.", 7.0, id="bare-fraction"),
        pytest.param("Score: 7/10", 7.0, id="fraction-of-ten"),
        pytest.param("Score: 7.5", 7.5, id="decimal"),
        pytest.param("Score: 7.5/10", 7.5, id="decimal-fraction"),
        pytest.param("7.5", 7.5, id="bare-number-answer"),
    ],
)
def test_complex_takes_the_final_verdict(text, expected):
    assert parse_score("complex", text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Overall: 6/5", "score 6/5 is outside 0..5"),
        ("Total score: 4 (ideas) + 3 (links)\nNo verdict.", "no score found in judge response"),
        ("- Mechanism: Score: 1/2\n- Links: 2/2", "no score found in judge response"),
        ("A stricter reading would give it 4/10.", "no score found in judge response"),
    ],
)
def test_complex_rejects_what_is_not_a_verdict(text, message):
    with pytest.raises(ParseError) as err:
        parse_score("complex", text)
    assert str(err.value) == message


# ---------------------------------------------------------------- pairwise: winner


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Essay A has the concrete mechanism.\nWINNER: A", "A"),
        ("Reasoning.\n\nwinner: b\n\n", "B"),
        ("Both are thin.\n**WINNER:** TIE", "TIE"),
        ("### Winner: **A**.", "A"),
        ("`WINNER: B`", "B"),
        ("Winner:Tie", "TIE"),
    ],
)
def test_winner_reads_the_last_line(text, expected):
    assert parse_pairwise("winner", text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the answer is empty; expected a last line 'WINNER: A', 'WINNER: B' or 'WINNER: TIE'"),
        (
            "WINNER: A\nThanks for reading.",
            "the answer does not end with a verdict ('Thanks for reading.'); "
            "expected a last line 'WINNER: A', 'WINNER: B' or 'WINNER: TIE'",
        ),
        (
            "I prefer essay A. " * 5,
            "the answer does not end with a verdict "
            "('I prefer essay A. I prefer essay A. I prefer essay A. I pre\u2026'); expected a last line 'WINNER: A', 'WINNER: B' or 'WINNER: TIE'",
        ),
        ("WINNER: C", "unknown winner 'C'; expected A, B or TIE"),
        ("WINNER: A or B", "unknown winner 'A or B'; expected A, B or TIE"),
        ("WINNER:", "unknown winner ''; expected A, B or TIE"),
    ],
)
def test_winner_rejects_anything_else(text, message):
    with pytest.raises(ParseError) as err:
        parse_pairwise("winner", text)
    assert str(err.value) == message


def test_pairwise_registry_is_separate_from_score_parsers():
    assert set(PAIRWISE_PARSERS) == {"winner"}
    assert not set(PAIRWISE_PARSERS) & set(SCORE_PARSERS)
    with pytest.raises(ParseError) as err:
        parse_score("winner", "WINNER: A")
    assert str(err.value) == "unknown score parser 'winner'; known: complex, in_last_line, yes_no"
    with pytest.raises(ParseError) as err:
        parse_pairwise("complex", "SCORE: 7")
    assert str(err.value) == "unknown pairwise parser 'complex'; known: winner"


def test_catalog_rejects_a_pairwise_parser_on_an_evaluation_template(tmp_path):
    raw = tmp_path / "data" / "1_raw"
    write_raw(raw)
    shutil.copytree(REPO / "config", tmp_path / "config")
    catalog = raw / "evaluation_templates.csv"
    catalog.write_text(catalog.read_text().replace(",complex\n", ",winner\n"))
    with pytest.raises(InputError) as err:
        load_catalog(Paths(tmp_path / "data", tmp_path / "config"), {"paid": 1, "free": 1, "local": 1})
    assert str(err.value) == (
        f"{catalog}: line 3: unknown parser 'winner' for template 'judge-b'; use one of: complex, in_last_line, yes_no"
    )
