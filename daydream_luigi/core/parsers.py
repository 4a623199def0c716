"""Turn raw LLM output into what the pipeline stores: a draft text, a judge score or a pairwise winner.

Generation templates name a parser; the pipeline looks it up here by name, so
all kinds live in one module, one registry per kind, and fail with one error type
(:class:`ParseError`, a one-line reason) that callers can record per row.

Whitespace: every draft parser returns its block's inner text with leading and
trailing whitespace stripped; the blank parser name returns the text unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

SCORE_MIN, SCORE_MAX = 0.0, 10.0
_Parser = TypeVar("_Parser", bound=Callable)


class ParseError(ValueError):
    """Raised with a one-line human reason when a text cannot be parsed."""


# --------------------------------------------------------------------------- drafts

# A block opens with the tag, or (small models often write it as a heading) with a line such as
# `### Essay-idea stage="2":`; it ends at its closing tag, the next block, or the end of the text.
_IDEA_OPEN = re.compile(r"<essay-idea\b([^>]*)>|^[#*\s]*essay-idea\b([^\n<>]*?)[\s:*]*$", re.I | re.M)
_IDEA_CLOSE = re.compile(r"</essay-idea\s*>", re.I)
_STAGE_ATTR = re.compile(r"""\bstage\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.I)
_ESSAY_OPEN = re.compile(r"<essay(?:\s[^>]*)?>", re.I)
_ESSAY_CLOSE = re.compile(r"</essay\s*>", re.I)


def _stage(attrs: str) -> float:
    """Numeric stage of an <essay-idea> tag; missing or non-numeric ranks lowest."""
    match = _STAGE_ATTR.search(attrs)
    if match is None:
        return -math.inf
    value = next(group for group in match.groups() if group is not None)
    try:
        return float(value)
    except ValueError:
        return -math.inf


def parse_essay_idea_last(text: str) -> str:
    """Inner text of the most developed idea: highest stage, the later one on ties.

    Drafting templates make the model refine an idea in numbered stages; only
    the final stage is the draft. Without any stage the last block is final.
    An unclosed block runs to the next block or the end of the text; a heading line
    `Essay-idea stage="N"` counts as an opening tag.
    """
    opens = list(_IDEA_OPEN.finditer(text))
    blocks = []
    for i, match in enumerate(opens):
        end = opens[i + 1].start() if i + 1 < len(opens) else len(text)
        closed = _IDEA_CLOSE.search(text, match.end(), end)
        body = text[match.end() : closed.start() if closed else end]
        blocks.append((_stage(match.group(1) or match.group(2) or ""), i, body))
    if not blocks:
        raise ParseError("no <essay-idea> block found")
    inner = max(blocks)[2].strip()
    if not inner:
        raise ParseError("<essay-idea> block is empty")
    return inner


def parse_essay_block(text: str) -> str:
    """Inner text of the first <essay> block, or everything after an unclosed tag.

    An unclosed tag usually means the generation hit its token limit; the
    truncated essay is still worth keeping.
    """
    opened = _ESSAY_OPEN.search(text)
    if opened is None:
        raise ParseError("no <essay> block found")
    rest = text[opened.end() :]
    closed = _ESSAY_CLOSE.search(rest)
    inner = (rest[: closed.start()] if closed else rest).strip()
    if not inner:
        raise ParseError("<essay> block is empty")
    return inner


