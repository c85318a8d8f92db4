"""Request lowering (xlspec/lower.py, request ids from xlspec/identity.py): what the engines
are asked and which requests are the same one.  Plans are compiled from a tiny spec
(tests/support/projects.py) with the real compiler; no engine runs here."""

from __future__ import annotations

import pytest

from support.projects import FRAMINGS, ITEMS, OPTIONS, QUESTIONS, new_project
from xlspec.lower import DataCache, cell_requests

ANSWERS = 2  # options + generate, the tiny spec's default


def lower(plan, path, limit=None) -> dict:
    """(framing, language) -> the cell's requests."""
    data = DataCache(plan, path)
    return {(c.axes["framing"], c.axes["language"]): cell_requests(plan, c, data, limit) for c in plan.cells}


def ids(requests) -> list[str]:
    return [cr.request.request_id for cr in requests]


def cell_ids(plan) -> dict:
    return {(c.axes["framing"], c.axes["language"]): c.id for c in plan.cells}


@pytest.fixture
def project(tmp_path):
    return new_project(tmp_path / "p")


def test_request_ids_are_stable_across_runs_and_places(tmp_path):
    a, b = new_project(tmp_path / "a"), new_project(tmp_path / "elsewhere" / "b")
    plan_a, path_a = a.compile()
    plan_b, path_b = b.compile()
    first, again, other = lower(plan_a, path_a), lower(plan_a, path_a), lower(plan_b, path_b)
    assert len(first) == 4
    for key, reqs in first.items():
        assert len(reqs) == ITEMS * ANSWERS
        assert ids(reqs) == ids(again[key]) == ids(other[key])
        assert all(len(rid) == 64 and int(rid, 16) >= 0 for rid in ids(reqs))
        # in a stable order: item by item, the answer kinds in the study's order
        assert [cr.item.item_id for cr in reqs] == [f"q{i // ANSWERS + 1}" for i in range(len(reqs))]
        assert [cr.request.kind for cr in reqs] == ["options", "generate"] * ITEMS
    assert cell_ids(plan_a) == cell_ids(plan_b)
    every = [rid for reqs in first.values() for rid in ids(reqs)]
    assert len(set(every)) == len(every), "different prompts share a request id"


def test_the_same_prompt_in_two_cells_is_one_request(project):
    framings = {"plain": FRAMINGS["plain"], "copy": dict(FRAMINGS["plain"])}
    plan, path = project.compile(framings=framings)
    cells = cell_ids(plan)
    lowered = lower(plan, path)
    for lang in ("en", "fr"):
        assert cells[("plain", lang)] != cells[("copy", lang)]
        assert ids(lowered[("plain", lang)]) == ids(lowered[("copy", lang)])
    assert set(ids(lowered[("plain", "en")])).isdisjoint(ids(lowered[("plain", "fr")]))


def test_editing_one_framing_changes_only_its_requests(project):
    before_plan, before_path = project.compile(name="before")
    framings = {name: dict(t) for name, t in FRAMINGS.items()}
    framings["quiz"]["en"] = "Quiz night! {question}\\n{options}"
    after_plan, after_path = project.compile(name="after", framings=framings)
    before, after = lower(before_plan, before_path), lower(after_plan, after_path)
    old_cells, new_cells = cell_ids(before_plan), cell_ids(after_plan)
    for key in before:
        if key == ("quiz", "en"):
            assert old_cells[key] != new_cells[key]
            assert set(ids(before[key])).isdisjoint(ids(after[key]))
            assert all(cr.request.prompt.startswith("Quiz night! ") for cr in after[key])
        else:
            assert old_cells[key] == new_cells[key], key
            assert ids(before[key]) == ids(after[key]), key


@pytest.mark.parametrize(
    "setting, changes",
    [
        ("batch_size = 8", False),
        ("tensor_parallel = 2", False),
        ('dtype = "float32"', True),
        ('revision = "abc123"', True),
    ],
)
def test_which_model_settings_change_ids(project, setting, changes):
    base_plan, base_path = project.compile(name="base")
    plan, path = project.compile(name="edited", model_settings=setting)
    base, edited = lower(base_plan, base_path), lower(plan, path)
    old_cells, new_cells = cell_ids(base_plan), cell_ids(plan)
    for key in base:
        if changes:
            assert old_cells[key] != new_cells[key]
            assert set(ids(base[key])).isdisjoint(ids(edited[key]))
        else:
            assert old_cells[key] == new_cells[key]
            assert ids(base[key]) == ids(edited[key])
        # the prompts are the same either way
        assert [cr.request.prompt for cr in base[key]] == [cr.request.prompt for cr in edited[key]]


