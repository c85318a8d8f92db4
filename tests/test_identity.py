"""The one rule behind cell ids (xlspec/identity.py) and the expansion, which builds the same
text level by level for speed, must agree on every cell of every committed plan."""

import glob
import os

import pytest

from conftest import ROOT
from xlspec.identity import cell_id, part_digests
from xlspec.plan import load

PLANS = sorted(glob.glob(os.path.join(ROOT, "build", "*.plan.json")) + glob.glob(os.path.join(ROOT, "tests", "fixtures", "plans", "*.plan.json")))


@pytest.mark.parametrize("path", PLANS, ids=os.path.basename)
def test_expanded_cell_ids_follow_the_rule(path):
    plan = load(path)
    cache: dict = {}
    for cell in plan.cells:
        digests, _parts = part_digests(plan.data, cell.study, cell.axes, cache)
        assert cell_id(cell.study, cell.axes, digests, cell.reads) == cell.id, cell


def test_the_study_is_part_of_the_id():
    plan = load(os.path.join(ROOT, "build", "demo.plan.json"))
    cell = plan.cells[0]
    digests, _parts = part_digests(plan.data, cell.study, cell.axes)
    assert cell_id(cell.study, cell.axes, digests) != cell_id(cell.study + "_copy", cell.axes, digests)


def _compile_with(tmp_path, extra: str):
    """The countries fixture plus ``extra`` declarations, compiled from a copy."""
    import shutil

    from xlspec.api import compile_file

    src = os.path.join(ROOT, "tests", "fixtures", "plans")
    shutil.copytree(os.path.join(src, "data"), tmp_path / "data")
    with open(os.path.join(src, "countries.xls"), encoding="utf-8") as f:
        text = f.read()
    (tmp_path / "spec.xls").write_text(text + extra, encoding="utf-8")
    result = compile_file(str(tmp_path / "spec.xls"), str(tmp_path / "build"))
    assert result.ok, [d.message for d in result.diagnostics]
    return result.plan


def test_two_studies_over_the_same_cells_have_cells_of_their_own(tmp_path):
    plan = _compile_with(tmp_path, """
study again {
  model = smol  dataset = survey  country = mena  language = english + native(country)
  framing = persona  mode = [direct, reason]  partition = [local, translated]  subset = [family, other]
  answer = options + generate(parser = option_number)
  metrics = [refusal_rate]
}
""")
    ids = [c.id for c in plan.cells]
    assert len(ids) == len(set(ids)) and {c.study for c in plan.cells} == {"values", "again"}


def test_two_studies_may_ask_one_country_in_different_languages(tmp_path):
    plan = _compile_with(tmp_path, """
study zz_native_only {
  model = smol  dataset = survey  country = mena  language = native(country)
  framing = persona  mode = direct  answer = options
}
""")
    # the country's name in English (study values) survives the second study
    assert all("en" in names and len(names) >= 2 for names in plan.names["countries"].values())


def test_an_api_model_is_identified_by_its_name_and_server_never_its_key():
    """Two servers answering to one model name are two models; the key's variable and how
    many requests are in flight are not part of any id, and a plan does not list the
    openai-only settings of other models."""
    from xlspec.identity import model_identity
    from xlspec.spec import ModelSpec

    def ident(**settings):
        return model_identity(ModelSpec(engine="openai", source="gpt-4o-mini", **settings).plan_entry())

    base = ident()
    assert ident(base_url="http://127.0.0.1:8000/v1") != base
    assert ident(base_url="http://127.0.0.1:8000/v1") != ident(base_url="http://127.0.0.1:8001/v1")
    assert ident(api_key_env="MY_KEY", concurrency=32, timeout=5, max_retries=0) == base
    assert model_identity(ModelSpec(engine="openai", source="gpt-4o").plan_entry()) != base
    local = ModelSpec(engine="hf", source="builtin:smollm2-135m-instruct").plan_entry()
    assert not {"base_url", "api_key_env", "concurrency", "timeout", "max_retries"} & set(local)
