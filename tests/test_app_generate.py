"""The Generate tab through the real app.py (AppTest): it writes, steps through the new tokens, and every number on
the page (the text, the chosen token, its probability, the attention row) equals the engine's own generation; a
link reproduces the text; a switched-off head changes the continuation and the first parting step is marked;
markup stays literal; bad settings give a message and keep the last text; an encoder explains itself."""

from __future__ import annotations

import re

import numpy as np
import pytest
from apptest_tools import app_state, charts, decode, open_tab, start
from streamlit.testing.v1 import AppTest
from test_robustness import figure_strings, markdown_sources, unescaped

from components.labels import plotly_escape, readable_text, token_text
from components.views.generate import first_parting

pytestmark = pytest.mark.slow
PROMPT = "The mole dug a tunnel under the"


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def code(at: AppTest, key: str) -> str:
    """The text of the code block shown under `key`."""
    return at.get_by_key(key).code[0].value


def written(gen) -> str:
    return readable_text("".join(gen.tokens[gen.n_prompt:]))


def summary(at: AppTest) -> str:
    return at.get_by_key("generate_step_summary").markdown[0].value


def check_step(at: AppTest, gen, step: int, layer: int, head: int) -> None:
    """The step panel shows the engine's numbers for this step: token, probability, predictions, attention row."""
    chosen = gen.steps[step - 1]
    query = chosen.position - 1
    assert f"Step {step} of {len(gen.steps)} wrote “{token_text(chosen.token)}”" in summary(at)
    assert f"probability {chosen.prob:.2%}" in summary(at)
    figs = charts(at)
    bars = figs["generate_pred_fig"]["data"][0]
    probs, ticks = decode(bars["x"]), figs["generate_pred_fig"]["layout"]["yaxis"]["ticktext"]
    marked = [i for i, t in enumerate(ticks) if t.endswith(" ◀")]
    assert len(marked) == 1 and ticks[marked[0]] == plotly_escape(token_text(chosen.token)) + " ◀"
    assert probs[marked[0]] == pytest.approx(100 * chosen.prob, abs=1e-6)
    assert np.allclose(probs[: len(chosen.top)], [100 * p for _, _, p in chosen.top], atol=1e-6)
    row = decode(figs["generate_row_fig"]["data"][0]["y"])
    expected = gen.trace["pattern", layer, head][query, : query + 1].numpy()
    assert row.shape == (query + 1,) and np.allclose(row, expected, atol=1e-6)
    assert row.sum() == pytest.approx(1.0, abs=1e-4)


def test_it_writes_steps_through_and_shows_the_engines_numbers(smollm):
    at = start(text=PROMPT, tab="generate", layer=3, head=2, **{"generate.new": 10})
    no_errors(at)
    gen = smollm.generate(PROMPT, max_new_tokens=10)  # computed independently of the app
    assert code(at, "generate_prompt") == PROMPT and code(at, "generate_text") == written(gen)
    check_step(at, gen, 1, 3, 2)
    at.slider(key="generate_step").set_value(7).run()
    no_errors(at)
    check_step(at, gen, 7, 3, 2)
    pattern = charts(at)["generate_pattern_fig"]
    assert decode(pattern["data"][0]["z"]).shape == (len(gen.token_ids),) * 2
    edges = {(s["x0"], s["y0"]) for s in pattern["layout"]["shapes"] if s["type"] == "line"}
    assert edges == {(gen.n_prompt - 0.5, -0.5), (-0.5, gen.n_prompt - 0.5)}  # the written part, on both axes
    heads = charts(at)["generate_heads_fig"]
    assert heads["data"][0]["type"] == "image" and decode(heads["data"][1]["z"]).shape == (30, 9)
    assert at.query_params["generate.new"] == "10" and at.query_params["generate.step"] == "7"
    again = start(**{k: at.query_params[k] for k in at.query_params})  # the link: same text, same step
    assert code(again, "generate_text") == written(gen)
    check_step(again, gen, 7, 3, 2)


def test_sampling_with_a_seed_is_kept_in_the_link_and_reproduced(smollm):
    at = start(text=PROMPT, tab="generate")
    at.number_input(key="generate_new").set_value(8)
    at.radio(key="generate_sample").set_value(True)
    at.number_input(key="generate_temperature").set_value(1.3)
    at.number_input(key="generate_top_k").set_value(40)
    at.number_input(key="generate_seed").set_value(7)
    at.button(key="generate_go").click().run()
    no_errors(at)
    gen = smollm.generate(PROMPT, max_new_tokens=8, temperature=1.3, top_k=40, seed=7)
    assert code(at, "generate_text") == written(gen)
    link = {k: at.query_params[k] for k in at.query_params}
    assert {k: v for k, v in link.items() if k.startswith("generate.")} == {
        "generate.new": "8", "generate.sample": "1", "generate.temperature": "1.3", "generate.top_k": "40",
        "generate.seed": "7"}
    assert code(start(**link), "generate_text") == written(gen)  # a shared link writes the same text
    other = start(**{**link, "generate.seed": "8"})
    assert code(other, "generate_text") == written(smollm.generate(PROMPT, max_new_tokens=8, temperature=1.3,
                                                                   top_k=40, seed=8)) != written(gen)


