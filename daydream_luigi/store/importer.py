"""Texts written elsewhere (another project's winner, a hand-edited essay, a reference text) imported into the store as
complete generations, so they are judged, ranked and deduplicated beside the essays generated here.

An imported text is a generation like any other: data/gens/<stage>/<gen_id>/ with raw.txt and parsed.txt (both the
text itself) and metadata.json, written last, which makes it complete. No model made it from a prompt or a template,
and an imported essay has no draft: its metadata says so (`imported: true`; empty template, model and parent; no model
string and no prompt) and records where the text came from. Its gen_id is `identity.imported_id` of the stage and the
text's sha256, so importing the same text again finds its complete generation and writes nothing.

The text is the file decoded as UTF-8 (a byte-order mark dropped) with its line endings made "\\n", which is how the
store reads every text back; nothing else in it is changed.
"""

from dataclasses import dataclass, field
from pathlib import Path

from daydream_luigi.core import identity
from daydream_luigi.core.backends import HTTP
from daydream_luigi.core.catalog import load_catalog
from daydream_luigi.core.clock import now
from daydream_luigi.core.errors import InputError, raise_if
from daydream_luigi.core.settings import STAGES, Paths, load_settings, pool_limits
from daydream_luigi.store.cohorts import curated_listing
from daydream_luigi.store.files import METADATA, PARSED, RAW, atomic_write_json, atomic_write_text, gen_dir

IMPORT_STAGES = STAGES[:2]  # drafts and essays can be imported; an evaluation is always made here


@dataclass(frozen=True)
class Text:
    """One file to import, read and checked."""

    path: Path
    text: str
    sha256: str
    gen_id: str


@dataclass
class Imported:
    """What an import did: every text (in the order given), the gen_ids it wrote (the others were complete already),
    the spec of the curated cohort named (None when none was) and the ids added to it (none when it listed them all)."""

    stage: str
    texts: list
    written: set = field(default_factory=set)
    spec: Path | None = None
    added: list = field(default_factory=list)


def _decoded(path: Path, problems: list[str]) -> str | None:
    """The file's text, or None with the reason in `problems`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        problems.append(f"{path}: no such file; check the path")
        return None
    except IsADirectoryError:
        problems.append(f"{path}: is a directory; give the text files in it")
        return None
    except OSError as exc:
        problems.append(f"{path}: cannot be read ({exc.strerror}); check its permissions")
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8")
        return None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_texts(stage: str, files: list[Path], max_chars: int) -> list[Text]:
    """Every file read and checked before anything is written; raises InputError with one problem per file: missing,
    unreadable, not UTF-8, empty or only whitespace, too long for any prompt to hold (`max_chars`, the settings'
    limits.max_prompt_chars), given twice, or the same text as another file of the call."""
    problems: list[str] = []
    texts: list[Text] = []
    given: dict[Path, Path] = {}
    by_sha: dict[str, Path] = {}
    for path in files:
        if path.resolve() in given:
            problems.append(f"{path}: given more than once; list each file once")
            continue
        given[path.resolve()] = path
        text = _decoded(path, problems)
        if text is None:
            continue
        if not text.strip():
            problems.append(f"{path}: empty (or only whitespace); there is no text to import")
            continue
        if len(text) > max_chars:
            problems.append(
                f"{path}: {len(text):,} characters, more than limits.max_prompt_chars={max_chars:,} in "
                f"config/daydream.yaml, so no prompt could hold it; shorten the text or raise the limit"
            )
            continue
        sha = identity.text_sha(text)
        if sha in by_sha:
            problems.append(f"{path}: the same text as {by_sha[sha]}; import each text once")
            continue
        by_sha[sha] = path
        texts.append(Text(path, text, sha, identity.imported_id(stage, sha)))
    raise_if(problems)
    return texts


def metadata(stage: str, text: Text, label: str | None, at: str) -> dict:
    """metadata.json of an imported text: the fields every generation has (empty or None where nothing made it) and
    where it came from. task_id is its gen_id: no two imported texts are the same task."""
    return {
        "stage": stage,
        "gen_id": text.gen_id,
        "parent_gen_id": "",
        "cohort_id": "",
        "combo_id": "",
        "template_id": "",
        "template_sha256": None,
        "llm_model_id": "",
        "replicate": 1,
        "model": None,
        "prompt_sha256": None,
        "task_id": text.gen_id,
        "imported": True,
        "source_file": text.path.name,
        "text_sha256": text.sha256,
        "label": label,
        "imported_at": at,
    }


def write_generation(gens_root: Path, stage: str, text: Text, label: str | None, at: str) -> bool:
    """Write the text's generation unless it is complete already; True when it was written."""
    directory = gen_dir(gens_root, stage, text.gen_id)
    if (directory / METADATA).exists():
        return False
    atomic_write_text(directory / RAW, text.text)
    atomic_write_text(directory / PARSED, text.text)
    atomic_write_json(directory / METADATA, metadata(stage, text, label, at))  # last: the generation is complete
    return True


def import_texts(
    paths: Paths,
    stage: str,
    files: list[Path],
    label: str | None = None,
    cohort: str | None = None,
    backend: str = HTTP.name,
) -> Imported:
    """Import `files` as complete generations of `stage`; with `cohort`, add their ids to that curated cohort's spec
    (its essays, or drafts, list). Everything is checked first (the files, the label, the cohort and its spec):
    InputError and nothing written. Then the generations, then the spec."""
    if stage not in IMPORT_STAGES:
        raise InputError(f"cannot import {stage!r} texts; import one of {', '.join(IMPORT_STAGES)}")
    problems: list[str] = []
    if label is not None and not label.strip():
        problems.append("--label is empty; give a short note (e.g. --label 'winner of project X') or leave it out")
    settings = load_settings(paths)
    try:
        texts = read_texts(stage, list(files), settings.max_prompt_chars)
    except InputError as exc:
        problems, texts = problems + exc.problems, []
    result, spec_text = Imported(stage, texts), None
    if cohort is not None:
        try:
            result.spec, spec_text, result.added = curated_listing(
                paths,
                cohort,
                stage,
                [t.gen_id for t in texts],
                load_catalog(paths, pool_limits(paths), settings),
                settings,
                backend,
            )
        except InputError as exc:
            problems += exc.problems
    raise_if(problems)
    at = now()
    result.written = {t.gen_id for t in texts if write_generation(paths.gens, stage, t, label, at)}
    if spec_text is not None:
        atomic_write_text(result.spec, spec_text)
    return result
