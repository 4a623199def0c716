"""A model's optional call settings in llm_models.csv: how it reasons and, through OpenRouter, which upstream hosts
may serve it. Each is sent only when set, and only then part of the model's gen_ids (`identity.call_shape`), so a
catalog without these columns keeps its ids.

Reasoning (OpenRouter's `reasoning` request object, https://openrouter.ai/docs/use-cases/reasoning-tokens; OpenAI's
`reasoning_effort`, https://platform.openai.com/docs/api-reference/chat/create):
  reasoning_effort      minimal | low | medium | high
  reasoning_max_tokens  a whole number of thinking tokens (OpenRouter only; use it or reasoning_effort)
  reasoning_exclude     true: the model thinks but the answer leaves the thinking out (OpenRouter only)
Routing (OpenRouter's `provider` request object, https://openrouter.ai/docs/features/provider-routing); lists are
separated by `;`:
  provider_order, provider_only, provider_ignore, provider_quantizations, provider_allow_fallbacks (true | false)
"""

from collections.abc import Callable

EFFORTS = ("minimal", "low", "medium", "high")
_TRUE, _FALSE = {"true", "1", "yes", "y"}, {"false", "0", "no", "n"}


def _effort(value: str) -> tuple[object, str | None]:
    lowered = value.lower()
    return lowered, None if lowered in EFFORTS else f"is not one of {', '.join(EFFORTS)}"


def _count(value: str) -> tuple[object, str | None]:
    return (int(value), None) if value.isdigit() and int(value) > 0 else (None, "is not a whole number >= 1")


def _flag(value: str) -> tuple[object, str | None]:
    lowered = value.lower()
    if lowered in _TRUE | _FALSE:
        return lowered in _TRUE, None
    return None, "is not true or false"


def _names(value: str) -> tuple[object, str | None]:
    names = [name.strip() for name in value.split(";") if name.strip()]
    return names, None if names else "names nothing (separate names with ;)"


_Reader = Callable[[str], tuple[object, str | None]]
# column -> (key in the request object, how its text is read)
REASONING_COLUMNS: dict[str, tuple[str, _Reader]] = {
    "reasoning_effort": ("effort", _effort),
    "reasoning_max_tokens": ("max_tokens", _count),
    "reasoning_exclude": ("exclude", _flag),
}
ROUTING_COLUMNS: dict[str, tuple[str, _Reader]] = {
    "provider_order": ("order", _names),
    "provider_only": ("only", _names),
    "provider_ignore": ("ignore", _names),
    "provider_quantizations": ("quantizations", _names),
    "provider_allow_fallbacks": ("allow_fallbacks", _flag),
}


def read_options(row: dict, columns: dict[str, tuple[str, _Reader]], where: str, problems: list[str]) -> dict:
    """The request object the row's filled `columns` make (empty when none is filled); a problem per bad value."""
    options = {}
    for column, (key, read) in columns.items():
        text = (row.get(column) or "").strip()
        if not text:
            continue
        value, problem = read(text)
        if problem:
            problems.append(f"{where}: {column} {text!r} {problem}; fix it or leave it empty")
        else:
            options[key] = value
    if "effort" in options and "max_tokens" in options:
        problems.append(f"{where}: set reasoning_effort or reasoning_max_tokens, not both (OpenRouter takes one)")
    return options
