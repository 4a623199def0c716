"""The neutrality check of what is about to run: the preflight of `run`, `plan` (and `search`) and `daydream check
inputs`, and the record a run keeps of it.

`core.neutrality` scans texts it is given; this module gives it the rest of what a cohort sends that we wrote, from
the layers below the core may not reach: the system prompts of its calls (each call's shape, `identity.call_shape`,
holds the one sent) and, when config/neutrality.yaml names a target text, the offline embedding model, whose vectors
are kept by text sha256 under data/cache/embeddings (`providers.embeddings.cached_embedder`): the model is loaded only
when some input changed, so a second preflight of the same inputs reads a few small files instead of embedding them.

A command that runs a cohort calls :func:`require_neutral_inputs` before anything else (nothing is written, no call
made, when it raises) and :func:`record_neutral_inputs` once it starts, so the report says which rules were applied.
"""

from daydream_luigi.core.catalog import Catalog
from daydream_luigi.core.errors import InputError, raise_if
from daydream_luigi.core.identity import call_shape
from daydream_luigi.core.ids import checked_id
from daydream_luigi.core.neutrality import RECORD_FILE, Embed, Scan, fixed_inputs, load_rules, record, rules_path, scan
from daydream_luigi.core.search_spec import SearchSpec, cube_spec
from daydream_luigi.core.settings import Paths, Settings
from daydream_luigi.store.files import atomic_write_json


def system_prompts(spec, catalog: Catalog, settings: Settings) -> dict[str, str]:
    """What each distinct system prompt of the cohort's calls is (its stages and models) -> its text."""
    calls: dict[str, list[str]] = {}
    for stage, model_ids in (
        ("draft", spec.generation_models),
        ("essay", spec.generation_models),
        ("evaluation", spec.evaluation_models),
    ):
        for model_id in model_ids:
            prompt = call_shape(settings, stage, catalog.models[model_id]).get("system_prompt")
            if prompt:
                calls.setdefault(prompt, []).append(f"{stage} calls to {model_id}")
    return {f"the system prompt of {', '.join(uses)}": prompt for prompt, uses in calls.items()}


def offline_embedder(rules_file) -> Embed:
    """The offline embedding model (all-MiniLM-L6-v2 on numpy); an input error saying how to install it."""
    from daydream_luigi.providers.embeddings import EmbeddingError
    from daydream_luigi.providers.local import minilm

    try:
        return minilm.MiniLMEmbedder()
    except EmbeddingError as exc:
        raise InputError(f"{rules_file}: a target text is compared with the offline embedding model: {exc}") from None


def cached_offline_embedder(paths: Paths, rules_file) -> Embed:
    """The offline model behind the vector cache: loaded only for a text whose vector is not kept yet."""
    from daydream_luigi.providers.embeddings import cached_embedder
    from daydream_luigi.providers.local.minilm import MODEL_ID

    return cached_embedder(paths.embedding_cache, MODEL_ID, lambda: offline_embedder(rules_file))


def check_inputs(paths: Paths, spec, catalog: Catalog, settings: Settings, embed: Embed | None = None) -> Scan | None:
    """The scan of the cohort `spec`'s fixed inputs (None without config/neutrality.yaml); `embed` defaults to the
    offline model (with its vector cache) when the rules name a target."""
    rules = load_rules(paths)
    if rules is None:
        return None
    if rules.target_text is not None and embed is None:
        embed = cached_offline_embedder(paths, rules.path)
    return scan(fixed_inputs(paths, spec, catalog, system_prompts(spec, catalog, settings)), rules, embed)


def require_neutral_inputs(paths: Paths, spec, catalog: Catalog, settings: Settings) -> Scan | None:
    """The preflight: an InputError listing every forbidden term and every input too close to the target, before any
    call; the scan (for :func:`record_neutral_inputs`) when the inputs are neutral, None without
    config/neutrality.yaml (nothing to check)."""
    checked = check_inputs(paths, spec, catalog, settings)
    raise_if(checked.problems if checked else [])
    return checked


def record_neutral_inputs(paths: Paths, cohort_id: str, checked: Scan | None):
    """Keep what :func:`require_neutral_inputs` found in the cohort's folder (data/cohorts/<id>/neutrality.json, beside
    its manifest: the report shows it, and its change rebuilds the report); its path."""
    path = paths.cohorts / checked_id(cohort_id, "cohort id") / RECORD_FILE
    atomic_write_json(path, record(checked, rules_path(paths)))
    return path


def require_neutral_search(paths: Paths, search: SearchSpec, catalog: Catalog, settings: Settings) -> None:
    """A search's preflight, before any call: the inputs every round of it may send (its cube's) are neutral."""
    require_neutral_inputs(paths, cube_spec(search), catalog, settings)