def test_a_head_switched_off_changes_the_continuation_and_the_parting_step_is_marked(smollm):
    at = start(text="The capital of France is", tab="generate", layer=0, **{"generate.new": 8})
    no_errors(at)
    assert "generate_parting_fig" not in charts(at)
    open_tab(at, "interventions")
    at.button(key="heads_layer_off").click().run()  # the sidebar's layer 0: all its heads off
    open_tab(at, "generate")
    no_errors(at)
    off = app_state(at).heads_off
    base = smollm.generate("The capital of France is", max_new_tokens=8)
    gen = smollm.generate("The capital of France is", max_new_tokens=8, head_mask=smollm.head_mask_without(off))
    parting = first_parting(base.steps, gen.steps)
    assert parting is not None
    assert code(at, "generate_base_text").endswith(written(base)) and code(at, "generate_text").endswith(written(gen))
    assert code(at, "generate_base_text") != code(at, "generate_text")
    said = [m.value for m in at.markdown if m.value.startswith("**They part at step")]
    assert said == [f"**They part at step {parting}**: the unmodified model wrote "
                    f"“{token_text(base.steps[parting - 1].token)}” ({base.steps[parting - 1].prob:.1%}), with the "
                    f"heads off “{token_text(gen.steps[parting - 1].token)}” ({gen.steps[parting - 1].prob:.1%})."]
    fig = charts(at)["generate_parting_fig"]
    assert [(s["x0"], s["x1"]) for s in fig["layout"]["shapes"]] == [(parting - 0.5, parting + 0.5)]
    at.button(key="generate_go_parting").click().run()
    no_errors(at)
    assert at.slider(key="generate_step").value == parting
    check_step(at, gen, parting, 0, 0)  # the step panel follows the run with the head off
    assert at.warning and "Head 0.0 is switched off" in at.warning[0].value
    toggle = at.button(key="generate_toggle_head")  # the sidebar's head, switched from this tab
    assert toggle.label == "Switch head 0.0 on"
    toggle.click().run()
    no_errors(at)
    assert app_state(at).heads_off == off - {(0, 0)} and at.button(key="generate_toggle_head").label.endswith("off")


MARKUP = "<b>bold</b> <img src=x onerror=alert(1)> $x^2$ **not bold** :red[red] <script>"


def test_html_like_prompt_and_written_text_stay_literal(smollm):
    at = start(text=MARKUP, tab="generate", **{"generate.new": 12})
    no_errors(at)
    gen = smollm.generate(MARKUP, max_new_tokens=12)
    assert code(at, "generate_prompt") == MARKUP and code(at, "generate_text") == written(gen)
    assert re.search(r"[<>]", written(gen))  # the model goes on writing markup, shown as typed
    for _, source in markdown_sources(at):
        plain = re.sub(r"\\.|&nbsp;", "", source)
        assert not re.search(r"[<>$]", plain), source
    for key, fig in charts(at).items():
        for text in figure_strings(fig):
            assert not re.search(r"[<>$]", re.sub(r"<br>|<extra></extra>|%\{[^}]*\}", "", text)), (key, text)


def test_bad_settings_give_a_message_and_the_last_text_stays(monkeypatch):
    at = start(text=PROMPT, tab="generate", **{"generate.sample": 1, "generate.top_k": 0})
    assert not at.exception
    assert [unescaped(e.value) for e in at.error] == [
        "Could not write: top_k must be None or a whole number from 1 to 49152, not 0."]
    assert at.number_input(key="generate_top_k").value == 1  # the form shows the nearest allowed value

    monkeypatch.setenv("ATTN_EXPLORER_MAX_TOKENS", "16")  # the operator's limit: prompt + new tokens
    at = start(text=PROMPT, tab="generate", **{"generate.new": 6})
    no_errors(at)
    good = code(at, "generate_text")
    at.number_input(key="generate_new").set_value(12)  # 7 prompt tokens + 12 > 16
    at.button(key="generate_go").click().run()
    assert not at.exception
    assert [unescaped(e.value) for e in at.error] == [
        "Could not write: max_new_tokens must be a whole number from 1 to 9 (the context left after the 7-token "
        "prompt), not 12."]
    assert "Showing the last text written." in [c.value for c in at.caption]
    assert code(at, "generate_text") == good and "generate_row_fig" in charts(at)
    assert at.query_params["generate.new"] == "12"  # the link says what was asked for


def test_an_encoder_explains_that_it_cannot_write():
    at = start(model="minilm-l6", tab="generate")
    no_errors(at)
    assert any("cannot write text" in i.value for i in at.info)
    assert not [key for key in charts(at) if key.startswith("generate")] and not at.code