# --------------------------------------------------------------------------- scores
#
# A judge answer is read as a list of verdict candidates, each with a tier:
#   1. a statement: a verdict label ("SCORE", "Final score", "Overall", "Total", "Final verdict", "Rating") followed
#      by its value or by a sum and its result; a label line ("### Final Score") with the value on the next line;
#      "a 7/10 score"; "6 as the final score";
#   2. the judge's own rating in the first person: "I give it a 5", "I'd rate this essay 6/10";
#   3. a bare fraction of ten anywhere ("... deserves 7/10"), or a bare value alone on the last line.
# The verdict is the last candidate of the best tier present. Within a tier, values on the template's scale (no
# denominator, or /10) win over values on another scale, which are read on their scale and mapped linearly onto
# 0..10 (4/5 -> 8, 72/100 -> 7.2); a denominator below 5, or a unit ("2 pts"), marks a rubric part, never a verdict.
# Not candidates: labels qualified by another word ("Clarity score: 9/10", "Total for links: 3/5"), a bare "Score: 2"
# in a list item (a criterion's points), values in a sentence that announces an alternative before them ("a stricter
# reading would give 4", "if ..., the score is 8", "rounded, a score of 7"), lines that are notes ("Note: ..."), and
# reasoning inside <think>...</think> when the answer after it states a score.

_NUMBER = r"\d+(?:\.\d+)?(?!\.?\d)"
_PER = r"\s*(?:/|\bout\s+of\b)\s*"
# A value with optional denominator and unit: "7", "6.5/10", "3 out of 10", "1/2 pts".
_VALUE = rf"(?P<num>{_NUMBER})(?:{_PER}(?P<den>{_NUMBER}))?(?P<unit>\s*(?:pts?|points?)\b)?"
# One term of a stated sum, with an optional label: "3", "2.5/5", "3 (Core)".
_ADDEND = rf"{_NUMBER}(?:\s*/\s*{_NUMBER})?(?:\s*\([^()\n]*\))?"
_SUM = rf"{_ADDEND}(?:\s*\+\s*{_ADDEND})+\s*=\s*"
# A value that is only the first term of a sum ("4 (ideas) + 3") is not a result.
_NOT_A_TERM = r"(?!\s*(?:\([^()\n]*\)\s*)?\+)"
_STRONG = r"(?:final|overall|total)"
_LABEL = rf"(?P<label>(?:{_STRONG}\s+)*(?:score|rating|verdict|grade)|{_STRONG}(?:\s+{_STRONG})*)"
# A label that can only mean the whole essay's verdict (a plain "Score" may be a criterion's).
_VERDICT_LABEL = re.compile(rf"{_STRONG}|verdict", re.I)
_SEPARATOR = rf"(?:\s*(?:[:=|\-\u2013\u2014\u2192]|\bis\b|\bof\b)\s*|\s+(?={_NUMBER}{_PER}))"
_FILLER = r"(?:(?:a|an|likely|therefore|thus|then|clearly|just|exactly|about|around|roughly|solid|firm|fair)\s+)*"
# "SCORE: 7", "Final verdict: 4", "Total score: 4 (ideas) + 3 (links) = 7/10", "Overall score (0-10) = 6".
_LABELLED = re.compile(
    rf"(?<![\w']){_LABEL}(?:\s*\([^()\n]{{0,40}}\))?{_SEPARATOR}{_FILLER}(?:{_SUM})?{_VALUE}{_NOT_A_TERM}", re.I
)
# "a 7/10 score", "an 8/10 overall score"; "6 as the final score".
_FRACTION_BEFORE_LABEL = re.compile(rf"(?<![\d.])(?P<num>{_NUMBER})\s*/\s*(?P<den>10)\s+(?:{_STRONG}\s+)?score\b", re.I)
_VALUE_AS_LABEL = re.compile(rf"(?<![\d.]){_VALUE}\s+as\s+(?:the|my)\s+(?:{_STRONG}\s+)?score\b", re.I)
# "I give it a 5", "we'd rate this essay 6/10", "I would score it at 7".
_FIRST_PERSON = re.compile(
    rf"\b(?:I|we)(?:'d|'ll|\s+would|\s+will)?\s+(?:\w+ly\s+)?(?:give|rate|score|assign|award|grade)s?\s+"
    rf"(?:it|this(?:\s+(?:essay|piece|text|response|answer|one))?|the\s+(?:essay|piece|text|response|answer))\s+"
    rf"(?:(?:a|an|at)\s+)?{_FILLER}{_VALUE}{_NOT_A_TERM}",
    re.I,
)
_FRACTION_OF_TEN = re.compile(rf"(?<![\d.])(?P<num>{_NUMBER}){_PER}(?P<den>10)(?!\.?\d)", re.I)
# A label alone on its line ("### Final Score", "SCORE:"); the value follows on the next line.
_LABEL_LINE = re.compile(rf"^{_LABEL}\s*:?$", re.I)
# A line holding nothing but a value or a sum and its result: "3/10", "**7**", "4 + 3 = 7/10".
_BARE_LINE = re.compile(rf"^(?:{_SUM})?{_VALUE}\s*[.!]?$", re.I)
# Words that may stand right before a label without making it some part's score ("the final score", "a score").
_FREE_WORDS = frozenset(
    "a an the my our its this that with of in as is and so thus therefore hence then gives giving gets earns "
    "deserves receives yields assign assigns fair solid final overall total essay's text's piece's response's "
    "answer's submission's".split()
)
# Words that, before a value in its sentence, turn it into an alternative rather than the verdict.
_ALTERNATIVE = re.compile(
    r"\b(?:if|unless|otherwise|alternatively|alternative|stricter|harsher|lenient|leniently|generous|generously|"
    r"could|might|maybe|perhaps|round|rounds|rounded|rounding)\b",
    re.I,
)
_SENTENCE_BREAK = re.compile(r"[.!?;](?=\s|$)|[()]")
_NOTE = re.compile(r"^(?:note|notes|n\.b\.|nb|p\.s\.|ps|caveat|aside)\b", re.I)
_LIST_ITEM = re.compile(r"^\s*(?:[-+\u2022]|\*(?=\s)|\d+[.)])\s+")
_THINK = re.compile(r"<think>.*?</think>", re.I | re.S)
# Markdown emphasis/heading/code marks around a score carry no meaning.
_MARKUP = re.compile(r"[*#`]+|__")
# Below this denominator a fraction is a rubric part ("1/2", "2/2"), not a score of the whole essay.
MIN_SCALE = 5
STATEMENT, FIRST_PERSON, BARE = 1, 2, 3


