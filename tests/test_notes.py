"""The "Follow the notes" view through the real app.py (AppTest) on both embedded models: all twelve steps walked
by button and opened by link, each step's numbers checked against a computation written out here from the weights
(the norm, W_Q, W_K, rotary, the grid, the mask, the softmax, Σ α v, Δe, the sum over heads, a seeded draw); and
the sampling module on its own (seeded picks repeat, temperature → 0 is greedy, top-k and top-p)."""

from __future__ import annotations

import math
import re
import urllib.parse

import numpy as np
import pytest
import torch
from apptest_tools import app_state, charts, decode, ok, start, table
from streamlit.testing.v1 import AppTest

import engine
from components.labels import token_text
from engine import sampling
from engine.analysis import notes as analysis

pytestmark = pytest.mark.slow
MODELS = ["smollm2-135m", "minilm-l6"]
TEXT = "The gardener trapped the burrowing mole"
LAYER, HEAD = 2, 4
LONG = ("The mole dug a tunnel under the garden, and the gardener, who had planted roses there in spring, was "
        "furious about it. The next morning he set a trap.")


def step_of(at: AppTest) -> int:
    (title,) = [h.value for h in at.subheader if h.value.startswith("Step ")]
    number, total = re.match(r"Step (\d+) of (\d+)", title).groups()
    assert total == "12"
    return int(number)


# ---- the computation written out, from the weights ---------------------------------------------------------------

class Written:
    """One head of one layer computed here from the model's weights and the block's input (resid_pre)."""

    def __init__(self, model: engine.Model, trace: engine.Trace, layer: int, head: int):
        cfg, w = model.config, model.weights.blocks[layer]
        x = trace["resid_pre", layer].double()  # [n, d_model]
        if cfg.norm_placement == "pre":  # RMSNorm (SmolLM2)
            x = w.ln1.w.double() * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + cfg.norm_eps)
        kv = head // (cfg.n_heads // cfg.n_kv_heads)
        a = w.attn

        def linear(W, b, h):
            return x @ W[h].double() + (b[h].double() if b is not None else 0)

        self.x = x
        self.q_linear = linear(a.W_Q, a.b_Q, head)  # [n, d_head]
        k = linear(a.W_K, a.b_K, kv)
        self.v = linear(a.W_V, a.b_V, kv)
        n, d = self.q_linear.shape
        if cfg.positions == "rotary":  # rotate pairs (i, i + d/2) by position · θ^(−2i/d)
            inv = cfg.rope_theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
            angle = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
            cos, sin = torch.cat([angle.cos()] * 2, -1), torch.cat([angle.sin()] * 2, -1)

            def rotate(t):
                return t * cos + torch.cat([-t[:, d // 2:], t[:, :d // 2]], -1) * sin

            self.q, self.k = rotate(self.q_linear), rotate(k)
        else:
            self.q, self.k = self.q_linear, k
        self.dots = self.q @ self.k.T  # [n, n]
        self.scores = self.dots / math.sqrt(d)
        above = torch.ones(n, n, dtype=torch.bool).triu(1)
        self.masked = above if trace.causal else torch.zeros_like(above)
        self.pattern = torch.softmax(self.scores.masked_fill(self.masked, -math.inf), -1)
        self.z = self.pattern @ self.v  # [n, d_head]: Σ α v for every query
        self.delta = self.z @ a.W_O[head].double()  # [n, d_model]


def sampled(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None, seed: int) -> int:
    """A draw written out: softmax(logits / T), keep the top k, keep the nucleus of mass top_p, renormalise."""
    if temperature == 0:
        return int(logits.argmax())
    p = torch.softmax(logits.double() / temperature, -1)
    if top_k is not None:
        p = torch.where(p >= p.topk(top_k).values[-1], p, 0.0)
        p = p / p.sum()
    if top_p is not None:
        order = p.argsort(descending=True)
        mass = p[order].cumsum(0) - p[order]
        keep = torch.zeros_like(p, dtype=torch.bool)
        keep[order[mass < top_p]] = True
        p = torch.where(keep, p, 0.0)
        p = p / p.sum()
    return int(torch.multinomial(p, 1, generator=torch.Generator().manual_seed(seed)))


def figure_z(at: AppTest) -> np.ndarray:
    """The values of the step figure's first heatmap (or its first bars)."""
    fig = charts(at)["notes_fig"]
    first = next(t for t in fig["data"] if t["type"] in ("heatmap", "bar", "waterfall"))
    return decode(first["z"] if first["type"] == "heatmap" else first["y"])


def close(a, b, tol: float = 1e-4) -> None:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b[np.isfinite(b)]).max(initial=0))))


# ---- what each step must show ------------------------------------------------------------------------------------

