"""Jinja2 prompt rendering in a sandbox: a template cannot reach Python internals or use undefined variables."""

from functools import lru_cache

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import SandboxedEnvironment

STAGE_VARIABLES = {
    "draft": frozenset({"concepts"}),
    "essay": frozenset({"draft_block"}),
    "evaluation": frozenset({"response"}),
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
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and \
                isinstance(node.arg.value, str) and node.arg.value.startswith("_"):
            return f"[{node.arg.value!r}] on line {node.lineno}"
        if isinstance(node, nodes.Filter) and node.name == "attr":
            return f"the attr filter on line {node.lineno}"
    return None


def template_problem(source: str, stage: str) -> str | None:
    """Why this template cannot render for `stage` (syntax error with its line, or an unknown variable), else None."""
    try:
        ast = _ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return f"syntax error on line {exc.lineno}: {str(exc.message).split('. ')[0]}"
    internal = _internal_access(ast)
    if internal:
        return (f"reaches for Python internals ({internal}); a template may only use the {stage} variables "
                f"({', '.join(sorted(STAGE_VARIABLES[stage]))}) and their public fields")
    unknown = sorted(meta.find_undeclared_variables(ast) - STAGE_VARIABLES[stage])
    if unknown:
        available = ", ".join(sorted(STAGE_VARIABLES[stage]))
        return f"uses undefined variable {', '.join(repr(u) for u in unknown)} (available for {stage}: {available})"
    return None


@lru_cache(maxsize=64)
def _compiled(source: str) -> jinja2.Template:
    """Compiling costs ~0.5 ms; a cohort renders the same few templates thousands of times."""
    return _ENV.from_string(source)


def render(source: str, **variables) -> str:
    try:
        return _compiled(source).render(**variables)
    except jinja2.TemplateError as exc:
        raise RenderError(str(exc)) from None