def test_greedy_samples_are_one_request_sampled_ones_are_not(project):
    greedy_plan, greedy_path = project.compile(name="greedy", study_extra="  samples = 3")
    sampled_plan, sampled_path = project.compile(name="sampled", study_extra="  samples = 3", mode="max_tokens = 4 temperature = 0.7")
    greedy = lower(greedy_plan, greedy_path)[("plain", "en")]
    sampled = lower(sampled_plan, sampled_path)[("plain", "en")]
    for reqs in (greedy, sampled):
        # one options request per item (not sampled), three generate requests (samples 0-2)
        assert [(cr.request.kind, cr.sample) for cr in reqs[:4]] == [("options", 0), ("generate", 0), ("generate", 1), ("generate", 2)]
        assert len(reqs) == ITEMS * 4
        assert [cr.request.seed for cr in reqs if cr.request.kind == "generate"][:3] == [0, 1, 2]
    greedy_gen = [cr for cr in greedy if cr.request.kind == "generate"]
    sampled_gen = [cr for cr in sampled if cr.request.kind == "generate"]
    for i in range(ITEMS):
        assert len(set(ids(greedy_gen[3 * i : 3 * i + 3]))) == 1, "greedy samples are one request"
        assert len(set(ids(sampled_gen[3 * i : 3 * i + 3]))) == 3, "sampled samples are distinct requests"
        assert sampled_gen[3 * i].request.temperature == 0.7
    assert len(set(ids(greedy))) == ITEMS * 2
    assert len(set(ids(sampled))) == ITEMS * 4
    # the options requests do not depend on sampling
    assert [cr.request.request_id for cr in greedy if cr.request.kind == "options"] == [cr.request.request_id for cr in sampled if cr.request.kind == "options"]


def test_fewshot_blocks_exclude_the_item_itself(project):
    plan, path = project.compile(study_extra="  shots = 2\n  fewshot = facts")
    for (framing, lang), reqs in lower(plan, path).items():
        assert len(reqs) == ITEMS * ANSWERS
        for cr in reqs:
            blocks = cr.request.prompt.split("\n\n")
            assert len(blocks) == 3, cr.request.prompt  # two shots, then the item
            own = QUESTIONS[lang][int(cr.item.item_id[1:]) - 1]
            shots, item = blocks[:2], blocks[2]
            assert own in item and not any(own in s for s in shots)
            # shots come from the pool in its order, in the cell's language, with their answer
            others = [q for q in QUESTIONS[lang] if q != own][:2]
            assert [s.split("\n")[0].removeprefix("Quiz! ").removeprefix("Quiz ! ") for s in shots] == others
            assert all(s.split("\n")[-1] in ("A", "B") for s in shots)
            assert cr.request.prompt.count(own) == 1


def test_limit_caps_items(project):
    plan, path = project.compile()
    full = lower(plan, path)
    two = lower(plan, path, limit=2)
    for key, reqs in two.items():
        assert [cr.item.item_id for cr in reqs] == ["q1", "q1", "q2", "q2"]
        assert ids(reqs) == ids(full[key])[:4]
    # with a study limit too, the smaller wins
    plan3, path3 = project.compile(name="limited", study_extra="  limit = 3")
    assert {len(r) for r in lower(plan3, path3).values()} == {3 * ANSWERS}
    assert {len(r) for r in lower(plan3, path3, limit=2).values()} == {2 * ANSWERS}
    assert {len(r) for r in lower(plan3, path3, limit=4).values()} == {3 * ANSWERS}
    assert {len(r) for r in lower(plan, path, limit=99).values()} == {ITEMS * ANSWERS}


def test_loglik_normalisations_share_requests_and_the_separator_is_part_of_them(project):
    def loglik_ids(answer, name):
        plan, path = project.compile(answer=answer, name=name)
        reqs = lower(plan, path)[("plain", "fr")]
        return [cr.request.request_id for cr in reqs], reqs

    both, reqs = loglik_ids("loglik + loglik(normalize = chars)", "both")
    # two normalisations read one request per item: computed once
    assert both[::2] == both[1::2] and len(set(both)) == len(both) // 2
    assert [cr.answer["args"]["normalize"] for cr in reqs[:2]] == ["none", "chars"]
    plain, _ = loglik_ids("loglik(normalize = tokens)", "tokens")
    assert plain == both[::2]
    newline, reqs = loglik_ids('loglik(separator = "\\n")', "newline")
    assert reqs[0].request.options[0].startswith("\n") and not set(newline) & set(plain)


def test_loglik_carries_option_texts_and_options_carry_labels(project):
    plan, path = project.compile(answer="options + loglik")
    for (_framing, lang), reqs in lower(plan, path).items():
        for cr in reqs:
            i = int(cr.item.item_id[1:]) - 1
            if cr.request.kind == "options":
                assert cr.request.options == ("A", "B")
            else:
                assert cr.request.kind == "loglik"
                # each continuation is lm-eval's default separator, a space, then the option
                assert cr.request.options == tuple(" " + o for o in OPTIONS[lang][i])
            assert cr.request.max_tokens == 4 and cr.request.chat is True
            assert cr.answer["kind"] == cr.request.kind
    # the options request is the same one whichever other kinds the study asks for
    other_plan, other_path = project.compile(name="other")
    assert ids(lower(plan, path)[("plain", "fr")])[::2] == ids(lower(other_plan, other_path)[("plain", "fr")])[::2]
