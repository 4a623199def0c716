"""The pairwise stage: one judgment of a tournament (two essays shown as A and B), made like any generation.

A judgment lives in data/gens/pairwise/<judgment_id>/ with the files every generation has (prompt.txt,
attempts.jsonl, raw.txt, call.json, parsed.txt, metadata.json) and is made by `generation.run_generation` with the
stage's work given here (`make_judgment`): its request is recorded before it is sent, its answer kept the moment it
arrives, and a judgment once kept is never paid for again. Pairwise calls are judge calls: they are sampled with the
evaluation stage's settings (`generation.evaluation` in config/daydream.yaml).

A tournament is played round by round (`play`): each round's judgments are made together (by Luigi, as
`tasks.PairwiseJudgment`), then the next round is paired from the kept verdicts, so playing it again asks for the
same judgments and finds them all kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from daydream_luigi.analysis.tournament import PAIRWISE_STAGE, Tournament, judgment_id, play_tournament
from daydream_luigi.core import identity
from daydream_luigi.core.catalog import Model, Template
from daydream_luigi.core.expansion import Member
from daydream_luigi.core.parsers import parse_pairwise
from daydream_luigi.execution import generation
from daydream_luigi.execution.generation import Context, Generation
from daydream_luigi.store.files import ERROR, METADATA, PARSED, atomic_write_text, gen_dir, read_json, read_text
from daydream_luigi.store.rescore import parsed_text, read_answer

STAGE = PAIRWISE_STAGE
SAMPLED_LIKE = "evaluation"  # the stage whose settings (temperature, max_tokens, timeouts) pairwise calls use


@dataclass(frozen=True)
class Judgment(Member):
    """A generation whose parents are two essays: `first` is shown as A, `second` as B."""

    first: str
    second: str


def judging_context(ctx: Context) -> Context:
    """The context judgments run in: the cohort's, with the pairwise stage sampled like evaluations."""
    stages = {**ctx.settings.stages, STAGE: ctx.settings.stage(SAMPLED_LIKE)}
    return replace(ctx, settings=replace(ctx.settings, stages=stages))


@dataclass(frozen=True)
class Judge:
    """Who judges a tournament of one cohort's essays: a pairwise template and a model, with what their ids need."""

    cohort_id: str
    template: Template
    model: Model
    shape: dict  # the judge's call shape (identity.call_shape)
    essay_sha256: Mapping[str, str]  # essay gen_id -> sha256 of its text, for every essay of the field

    def judgment(self, first: str, second: str) -> Judgment:
        texts = (self.essay_sha256[first], self.essay_sha256[second])
        gen_id = judgment_id(first, second, texts, self.template.sha256, self.shape)
        return Judgment(
            STAGE, gen_id, self.cohort_id, "", "", self.template.template_id, self.model.model_id, 1, first, second
        )


def judge_for(ctx: Context, cohort_id: str, template: Template, model: Model, essays: Mapping[str, str]) -> Judge:
    """The judge of a tournament over `essays` (gen_id -> text)."""
    return Judge(
        cohort_id,
        template,
        model,
        identity.call_shape(judging_context(ctx).settings, STAGE, model),
        {gen_id: identity.text_sha(text) for gen_id, text in essays.items()},
    )


def _essay(gen: Generation, gen_id: str) -> str:
    try:
        return read_text(gen_dir(gen.ctx.paths.gens, "essay", gen_id) / PARSED)
    except (OSError, ValueError) as exc:
        raise gen.fail(f"essay {gen_id} is unreadable ({exc}); run `daydream check`", "parent", False) from None


def _judge_pair(gen: Generation) -> dict:
    """Render the two essays into the pairwise template, call the judge (or reuse its kept answer), read the verdict.
    An answer without a verdict is a complete judgment with its error (the match counts as unjudged)."""
    ctx, judgment = gen.ctx, gen.member
    template = ctx.catalog.templates[STAGE][judgment.template_id]
    prompt = generation.render_prompt(
        gen, template, {"essay_a": _essay(gen, judgment.first), "essay_b": _essay(gen, judgment.second)}
    )
    raw, call = generation.call_model(gen, ctx.catalog.models[judgment.llm_model_id], prompt)
    verdict, error = read_answer(parse_pairwise, template.kind, raw, call, judgment.gen_id)
    atomic_write_text(gen.directory / PARSED, parsed_text(verdict))
    return {
        **call,
        "parser": template.kind,
        "essay_a": judgment.first,
        "essay_b": judgment.second,
        "verdict": verdict,
        "error": error,
    }


def make_judgment(ctx: Context, judgment: Judgment, run_id: str, emit: generation.Emit) -> dict:
    """Make one judgment in the context of its cohort (`judging_context`), unless it is kept; returns its metadata."""
    return generation.run_generation(judging_context(ctx), judgment, run_id, _judge_pair, emit)


class RoundFailed(Exception):
    """Some judgments of a round could not be made; the tournament stops before pairing the next round."""

    def __init__(self, number: int, failures: dict[str, str]):
        super().__init__(f"round {number}: {len(failures)} judgment(s) failed")
        self.number = number
        self.failures = failures  # judgment_id -> reason


def kept_verdict(gens_root, gen_id: str) -> tuple[bool, str | None, str]:
    """(complete, verdict or None, why not made or why no verdict) of a judgment in the store."""
    directory = gen_dir(gens_root, STAGE, gen_id)
    try:
        metadata = read_json(directory / METADATA)
        return True, metadata.get("verdict"), metadata.get("error") or ""
    except FileNotFoundError:
        pass
    try:
        return False, None, read_json(directory / ERROR)["error"]
    except (OSError, ValueError, KeyError):
        return False, None, "not made (see the log)"


def play(
    essay_ids: Sequence[str], rounds: int, judge: Judge, gens_root, make: Callable[[list[Judgment]], None]
) -> Tournament:
    """Play the tournament; `make` makes a round's judgments that are not kept yet (a Luigi build). Raises
    RoundFailed, after the round, when some judgment of it could not be made."""
    played = []

    def judge_round(presented: list[tuple[str, str]]) -> list[str | None]:
        played.append(presented)
        judgments = [judge.judgment(first, second) for first, second in presented]
        make(judgments)
        verdicts, failures = [], {}
        for judgment in judgments:
            complete, verdict, reason = kept_verdict(gens_root, judgment.gen_id)
            if not complete:
                failures[judgment.gen_id] = reason
            verdicts.append(verdict)
        if failures:
            raise RoundFailed(len(played), failures)
        return verdicts

    return play_tournament(essay_ids, rounds, judge_round)