def check_step(step: int, at: AppTest, model: engine.Model, text: str = TEXT) -> None:
    """Every number of one step against the written-out computation (token: the last word, the default)."""
    cfg = model.config
    trace = model.run(text)
    own = Written(model, trace, LAYER, HEAD)
    ids = model.tokenizer(text)["input_ids"]
    special = set(model.tokenizer.all_special_ids)
    t = max(i for i, token_id in enumerate(ids) if token_id not in special)  # the last word
    n = len(ids)
    lo, hi = (0, n) if n <= 24 else (min(max(t - 12, 0), n - 24), min(max(t - 12, 0), n - 24) + 24)
    assert int(at.selectbox(key="notes_token").value) == t
    assert step_of(at) == step
    got = table(at, "notes_numbers") if at.get_by_key("notes_numbers") else None
    if step == 1:
        assert list(got["id"]) == ids[lo:hi]
        assert list(got["token"]) == [token_text(x) for x in model.readable(ids)[lo:hi]]
    elif step == 2:
        W_E = model.weights.W_E.double()
        if cfg.positions == "rotary":
            e = W_E[ids]
        else:  # BERT: token + position + segment 0, then LayerNorm
            s = W_E[ids] + model.weights.W_pos[:n].double() + model.weights.W_type[0].double()
            e = torch.nn.functional.layer_norm(s, (cfg.d_model,), model.weights.embed_ln.w.double(),
                                               model.weights.embed_ln.b.double(), cfg.norm_eps)
        close(got["‖e‖"], e[lo:hi].norm(dim=-1))
        close(figure_z(at), e[lo:hi])
        other = int(at.selectbox(key="notes_other").value)
        cos = float(e[t] @ e[other] / (e[t].norm() * e[other].norm()))
        assert any(f"**{cos:.3f}**" in m.value for m in at.markdown)
    elif step == 3:
        close(got["q"], own.q[t])
        if cfg.positions == "rotary":
            close(got["x·W_Q (before rotary)"], own.q_linear[t])
            assert any("rotated" in m.value for m in at.markdown)
    elif step == 4:
        close(got.to_numpy(), own.k[lo:hi])
        close(figure_z(at)[0], own.q[t])
        assert any(("shared" in m.value) == (cfg.n_kv_heads < cfg.n_heads) for m in at.markdown if "W_K" in m.value)
    elif step == 5:
        close(got["q·k"], own.dots[t, lo:hi])
        close(got[f"q·k / √{cfg.d_head}"], own.scores[t, lo:hi])
        grey, main = charts(at)["notes_fig"]["data"][:2]
        assert np.isnan(decode(grey["z"])).all()  # before the mask: nothing grey
    elif step == 6:
        after = got["after the mask"].to_numpy()
        assert np.array_equal(np.isneginf(after), own.masked[t, lo:hi].numpy())
        close(after[np.isfinite(after)], own.scores[t, lo:hi][~own.masked[t, lo:hi]])
        grey = decode(charts(at)["notes_fig"]["data"][0]["z"])
        w = hi - lo
        assert int((~np.isnan(grey)).sum()) == (w * (w - 1) // 2 if trace.causal else 0)
        if trace.causal:
            at.toggle(key="notes_unmask").set_value(True)
            ok(at.run())
            assert np.isnan(decode(charts(at)["notes_fig"]["data"][0]["z"])).all()
            at.toggle(key="notes_unmask").set_value(False)
            ok(at.run())
        else:
            assert any("bidirectional" in m.value for m in at.markdown)
    elif step == 7:
        close(got["weight α"], own.pattern[t, lo:hi])
        assert abs(own.pattern[t].sum() - 1) < 1e-9
        assert f"{n} × {n} = {n * n:,}" in " ".join(m.value for m in at.markdown)
        close(figure_z(at), own.pattern[lo:hi, lo:hi] if at.session_state["layout"] == "query_rows"
              else own.pattern[lo:hi, lo:hi].T)
    elif step == 8:
        close(got["α"], own.pattern[t, lo:hi])
        close(table(at, "notes_vector")["Σ α v"], own.z[t])
        assert any(("shares its value matrix" in m.value) == (cfg.n_kv_heads < cfg.n_heads) for m in at.markdown
                   if "value down" in m.value)
    elif step == 9:
        vec = table(at, "notes_vector")
        close(vec["Δe"], own.delta[t])
        close(vec["e + Δe"], trace["resid_pre", LAYER][t].double() + own.delta[t])
        assert list(got.columns) == ["e (before)", "Δe alone", "e + Δe"] and len(got) == 5
        logits = model.unembed((trace["resid_pre", LAYER][t].double() + own.delta[t]).float()).float()
        top = model.readable(logits.topk(5).indices.tolist())
        assert [c.split("  (")[0] for c in got["e + Δe"]] == [token_text(x) for x in top]
    elif step == 10:
        norms, total = [], torch.zeros(cfg.d_model, dtype=torch.float64)
        for h in range(cfg.n_heads):
            d = Written(model, trace, LAYER, h).delta[t]
            norms.append(float(d.norm()))
            total += d
        close(got["‖Δe‖"], norms)
        b_O = model.weights.blocks[LAYER].attn.b_O
        total += b_O.double() if b_O is not None else 0
        assert float((total - trace["attn_out", LAYER][t].double()).abs().max()) < 1e-3
        (check,) = at.metric
        assert float(check.value) < 1e-4
    elif step == 11:
        if not cfg.has_lm_head:
            assert any("no language-model head" in i.value for i in at.info)
            close(got["‖resid‖"], trace.residual_stream()[:, t].double().norm(dim=-1))
            return
        logits = trace.logits_at(t)
        close(got["p (temperature 1)"], torch.softmax(logits.double(), -1).topk(10).values)
        picks = table(at, "notes_vector")
        assert int(picks["picked id"][0]) == sampled(logits, 1.0, None, None, 0)
        assert int(picks["greedy id"][0]) == int(logits.argmax())
    elif step == 12:
        w = model.weights.blocks[0].attn
        per_head = sum(getattr(w, m)[0].numel() for m in ("W_Q", "W_K", "W_V", "W_O"))
        col = got[cfg.name].tolist()
        assert col[:2] == [w.W_Q[0].numel(), per_head]
        weights = dict(model.weights.named())
        tied = "unembed.W_U" in weights and torch.equal(weights["unembed.W_U"].T, weights["embed.W_E"])
        assert col[-1] == sum(p.numel() for p in weights.values()) - (weights["unembed.W_U"].numel() if tied else 0)
        assert got["GPT-3 175B"].tolist()[:4] == [1_572_864, 6_291_456, 603_979_776, 57_982_058_496]


@pytest.mark.parametrize("model", MODELS)
def test_walk_all_steps_by_button_with_their_numbers(model, models):
    at = ok(start(model=model, text=TEXT, layer=LAYER, head=HEAD, tab="notes"))
    assert at.button(key="notes_back").disabled
    shown = {}
    for step in range(1, 13):
        check_step(step, at, models[model])
        shown[step] = [m.value for m in at.markdown]
        assert ("notes.step" in at.query_params) == (step > 1)
        if step > 1:
            assert at.query_params["notes.step"] == str(step)
        if step < 12:
            at.button(key="notes_next").click()
            ok(at.run())
    assert at.button(key="notes_next").disabled
    at.button(key="notes_back").click()
    ok(at.run())
    assert step_of(at) == 11

    # by link: each step opens on its own, showing what the walk showed
    for step in range(1, 13):
        linked = ok(start(model=model, text=TEXT, layer=LAYER, head=HEAD, tab="notes", **{"notes.step": step}))
        check_step(step, linked, models[model])
        assert [m.value for m in linked.markdown][:1] == shown[step][:1]


def test_sampling_at_step_11_is_seeded_and_greedy_at_temperature_0(smollm):
    at = ok(start(text=TEXT, layer=LAYER, head=HEAD, tab="notes", **{"notes.step": 11}))
    trace = smollm.run(TEXT)
    t = trace.n_tokens - 1
    logits = trace.logits_at(t)

    def picked() -> int:
        return int(table(at, "notes_vector")["picked id"][0])

    at.slider(key="notes_temperature").set_value(1.5)
    at.number_input(key="notes_top_k").set_value(40)
    at.slider(key="notes_top_p").set_value(0.9)
    for seed in (3, 11):
        at.number_input(key="notes_seed").set_value(seed)
        ok(at.run())
        first = picked()
        assert first == sampled(logits, 1.5, 40, 0.9, seed)
        ok(at.run())
        assert picked() == first  # the same seed picks the same token again
        assert table(at, "notes_numbers")["p (your settings)"].sum() <= 1 + 1e-9
    at.slider(key="notes_temperature").set_value(0.0)
    ok(at.run())
    assert picked() == int(logits.argmax())
    probs = table(at, "notes_numbers")["p (your settings)"].tolist()
    assert probs[0] == 1.0 and sum(probs[1:]) == 0.0


def test_a_long_text_shows_a_window_around_the_token(smollm):
    n = smollm.tokenize(LONG)[0]
    assert len(n) > 24
    for step in (1, 5, 7, 8):
        at = ok(start(text=LONG, layer=LAYER, head=HEAD, tab="notes", **{"notes.step": step}))
        check_step(step, at, smollm, text=LONG)
        assert len(table(at, "notes_numbers")) == 24
        if step > 1:
            assert any("the figure shows positions" in c.value for c in at.caption)


def test_explore_opens_the_matching_tab_with_the_same_state(smollm):
    at = ok(start(text=TEXT, layer=LAYER, head=HEAD, tab="notes", mask="default", **{"notes.step": 3}))
    at.selectbox(key="notes_token").set_value(2)
    ok(at.run())
    assert at.query_params["notes.token"] == "2"
    links = [m.value for m in at.markdown if "Link to this step" in m.value]
    (line,) = links
    step_link, tab_link = re.findall(r"\]\((\?[^)]*)\)", line)
    query = dict(urllib.parse.parse_qsl(tab_link[1:]))
    assert query["tab"] == "qk" and query["notes.step"] == "3" and query["layer"] == str(LAYER)
    assert dict(urllib.parse.parse_qsl(step_link[1:]))["tab"] == "notes"
    at.button(key="notes_explore").click()
    ok(at.run())
    s = app_state(at)
    assert (s.tab, s.layer, s.head, s.text) == ("qk", LAYER, HEAD, TEXT)
    assert at.selectbox(key="qk_query").value == 2  # the notes' token is the query there
    assert "qk_scores" in charts(at)


# ---- the sampling module on its own -----------------------------------------------------------------------------

def test_sampling_distribution_and_picks():
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, 3.0])
    greedy = int(logits.argmax())
    assert sampling.distribution(logits, 0.0).tolist() == [0, 0, 0, 0, 0, 1]
    for seed in range(20):  # temperature → 0 equals greedy; a seed repeats its pick
        assert sampling.choose(logits, 1e-4, None, torch.Generator().manual_seed(seed)) == greedy
        a = sampling.choose(logits, 1.3, 3, torch.Generator().manual_seed(seed), top_p=0.8)
        assert a == sampling.choose(logits, 1.3, 3, torch.Generator().manual_seed(seed), top_p=0.8)
        assert a == sampled(logits, 1.3, 3, 0.8, seed)
    p = sampling.distribution(logits, 1.0, top_k=2)
    assert (p > 0).sum() == 2 and abs(float(p.sum()) - 1) < 1e-12
    full = torch.softmax(logits.double(), -1)
    p = sampling.distribution(logits, 1.0, top_p=0.5)  # the top token alone holds 0.59 ≥ 0.5
    assert p.tolist() == [0, 0, 0, 0, 0, 1] and full.max() > 0.5
    p = sampling.distribution(logits, 1.0, top_p=0.8)
    assert (p > 0).sum() == 2
    with pytest.raises(engine.EngineError, match="top_p"):
        sampling.check(1.0, None, 0.0, 6)
    with pytest.raises(engine.EngineError, match="temperature"):
        sampling.check(-1.0, None, None, 6)