@dataclass(frozen=True)
class _Line:
    text: str  # markup removed, whitespace trimmed
    listed: bool  # a list item ("- ...", "1. ...")
    note: bool  # "Note: ...", "P.S. ..."


@dataclass(frozen=True, order=True)
class _Candidate:
    tier: int
    position: tuple[int, int]  # (line, column): later is more final
    num: float
    den: float | None  # None: no denominator, read on the template's scale

    @property
    def native(self) -> bool:
        return self.den is None or self.den == SCORE_MAX


def _lines(text: str) -> list[_Line]:
    """Non-empty lines without markup."""
    lines = []
    for raw in text.replace("\u2019", "'").splitlines():
        clean = _MARKUP.sub("", raw).strip()
        if clean:
            lines.append(_Line(clean, bool(_LIST_ITEM.match(raw)), bool(_NOTE.match(clean))))
    return lines


def _qualified(line: str, start: int) -> bool:
    """True when the word right before a label names a part ("Clarity score", "Links Total")."""
    word = re.search(r"([A-Za-z][\w']*)\s*$", line[:start])
    return word is not None and word.group(1).lower() not in _FREE_WORDS


def _alternative(line: str, start: int) -> bool:
    """True when the sentence holding `start` announces an alternative before it."""
    breaks = [m.end() for m in _SENTENCE_BREAK.finditer(line, 0, start)]
    return _ALTERNATIVE.search(line, breaks[-1] if breaks else 0, start) is not None


def _candidate(match: re.Match[str], tier: int, row: int) -> _Candidate | None:
    """The value a match holds, or None when it is a rubric part (a unit, or a scale below MIN_SCALE)."""
    found = match.groupdict()
    den = float(found["den"]) if found.get("den") else None
    if found.get("unit") or (den is not None and den < MIN_SCALE):
        return None
    return _Candidate(tier, (row, match.start()), float(found["num"]), den)


