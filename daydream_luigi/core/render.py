"""Jinja2 prompt rendering in a sandbox: a template cannot reach Python internals, other files or undefined variables,
and a rendering longer than the configured limit is an error."""

from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import SandboxedEnvironment

STAGE_VARIABLES = {
    "draft": frozenset({"concepts"}),
    "essay": frozenset({"draft_block", "links_block"}),  # the same parsed draft: links_block is its earlier name
    "evaluation": frozenset({"response"}),
    "pairwise": frozenset({"essay_a", "essay_b"}),  # the essay shown first (A) and second (B)
}

# Statements that load another template file. The environment has no loader, so they could only fail at render time
# (once per generation); rejecting them at load time keeps every template self-contained.
_FILE_STATEMENTS = {
    nodes.Include: "{% include %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from %}",
    nodes.Extends: "{% extends %}",
}

_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


class RenderError(Exception):
    pass


def _internal_access(ast: nodes.Template) -> str | None:
    """The first underscore attribute a template reaches for (`x.__class__`, `x['_y']`, `x|attr(...)`), if any.

    The sandbox already refuses these when rendering; catching them here turns a run-time failure of every generation
    into one clear input error before anything is written.
    """
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            return f".{node.attr} on line {node.lineno}"
        if (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
            and node.arg.value.startswith("_")
        ):
            return f"[{node.arg.value!r}] on line {node.lineno}"
        if isinstance(node, nodes.Filter) and node.name == "attr":
            return f"the attr filter on line {node.lineno}"
    return None


def _file_statement(ast: nodes.Template) -> str | None:
    node = next(ast.find_all(tuple(_FILE_STATEMENTS)), None)
    return None if node is None else f"{_FILE_STATEMENTS[type(node)]} on line {node.lineno}"


def template_problem(source: str, stage: str) -> str | None:
    """Why this template cannot render for `stage` (empty, syntax error or file statement with its line, internals,
    an unknown variable), else None."""
    if not source.strip():
        return "is empty (or only whitespace)"
    try:
        ast = _ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return f"syntax error on line {exc.lineno}: {str(exc.message).split('. ')[0]}"
    statement = _file_statement(ast)
    if statement:
        return (
            f"loads another file ({statement}), but templates are self-contained (include, import, from and "
            f"extends are rejected)"
        )
    internal = _internal_access(ast)
    if internal:
        return (
            f"reaches for Python internals ({internal}); a template may only use the {stage} variables "
            f"({', '.join(sorted(STAGE_VARIABLES[stage]))}) and their public fields"
        )
    unknown = sorted(meta.find_undeclared_variables(ast) - STAGE_VARIABLES[stage])
    if unknown:
        available = ", ".join(sorted(STAGE_VARIABLES[stage]))
        return f"uses undefined variable {', '.join(repr(u) for u in unknown)} (available for {stage}: {available})"
    return None


@lru_cache(maxsize=64)
def compiled(source: str) -> jinja2.Template:
    """Compiling costs ~0.5 ms; a cohort renders the same few templates thousands of times."""
    return _ENV.from_string(source)


def length_problem(length: int, max_chars: int) -> str | None:
    """Why a prompt of `length` characters is refused under limits.max_prompt_chars, else None."""
    if length <= max_chars:
        return None
    return (
        f"the rendered prompt has {length:,} characters, more than limits.max_prompt_chars ({max_chars:,}) in "
        f"config/daydream.yaml; shorten the template or its inputs, or raise the limit"
    )


def render(source: str, *, max_chars: int | None = None, **variables: Any) -> str:
    """The prompt; RenderError when the template fails or the result is longer than `max_chars`."""
    try:
        text = compiled(source).render(**variables)
    except jinja2.TemplateError as exc:
        raise RenderError(str(exc)) from None
    except Exception as exc:  # a template is user code: 1/0 or a too-big range is its failure, not ours
        raise RenderError(f"{type(exc).__name__}: {exc}") from None
    problem = None if max_chars is None else length_problem(len(text), max_chars)
    if problem:
        raise RenderError(problem)
    return text