def test_next_token_numbers(smollm, minilm):
    trace = smollm.run(TEXT)
    nt = analysis.next_token(smollm, trace, -1, 0.7, 20, 0.95, seed=5)
    assert nt.picked == sampled(trace.logits_at(-1), 0.7, 20, 0.95, 5)
    assert 1 <= nt.kept <= 20 and nt.sampled_probs.sum() <= 1 + 1e-9
    assert analysis.next_token(minilm, minilm.run(TEXT), -1, 1.0) is None
    assert analysis.window(100, 0) == (0, 24) and analysis.window(100, 99) == (76, 100)
    assert analysis.window(100, 50) == (38, 62) and analysis.window(10, 5) == (0, 10)


@pytest.mark.parametrize("model", MODELS)
def test_markup_in_the_sentence_stays_literal_on_every_step(model):
    """The robustness suite's markup (HTML, Markdown, LaTeX, Streamlit directives) as the sentence, the chosen
    token inside it: no step renders any of it, in Markdown or in a figure."""
    from test_robustness import MARKUP, figure_strings, markdown_sources

    for step in range(1, 13):
        at = ok(start(model=model, text=MARKUP, tab="notes", layer=1, head=1, **{"notes.step": step, "notes.token": 3}))
        assert step_of(at) == step and int(at.selectbox(key="notes_token").value) == 3
        assert not at.latex
        for _, source in markdown_sources(at):
            plain = re.sub(r"\\.|&nbsp;", "", source)
            assert not re.search(r"[<>$~^]", plain), (step, source)
        for key, fig in charts(at).items():
            for text in figure_strings(fig):
                rest = re.sub(r"<br>|<extra></extra>|%\{[^}]*\}", "", text)
                assert not re.search(r"[<>$]", rest), (step, key, text)
