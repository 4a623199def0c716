"""Turn raw LLM output into what the pipeline stores: a draft text or a judge score.

Generation templates name a parser; the pipeline looks it up here by name, so
both kinds live in one registry module and fail with one error type
(:class:`ParseError`, a one-line reason) that callers can record per row.

Whitespace: every draft parser returns its block's inner text with leading and
trailing whitespace stripped; the blank parser name returns the text unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

SCORE_MIN, SCORE_MAX = 0.0, 10.0


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
        body = text[match.end():closed.start() if closed else end]
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
    rest = text[opened.end():]
    closed = _ESSAY_CLOSE.search(rest)
    inner = (rest[: closed.start()] if closed else rest).strip()
    if not inner:
        raise ParseError("<essay> block is empty")
    return inner


# --------------------------------------------------------------------------- scores

_NUMBER = r"\d+(?:\.\d+)?"
_PER = r"\s*(?:/|\bout\s+of\b)\s*"
# A value with optional denominator and unit: "7", "6.5/10", "3 out of 10", "1/2 pts".
_VALUE = rf"(?P<num>{_NUMBER})(?:{_PER}(?P<den>{_NUMBER}))?(?P<unit>\s*(?:pts?|points?)\b)?"
# Markdown emphasis/heading/code marks around a score carry no meaning.
_MARKUP = re.compile(r"[*#`]+|__")
# "SCORE: 7/10", "Final Score: 3/10", "score of 7/10", "the final score is 9".
_KEYWORD_SCORE = re.compile(rf"\bscore\s*(?:[:=]|\bis\b|\bof\b)\s*{_VALUE}", re.I)
# "a 7/10 score", "an 8/10 overall score".
_FRACTION_BEFORE_KEYWORD = re.compile(
    rf"(?P<num>{_NUMBER})\s*/\s*10\s+(?:(?:final|overall|total)\s+)?score\b", re.I
)
# "### Final Score" alone on a line, the value on the next line.
_SCORE_HEADING = re.compile(r"^(?:(?:final|total|overall)\s+)?score\s*:?$", re.I)
# A line holding nothing but a value: "3/10", "7", "6.5 / 10.".
_BARE_SCORE_LINE = re.compile(rf"^{_VALUE}\s*[.!]?$", re.I)
_FRACTION_OF_TEN = re.compile(rf"(?P<num>{_NUMBER}){_PER}10\b", re.I)


def _clean_lines(text: str) -> list[str]:
    """Non-empty lines with markdown markup removed and whitespace trimmed."""
    lines = (_MARKUP.sub("", line).strip() for line in text.splitlines())
    return [line for line in lines if line]


def _value(match: re.Match[str]) -> float | None:
    """Score held by a value match, or None for a sub-score.

    Only values on the 10-point template scale count: "2/5" or "1 pt" are
    rubric parts, never the judge's verdict.
    """
    found = match.groupdict()
    denominator = found.get("den")
    if found.get("unit") or (denominator is not None and float(denominator) != SCORE_MAX):
        return None
    return float(found["num"])


def _last_fraction_of_ten(text: str) -> float | None:
    matches = list(_FRACTION_OF_TEN.finditer(text))
    return float(matches[-1]["num"]) if matches else None


def _statement_value(line: str) -> float | None:
    """Last explicit score statement in a line, keyword before or after the value."""
    matches = [*_KEYWORD_SCORE.finditer(line), *_FRACTION_BEFORE_KEYWORD.finditer(line)]
    values = [(m.start(), v) for m in matches if (v := _value(m)) is not None]
    return max(values)[1] if values else None


def _bare_value(line: str) -> float | None:
    match = _BARE_SCORE_LINE.match(line)
    return _value(match) if match else None


def _checked(value: float | None, where: str) -> float:
    if value is None:
        raise ParseError(f"no score found {where}")
    if not SCORE_MIN <= value <= SCORE_MAX:
        raise ParseError(f"score {value:g} is outside {SCORE_MIN:g}..{SCORE_MAX:g}")
    return value


def parse_score_in_last_line(text: str) -> float:
    """Score stated on the last non-empty line, for templates that demand it there."""
    lines = _clean_lines(text)
    line = lines[-1] if lines else ""
    value = _statement_value(line)
    if value is None:
        value = _last_fraction_of_ten(line)
    if value is None:
        value = _bare_value(line)
    return _checked(value, "in the last non-empty line")


def _final_statement(lines: list[str]) -> float | None:
    """Latest score statement; judges often restate or revise the score as they go."""
    for i in reversed(range(len(lines))):
        value = _statement_value(lines[i])
        if value is None and i > 0 and _SCORE_HEADING.match(lines[i - 1]):
            value = _bare_value(lines[i])
        if value is not None:
            return value
    return None


def parse_score_complex(text: str) -> float:
    """Final score anywhere in a free-form judge answer (reasoning, rubric tables, recap).

    Explicit statements win, latest first; only without any statement does the
    last bare "X/10" count.
    """
    lines = _clean_lines(text)
    value = _final_statement(lines)
    if value is None:
        value = _last_fraction_of_ten("\n".join(lines))
    return _checked(value, "in judge response")


# --------------------------------------------------------------------------- registry

DRAFT_PARSERS: dict[str, Callable[[str], str]] = {
    "essay_idea_last": parse_essay_idea_last,
    "essay_block": parse_essay_block,
}

SCORE_PARSERS: dict[str, Callable[[str], float]] = {
    "in_last_line": parse_score_in_last_line,
    "complex": parse_score_complex,
}


def _lookup(registry: dict[str, Callable], kind: str, name: str) -> Callable:
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
