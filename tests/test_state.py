"""The app state and the link's schema (components/state.py), and the views' registry: no model, no Streamlit run."""

from __future__ import annotations

import inspect
from dataclasses import replace
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components import state
from components.content import DEFAULT_SENTENCE
from components.settings import Settings
from components.state import AppState, Field, Schema
from components.views.registry import SCHEMA, VIEWS, label

OPEN = Settings(max_tokens=2048, max_chars=20_000, allow_custom_models=True, allow_local_folders=True,
                model_cache_bytes=10**9, device=None, max_params=10**9,
                trace_cache_entries=4, memory_mb=512, runs_per_minute=30)
LOCKED = replace(OPEN, allow_custom_models=False, max_chars=40)


def read(settings: Settings = OPEN, **query: str) -> AppState:
    return AppState.from_query(query, settings, SCHEMA)


def test_an_empty_link_is_the_default_state():
    s = read()
    assert s == AppState(tab=VIEWS[0].id)
    assert (s.model, s.text, s.mask, s.layout, s.tab, s.figure_format) == (
        "smollm2-135m", DEFAULT_SENTENCE, "default", "query_rows", "pattern", "png")
    assert AppState().tab == SCHEMA.first_tab  # the dataclass default is the registry's first tab


def test_bad_values_are_ignored_one_by_one():
    s = read(layer="abc", head="1.5", position="", mask="sideways", layout="diagonal", tab="nowhere",
             figure="jpeg", off="5.3, 7.0,x.1,3,-1.2,", **{"projections.mode": "spiral", "projections.dims": "4"})
    assert (s.layer, s.head, s.position) == (0, 0, -1)
    assert (s.mask, s.layout, s.tab, s.figure_format) == ("default", "query_rows", "pattern", "png")
    assert s.heads_off == frozenset({(5, 3), (7, 0)})
    assert s.views == {}
    assert read(layer=" 7 ", head="-2").fit(30, 9) == replace(read(layer="7"), head=0)


def test_model_names_are_bounded_and_refused_where_the_operator_says():
    assert read(model="minilm-l6").model == "minilm-l6"
    assert read(model="x" * 600).model == "x" * state.MAX_MODEL_NAME
    assert state.refused_model({"model": "x" * 600}, OPEN) is None
    assert read(LOCKED, model="/etc").model == "smollm2-135m"  # a locked-down server: only embedded models
    assert state.refused_model({"model": "/etc"}, LOCKED) == "/etc"
    assert read(LOCKED, model="minilm-l6").model == "minilm-l6"


def test_text_is_cut_as_read_and_left_out_of_a_link_too_long():
    assert read(LOCKED, text="y" * 100).text == "y" * 40
    assert read(text="   ").text == "   "  # kept: the page says the sentence is empty
    assert read(text="").text == DEFAULT_SENTENCE
    assert "text" in read(text="我" * 600).to_query(OPEN)  # 5,400 characters once URL-encoded
    assert "text" not in read(text="我" * 700).to_query(OPEN)  # 6,300: over the 6,000 a link keeps


def test_links_hold_ids_and_older_links_with_labels_still_open():
    s = read(mask="model default", layout="key rows (notes)", tab="Word senses")
    assert (s.mask, s.layout, s.tab) == ("default", "key_rows", "senses")
    link = s.to_query(OPEN)
    assert (link["mask"], link["layout"], link["tab"]) == ("default", "key_rows", "senses")
    assert set(link) == {"model", "text", "mask", "layer", "head", "layout", "position", "tab"}  # defaults only


def test_view_fields_travel_only_when_set():
    s = read(**{"projections.mode": "path", "projections.dims": "3"})
    assert s.views == {"projections.mode": "path", "projections.dims": 3}
    mode = next(f for f in SCHEMA.fields if f.link == "projections.mode")
    assert s.value(mode) == "path" and read().value(mode) == "qk"
    assert s.to_query(OPEN)["projections.dims"] == "3"
    assert "projections.mode" not in read(**{"projections.mode": "qk"}).to_query(OPEN)  # the default stays out
    flag = Field("heads.flag", False)
    assert (flag.parse("1"), flag.parse("0"), flag.parse("yes")) == (True, False, None)
    temperature = Field("generate.temperature", 0.0)  # the kinds of field later views need
    assert (temperature.parse("0.7"), temperature.parse("nan"), temperature.parse("hot")) == (0.7, None, None)
    second = Field("compare.text", "", max_chars=5)
    assert second.parse("a <b> sentence") == "a <b>"


def test_a_patch_travels_whole_or_not_at_all():
    link = {"patch": "3.1,3.0,x", "patch_at": "14", "patch_from": "The gardener trapped the burrowing mole",
            "patch_from_at": "6"}
    s = read(**link)
    assert s.patch == state.Patch("The gardener trapped the burrowing mole", 6, 14, ((3, 0), (3, 1)))
    assert {k: v for k, v in s.to_query(OPEN).items() if k.startswith("patch")} == {**link, "patch": "3.0,3.1"}
    for broken in ({"patch": ""}, {"patch_at": "-1"}, {"patch_from": ""}, {"patch_from_at": "six"}):
        assert read(**{**link, **broken}).patch is None
    assert read(LOCKED, **link).patch.source == link["patch_from"][:40]  # cut like the text
    long = replace(s, patch=replace(s.patch, source="我" * 200))  # 1,800 characters once URL-encoded
    assert "patch" not in long.to_query(OPEN) and "patch_from" not in long.to_query(OPEN)


def test_a_schema_refuses_fields_that_are_not_a_views_own():
    with pytest.raises(ValueError, match="after its own view"):
        Schema(tabs={"pattern": "Attention pattern"}, fields=(Field("heads.x", 1),))
    with pytest.raises(ValueError, match="share a link name"):
        Schema(tabs={"heads": "All heads"}, fields=(Field("heads.x", 1), Field("heads.x", 2)))


states = st.builds(
    AppState,
    model=st.sampled_from(["smollm2-135m", "minilm-l6", "gpt2", "some-org/a-model", "/tmp/folder with spaces"]),
    text=st.text(st.characters(codec="utf-8"), min_size=1, max_size=60),
    mask=st.sampled_from(list(state.MASKS)), layer=st.integers(-3, 40), head=st.integers(-3, 20),
    layout=st.sampled_from(list(state.LAYOUTS)), position=st.integers(-1, 100),
    heads_off=st.frozensets(st.tuples(st.integers(0, 40), st.integers(0, 20)), max_size=8),
    tab=st.sampled_from(list(SCHEMA.tabs)), figure_format=st.sampled_from(list(state.FIGURE_FORMATS)),
    views=st.fixed_dictionaries({}, optional={"projections.mode": st.sampled_from(["delta", "path"]),
                                              "projections.dims": st.just(3)}).map(MappingProxyType),
    patch=st.none() | st.builds(state.Patch, source=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
                                source_at=st.integers(0, 60), at=st.integers(0, 60),
                                heads=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 20)), min_size=1,
                                               max_size=9).map(tuple)),
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(s=states)
def test_a_link_reproduces_the_state(s):
    assert AppState.from_query(s.to_query(OPEN), OPEN, SCHEMA) == s


def test_the_registry_lists_each_view_once_with_a_render_function():
    ids = [v.id for v in VIEWS]
    assert len(set(ids)) == len(ids) and all(i.isidentifier() and len(i) <= 16 for i in ids)
    assert len({v.label for v in VIEWS}) == len(VIEWS)
    for view in VIEWS:
        assert list(inspect.signature(view.module.render).parameters) == ["ctx"], view.id
        assert SCHEMA.tab_id(label(view.id)) == view.id