def _line_candidates(line: _Line, row: int, last: bool) -> list[_Candidate]:
    if line.note:
        return []
    text = line.text
    found = []
    for match in _LABELLED.finditer(text):
        criterion = line.listed and not match["den"] and not _VERDICT_LABEL.search(match["label"])
        if criterion or _qualified(text, match.start()):
            continue
        found.append(_candidate(match, STATEMENT, row))
    for pattern in (_FRACTION_BEFORE_LABEL, _VALUE_AS_LABEL):
        found += [_candidate(match, STATEMENT, row) for match in pattern.finditer(text)]
    found += [_candidate(match, FIRST_PERSON, row) for match in _FIRST_PERSON.finditer(text)]
    found += [_candidate(match, BARE, row) for match in _FRACTION_OF_TEN.finditer(text)]
    if last and (bare := _BARE_LINE.match(text)):
        found.append(_candidate(bare, BARE, row))
    return [c for c in found if c is not None and not _alternative(text, c.position[1])]


def _candidates(lines: list[_Line]) -> list[_Candidate]:
    found: list[_Candidate | None] = []
    for row, line in enumerate(lines):
        found += _line_candidates(line, row, last=row == len(lines) - 1)
        heading = row > 0 and _LABEL_LINE.match(lines[row - 1].text)
        if heading and not line.note and (bare := _BARE_LINE.match(line.text)):
            found.append(_candidate(bare, STATEMENT, row))
    return [c for c in found if c is not None]


def _verdict(candidates: list[_Candidate]) -> _Candidate | None:
    """The last candidate of the best tier, preferring values on the template's scale."""
    if not candidates:
        return None
    tier = min(c.tier for c in candidates)
    in_tier = [c for c in candidates if c.tier == tier]
    return max([c for c in in_tier if c.native] or in_tier)


def _checked(verdict: _Candidate | None, where: str) -> float:
    """The verdict on the template's 0..10 scale."""
    if verdict is None:
        raise ParseError(f"no score found {where}")
    den = verdict.den
    if den is None or den == SCORE_MAX:  # native: on the template's scale
        if not SCORE_MIN <= verdict.num <= SCORE_MAX:
            raise ParseError(f"score {verdict.num:g} is outside {SCORE_MIN:g}..{SCORE_MAX:g}")
        return verdict.num
    if verdict.num > den:
        raise ParseError(f"score {verdict.num:g}/{den:g} is outside 0..{den:g}")
    return verdict.num * SCORE_MAX / den


def parse_score_in_last_line(text: str) -> float:
    """Score stated on the last non-empty line, for templates that demand it there."""
    lines = _lines(text)
    found = _line_candidates(lines[-1], 0, last=True) if lines else []
    return _checked(_verdict(found), "in the last non-empty line")


def parse_score_complex(text: str) -> float:
    """The judge's final verdict in a free-form answer (reasoning, rubric tables, sums, recap, notes).

    See the rules above: the last statement of the best tier, sub-scores, alternatives and notes left out.
    """
    answer = _candidates(_lines(_THINK.sub("\n", text)))
    return _checked(_verdict(answer or _candidates(_lines(text))), "in judge response")


# --------------------------------------------------------------------------- verdict lines


def _shortened(line: str) -> str:
    """A last line as an error message quotes it: at most 60 characters."""
    return line if len(line) <= 60 else line[:59] + "\u2026"


_VERDICT_LINE = re.compile(r"^verdict\s*:\s*(?P<verdict>.*?)\s*[.!]?$", re.I)
_EXPECTED_VERDICT = "expected a last line 'VERDICT: YES' or 'VERDICT: NO'"


def parse_yes_no(text: str) -> float:
    """A binary rubric's answer (does the essay have property X?) on the 0..10 scale: a last line `VERDICT: YES` is
    10, `VERDICT: NO` is 0, so a gate can ask for `min: 10` and the tables average it like any score."""
    lines = _lines(text)
    if not lines:
        raise ParseError(f"the answer is empty; {_EXPECTED_VERDICT}")
    match = _VERDICT_LINE.match(lines[-1].text)
    if match is None:
        raise ParseError(
            f"the answer does not end with a verdict ({_shortened(lines[-1].text)!r}); {_EXPECTED_VERDICT}"
        )
    verdict = match["verdict"].upper()
    if verdict not in ("YES", "NO"):
        raise ParseError(f"unknown verdict {match['verdict']!r}; expected YES or NO")
    return SCORE_MAX if verdict == "YES" else SCORE_MIN


