"""The pure core without Luigi: ids, combinations, cohort expansion, rendering and the store."""

import csv
import itertools
import os

import pytest

from daydream_luigi.core import ids
from daydream_luigi.core.catalog import load_catalog
from daydream_luigi.core.cohort_spec import active_spec
from daydream_luigi.core.combos import enumerate_combos, make_combo, read_mappings
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.expansion import Member, check_integrity
from daydream_luigi.core.render import RenderError, render, template_problem
from daydream_luigi.core.settings import Paths, load_settings
from daydream_luigi.store.cohorts import expand_cohort
from daydream_luigi.store.combo_mappings import persist_mappings
from daydream_luigi.store.files import atomic_write_text, complete_ids

POOLS = {"free": 1, "paid": 5, "local": 1}


def test_combo_id_is_stable_and_order_independent():
    assert (
        ids.combo_id(["b", "a"], "paragraph", 2)
        == ids.combo_id(["a", "b"], "paragraph", 2)
        == "combo_v1_" + "e34ea0f62a24"
    )  # printf "a|b|paragraph|2" | sha256sum
    assert ids.combo_id(["a", "b"], "sentence", 2) != ids.combo_id(["a", "b"], "paragraph", 2)


def test_gen_id_is_16_base36_chars_and_depends_on_every_part():
    first = ids.gen_id("draft", "c__t__m", 1)
    assert len(first) == 16 and first.isalnum() and first == first.lower()
    assert first == ids.gen_id("draft", "c__t__m", 1)
    assert (
        len(
            {
                first,
                ids.gen_id("draft", "c__t__m", 2),
                ids.gen_id("essay", "c__t__m", 1),
                ids.gen_id("draft", "c__t__x", 1),
            }
        )
        == 4
    )


@pytest.mark.parametrize(
    "value,problem",
    [
        ("ok-id_1.v2", None),
        ("", "is empty"),
        ("a/b", "may only contain letters, digits, '.', '_' and '-'"),
        ("a b", "may only contain letters, digits, '.', '_' and '-'"),
        ("..", "may not start with '.' or contain '..'"),
        (".hidden", "may not start with '.' or contain '..'"),
        ("a..b", "may not start with '.' or contain '..'"),
    ],
)
def test_id_problem(value, problem):
    assert ids.id_problem(value) == problem


def test_all_c_n_k_combinations_are_enumerated():
    concepts = [f"c{i}" for i in range(6)]
    combos = enumerate_combos(concepts, 3, "paragraph")
    assert len(combos) == 20
    assert [c.concept_ids for c in combos] == list(itertools.combinations(concepts, 3))


def test_mappings_are_append_only_and_collisions_are_errors(tmp_path):
    path = tmp_path / "combo_mappings.csv"
    combos = enumerate_combos(["a", "b", "c"], 2, "paragraph")
    assert persist_mappings(path, combos[:2]) == 2
    assert persist_mappings(path, combos) == 1
    assert persist_mappings(path, combos) == 0
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["combo_id"] for r in rows] == [c.combo_id for c in combos for _ in range(2)]
    assert set(rows[0]) == {"combo_id", "version", "concept_id", "description_level", "k_max", "created_at"}
    assert (rows[0]["version"], rows[0]["description_level"], rows[0]["k_max"]) == ("v1", "paragraph", "2")
    assert read_mappings(path) == {c.combo_id: c for c in combos}
    tampered = path.read_text().replace(",b,paragraph", ",z,paragraph", 1)
    path.write_text(tampered)
    with pytest.raises(InputError, match="is recorded with concepts a\\|z but now means a\\|b"):
        persist_mappings(path, combos)


def test_cartesian_cohort_counts_lineage_and_determinism(project):
    paths = Paths.from_env()
    settings = load_settings(paths)
    catalog = load_catalog(paths, POOLS)
    spec = active_spec(catalog, settings, "http")
    rows = expand_cohort(spec, paths, catalog, settings)
    assert [sum(r.stage == s for r in rows) for s in ("draft", "essay", "evaluation")] == [6, 12, 24]
    drafts = {r.gen_id for r in rows if r.stage == "draft"}
    essays = {r.gen_id: r for r in rows if r.stage == "essay"}
    assert all(e.parent_gen_id in drafts and e.llm_model_id == "gen-paid" for e in essays.values())
    assert all(r.parent_gen_id in essays and r.llm_model_id == "judge-paid" for r in rows if r.stage == "evaluation")
    again = expand_cohort(active_spec(catalog, settings, "http"), paths, catalog, settings)
    assert again == rows and spec.cohort_id.startswith("active-")
    local = expand_cohort(active_spec(catalog, settings, "local"), paths, catalog, settings)
    assert {r.llm_model_id for r in local} == {"qwen-local"}


def test_integrity_rejects_a_dangling_parent():
    rows = [Member("draft", "d1", "c", "", "x", "t", "m", 1), Member("essay", "e1", "c", "d2", "x", "t", "m", 1)]
    with pytest.raises(InputError) as caught:
        check_integrity(rows, "spec.yaml")
    assert (
        str(caught.value) == "spec.yaml: essay e1 has parent 'd2', which is not a draft of cohort c; rebuild the cohort"
    )


def test_description_level_falls_back_paragraph_sentence_name(project):
    catalog = load_catalog(Paths.from_env(), POOLS)
    assert catalog.concepts["tidal-power"].content("article").startswith("Turbines")
    assert catalog.concepts["ant-foraging"].content("paragraph") == "Ants find food by laying and following trails."
    assert catalog.concepts["sourdough"].content("sentence").startswith("A starter")
    assert make_combo(["b", "a"], "paragraph", 2).concept_ids == ("a", "b")


def test_render_is_strict_and_sandboxed():
    assert render("Hi {{ name }}!", name="you") == "Hi you!"
    with pytest.raises(RenderError, match="'name' is undefined"):
        render("Hi {{ name }}!")
    with pytest.raises(RenderError, match="unsafe"):
        render("{{ x.__class__.__mro__[1].__subclasses__() }}", x="")
    assert template_problem("{{ response }}", "evaluation") is None
    assert (
        template_problem("{{ draft_block }}", "evaluation")
        == "uses undefined variable 'draft_block' (available for evaluation: response)"
    )


def test_atomic_write_leaves_no_temp_file_and_completion_is_metadata(tmp_path):
    atomic_write_text(tmp_path / "gens" / "draft" / "g1" / "raw.txt", "text")
    assert os.listdir(tmp_path / "gens" / "draft" / "g1") == ["raw.txt"]
    assert complete_ids(tmp_path / "gens", "draft") == set()
    atomic_write_text(tmp_path / "gens" / "draft" / "g1" / "metadata.json", "{}")
    assert complete_ids(tmp_path / "gens", "draft") == {"g1"}
