"""Jinja2 prompt rendering in a sandbox: a template cannot reach Python internals or use undefined variables."""

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

STAGE_VARIABLES = {
    "draft": frozenset({"concepts"}),
    "essay": frozenset({"draft_block"}),
    "evaluation": frozenset({"response"}),
}

_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


class RenderError(Exception):
    pass


def template_problem(source: str, stage: str) -> str | None:
    """Why this template cannot render for `stage` (syntax error with its line, or an unknown variable), else None."""
    try:
        ast = _ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return f"syntax error on line {exc.lineno}: {str(exc.message).split('. ')[0]}"
    unknown = sorted(meta.find_undeclared_variables(ast) - STAGE_VARIABLES[stage])
    if unknown:
        available = ", ".join(sorted(STAGE_VARIABLES[stage]))
        return f"uses undefined variable {', '.join(repr(u) for u in unknown)} (available for {stage}: {available})"
    return None


def render(source: str, **variables) -> str:
    try:
        return _ENV.from_string(source).render(**variables)
    except jinja2.TemplateError as exc:
        raise RenderError(str(exc)) from None