# --------------------------------------------------------------------------- pairwise verdicts

WINNERS = ("A", "B", "TIE")
_WINNER_LINE = re.compile(r"^winner\s*:\s*(?P<winner>.*?)\s*[.!]?$", re.I)
_EXPECTED_WINNER = "expected a last line 'WINNER: A', 'WINNER: B' or 'WINNER: TIE'"


def parse_winner(text: str) -> str:
    """ "A", "B" or "TIE" from a pairwise judge answer that ends with its verdict line (markdown tolerated)."""
    lines = _lines(text)
    if not lines:
        raise ParseError(f"the answer is empty; {_EXPECTED_WINNER}")
    match = _WINNER_LINE.match(lines[-1].text)
    if match is None:
        raise ParseError(f"the answer does not end with a verdict ({_shortened(lines[-1].text)!r}); {_EXPECTED_WINNER}")
    winner = match["winner"].upper()
    if winner not in WINNERS:
        raise ParseError(f"unknown winner {match['winner']!r}; expected A, B or TIE")
    return winner


# --------------------------------------------------------------------------- registry

DRAFT_PARSERS: dict[str, Callable[[str], str]] = {
    "essay_idea_last": parse_essay_idea_last,
    "essay_block": parse_essay_block,
}

SCORE_PARSERS: dict[str, Callable[[str], float]] = {
    "in_last_line": parse_score_in_last_line,
    "complex": parse_score_complex,
    "yes_no": parse_yes_no,
}

# Pairwise judges (tournaments) answer "which of two essays is better"; kept apart from SCORE_PARSERS so an
# evaluation template can never name one (the catalog validates evaluation templates against SCORE_PARSERS only).
PAIRWISE_PARSERS: dict[str, Callable[[str], str]] = {
    "winner": parse_winner,
}


def _lookup(registry: dict[str, _Parser], kind: str, name: str) -> _Parser:
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise ParseError(f"unknown {kind} parser {name!r}; known: {known}") from None


def parse_draft(parser: str, text: str) -> str:
    """Apply the named draft parser; a blank name means the draft is the raw text."""
    if not parser.strip():
        return text
    return _lookup(DRAFT_PARSERS, "draft", parser)(text)


def parse_score(parser: str, text: str) -> float:
    """Apply the named score parser to a judge response."""
    return _lookup(SCORE_PARSERS, "score", parser)(text)


def parse_pairwise(parser: str, text: str) -> str:
    """Apply the named pairwise parser to a judge's comparison of two essays: "A", "B" or "TIE"."""
    return _lookup(PAIRWISE_PARSERS, "pairwise", parser)(text)


# --------------------------------------------------------------------------- answers cut short


def truncation_problem(call: dict, gen_id: str) -> str | None:
    """Why an answer cannot be read when it was cut at max_tokens (its call record says so), else None."""
    if call.get("finish_reason") == "length" and call.get("reasoning_tokens"):
        return (
            f"answer truncated at max_tokens={call.get('max_tokens')} after {call['reasoning_tokens']} tokens of "
            f"thinking (finish_reason=length): the model spent its budget reasoning; raise max_tokens in "
            f"config/daydream.yaml or cap the thinking with reasoning_max_tokens or reasoning_effort in "
            f"llm_models.csv, then `daydream gens rm {gen_id} --yes` and re-run"
        )
    if call.get("finish_reason") == "length":
        return (
            f"answer truncated at max_tokens={call.get('max_tokens')} (finish_reason=length); raise max_tokens "
            f"in config/daydream.yaml, then `daydream gens rm {gen_id} --yes` and re-run"
        )
    return None
