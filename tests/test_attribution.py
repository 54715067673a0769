"""Logit attribution, query·key attribution and information-flow shares, each number computed again here from the
trace and the weights by the definitions written out (forward through each norm, no read-out vectors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import engine
from engine.analysis.flow import flow_contributions, flow_route
from engine.analysis.frozen_norms import check_linear
from tests.test_parity import tiny

SENTENCE = "The capital of France is Paris, and the capital of Germany is"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    return {kind: tiny(kind, tmp_path_factory.mktemp(kind))[1] for kind in ("gpt2", "llama", "bert")}


@pytest.fixture(scope="module")
def smollm_trace(smollm):
    return smollm.run(SENTENCE)


def close(a: float, b: float, scale: float, rel: float = 1e-4) -> bool:
    return abs(a - b) <= rel * max(abs(b), scale)


# ---- the final norm with its scale frozen, written out ------------------------------------------------------

def frozen_final(trace: engine.Trace, position: int, part: torch.Tensor) -> torch.Tensor:
    """part [..., d_model] through the final norm with the scale of `position` frozen (no bias)."""
    cfg, ln = trace.config, trace.weights.ln_final
    x = trace["resid_post", cfg.n_layers - 1][position].double()
    part = part.double()
    if cfg.norm == "rmsnorm":
        return part / torch.sqrt((x**2).mean() + cfg.norm_eps) * ln.w.double()
    centred = part - part.mean(-1, keepdim=True)
    return centred / torch.sqrt(((x - x.mean()) ** 2).mean() + cfg.norm_eps) * ln.w.double()


def direction(trace: engine.Trace, target: int, baseline: int | None) -> torch.Tensor:
    W_U = trace.weights.unembed.W_U.double()
    return W_U[:, target] - (W_U[:, baseline] if baseline is not None else 0)


def check_logit_attribution(model: engine.Model, trace: engine.Trace, position: int, target: int,
                            baseline: int | None) -> engine.LogitAttribution:
    a = engine.logit_attribution(model, trace, position, target, baseline)
    cfg, w = trace.config, trace.weights
    d = direction(trace, target, baseline)
    scale = float(np.abs(a.heads).sum() + np.abs(a.mlps).sum() + abs(a.embed) + abs(a.bias))
    logits = trace.logits_at(position).double()
    actual = float(logits[target] - (logits[baseline] if baseline is not None else 0))
    assert close(a.actual, actual, scale)
    assert close(a.total, a.actual, scale)
    assert close(a.total, a.heads.sum() + a.mlps.sum() + a.embed + a.bias, scale)
    for layer in range(cfg.n_layers):
        head_out = trace["head_out", layer][:, position]  # [n_heads, d_model]
        expected = frozen_final(trace, position, head_out) @ d
        assert np.allclose(a.heads[layer], expected.numpy(), rtol=1e-4, atol=1e-4 * scale)
        mlp = frozen_final(trace, position, trace["mlp_out", layer][position]) @ d
        assert close(a.mlps[layer], float(mlp), scale)
        pattern, v = trace["pattern", layer][:, position].double(), trace["v", layer].double()  # [H, n], [H, n, d]
        by_key = pattern[:, :, None] * torch.einsum("hne,hed->hnd", v, w.blocks[layer].attn.W_O.double())
        by_key = by_key * trace.head_mask[layer].double()[:, None, None]  # a switched-off head adds nothing
        expected = frozen_final(trace, position, by_key) @ d  # [n_heads, n]
        assert np.allclose(a.heads_by_source[layer], expected.numpy(), rtol=1e-4, atol=1e-4 * scale)
    embed = frozen_final(trace, position, trace["resid_pre", 0][position]) @ d
    assert close(a.embed, float(embed), scale)
    assert np.allclose(a.heads_by_source.sum(-1), a.heads, atol=1e-4 * scale)
    if trace.causal:
        assert (a.heads_by_source[:, :, a.position + 1:] == 0).all()
    return a


def test_logit_attribution_smollm(smollm, smollm_trace):
    top = smollm_trace.logits_at(-1).topk(2).indices.tolist()
    a = check_logit_attribution(smollm, smollm_trace, -1, top[0], top[1])
    assert a.actual > 0 and a.bias == 0.0  # SmolLM2 has no bias anywhere
    check_logit_attribution(smollm, smollm_trace, 4, top[1], None)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_logit_attribution_tiny(tiny_models, kind):
    model = tiny_models[kind]
    trace = model.run("the cat sat on the mat and then the cat")
    for position, target, baseline in ((0, 5, None), (trace.n_tokens - 1, 17, 300), (3, 1000, 2)):
        a = check_logit_attribution(model, trace, position, target, baseline)
        if kind == "gpt2":
            assert a.bias != 0.0  # b_O, the final LayerNorm's bias


def test_logit_attribution_switched_off_head(smollm):
    trace = smollm.run(SENTENCE, head_mask=smollm.head_mask_without([(20, 3)]))
    a = check_logit_attribution(smollm, trace, -1, 100, 200)
    assert a.heads[20, 3] == 0 and (a.heads_by_source[20, 3] == 0).all()


def test_logit_attribution_refusals(smollm, smollm_trace, minilm, tiny_models):
    with pytest.raises(engine.InputError, match="outside"):
        engine.logit_attribution(smollm, smollm_trace, smollm_trace.n_tokens, 5)
    with pytest.raises(engine.InputError, match="vocabulary"):
        engine.logit_attribution(smollm, smollm_trace, 0, smollm.config.d_vocab)
    with pytest.raises(engine.EngineError, match="no language-model head"):
        engine.logit_attribution(minilm, minilm.run("a test"), 0, 5)
    bert = tiny_models["bert"]
    with pytest.raises(engine.EngineError):
        engine.logit_attribution(bert, bert.run("a test"), 0, 5)


def test_unhandled_config_fields_are_refused(smollm):
    """A field a newer family adds, set away from its default, is refused rather than ignored."""
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Newer(engine.ModelConfig):
        final_logit_softcap: float = 0.0

    cfg = Newer(**smollm.config.to_dict())
    check_linear(cfg, "x")  # at its default: fine
    with pytest.raises(engine.EngineError, match="final_logit_softcap=30.0"):
        check_linear(dataclasses.replace(cfg, final_logit_softcap=30.0), "Logit attribution")


# ---- query·key attribution -----------------------------------------------------------------------------

def rotate(x: torch.Tensor, position: int, cfg: engine.ModelConfig) -> torch.Tensor:
    """Llama's rotary embedding of x [..., d_head] at one position, written out."""
    half = cfg.d_head // 2
    freq = cfg.rope_theta ** (-torch.arange(half, dtype=torch.float64) * 2 / cfg.d_head)
    angle = position * freq
    cos, sin = torch.cat([angle.cos(), angle.cos()]), torch.cat([angle.sin(), angle.sin()])
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


def check_qk(model: engine.Model, trace: engine.Trace, layer: int, head: int, query: int, key: int
             ) -> engine.QKAttribution:
    cfg = trace.config
    got = engine.qk_attribution(model, trace, layer, head, query, key)
    score = float(trace["scores", layer, head][query, key])
    scale = float(np.abs(got.terms).sum())
    assert close(got.score, score, scale)
    assert close(float(got.terms.sum()), score, scale)
    assert got.terms.shape == (len(got.parts), len(got.parts))
    assert got.parts[:2] == ("embed", "bias") and len(got.parts) == 2 + layer * (cfg.n_heads + 1)
    if cfg.norm_placement == "pre" and layer > 0:  # one key part written out: head (layer-1).0 at the key
        attn, ln = trace.weights.blocks[layer].attn, trace.weights.blocks[layer].ln1
        x = trace["resid_pre", layer][key].double()
        part = trace["head_out", layer - 1][0, key].double()
        if cfg.norm == "rmsnorm":
            normed = part / torch.sqrt((x**2).mean() + cfg.norm_eps) * ln.w.double()
        else:
            normed = (part - part.mean()) / torch.sqrt(((x - x.mean()) ** 2).mean() + cfg.norm_eps) * ln.w.double()
        k_part = normed @ attn.W_K[head // cfg.kv_group].double()
        if cfg.positions == "rotary":
            k_part = rotate(k_part, key, cfg)
        q = trace["q", layer][head, query].double()
        expected = float(q @ k_part) / math.sqrt(cfg.d_head)
        assert close(float(got.key_side[got.parts.index(f"{layer - 1}.0")]), expected, scale)
    return got


@pytest.mark.parametrize("layer, head, query, key", [(0, 0, 5, 2), (18, 6, 12, 3), (29, 8, 12, 12), (7, 2, 3, 0)])
def test_qk_attribution_smollm(smollm, smollm_trace, layer, head, query, key):
    check_qk(smollm, smollm_trace, layer, head, query, key)


@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert"])
def test_qk_attribution_tiny(tiny_models, kind):
    model = tiny_models[kind]
    trace = model.run("the cat sat on the mat and then the cat")
    n = trace.n_tokens
    for layer, head, query, key in ((0, 1, n - 1, 2), (1, 0, 4, 4), (2, 3, n - 2, 0), (2, 1, 3, n - 1)):
        check_qk(model, trace, layer, head, query, key)


def test_qk_attribution_minilm(minilm):
    trace = minilm.run("the river bank was muddy after the rain")
    for layer, head, query, key in ((0, 0, 1, 3), (3, 5, 4, 7), (5, 11, 0, 2)):
        check_qk(minilm, trace, layer, head, query, key)


# ---- flow shares -------------------------------------------------------------------------------------------

def flow_by_rule(trace: engine.Trace, layer: int, query: int) -> tuple[np.ndarray, float, float, float, float]:
    """(attn [H, n], attn_residual, attn_bias, mlp, mlp_residual) at one query, the rule written out in loops."""
    w = trace.weights.blocks[layer]
    resid_pre = trace["resid_pre", layer][query].double()
    whole = resid_pre + trace["attn_out", layer][query].double()
    pattern, v = trace["pattern", layer].double(), trace["v", layer].double()
    on = trace.head_mask[layer]
    n, H = trace.n_tokens, trace.config.n_heads

    def proximity(total, part):
        return max(0.0, float(total.abs().sum() - (total - part).abs().sum()))

    heads = np.zeros((H, n))
    for h in range(H):
        for j in range(n):
            part = pattern[h, query, j] * (v[h, j] @ w.attn.W_O[h].double()) * float(on[h])
            heads[h, j] = proximity(whole, part)
    residual = proximity(whole, resid_pre)
    bias = proximity(whole, w.attn.b_O.double()) if w.attn.b_O is not None else 0.0
    total = heads.sum() + residual + bias
    mid = trace["resid_mid", layer][query].double()  # post-norm: ln1 of the attention's sum
    mlp_out = trace["mlp_out", layer][query].double()
    mlp_whole = mid + mlp_out
    mlp, mlp_res = proximity(mlp_whole, mlp_out), proximity(mlp_whole, mid)
    return heads / total, residual / total, bias / total, mlp / (mlp + mlp_res), mlp_res / (mlp + mlp_res)


def check_flow(model: engine.Model, trace: engine.Trace, layer: int) -> None:
    f = flow_contributions(model, trace, layer)
    assert f.attn.shape == (trace.config.n_heads, trace.n_tokens, trace.n_tokens)
    sums = f.attn.sum((0, 2)) + f.attn_residual + f.attn_bias
    assert np.allclose(sums, 1, atol=1e-5)
    assert np.allclose(f.mlp + f.mlp_residual, 1, atol=1e-5)
    if trace.weights.blocks[layer].attn.b_O is None:
        assert (f.attn_bias == 0).all()
        assert np.allclose(f.attn.sum((0, 2)) + f.attn_residual, 1, atol=1e-5)
    if trace.causal:
        assert (np.triu(f.attn, 1) == 0).all()  # masked keys: α = 0, no part
    for query in (0, trace.n_tokens // 2, trace.n_tokens - 1):
        heads, res, bias, mlp, mlp_res = flow_by_rule(trace, layer, query)
        assert np.allclose(f.attn[:, query], heads, atol=2e-5)
        assert abs(f.attn_residual[query] - res) < 2e-5 and abs(f.attn_bias[query] - bias) < 2e-5
        assert abs(f.mlp[query] - mlp) < 2e-5 and abs(f.mlp_residual[query] - mlp_res) < 2e-5


@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert"])
def test_flow_tiny(tiny_models, kind):
    model = tiny_models[kind]
    trace = model.run("the cat sat on the mat and then the cat")
    for layer in range(model.config.n_layers):
        check_flow(model, trace, layer)


def test_flow_smollm(smollm, smollm_trace):
    for layer in (0, 15, 29):
        check_flow(smollm, smollm_trace, layer)


def test_flow_rows_and_switched_off(smollm):
    trace = smollm.run(SENTENCE, head_mask=smollm.head_mask_without([(3, 1)]))
    whole = flow_contributions(smollm, trace, 3)
    part = flow_contributions(smollm, trace, 3, rows=[7, 2])
    assert part.rows == (2, 7)
    assert np.allclose(part.attn, whole.attn[:, [2, 7]], atol=1e-6)
    assert (whole.attn[1] == 0).all()


def test_route(smollm, smollm_trace):
    threshold = 0.05
    route = flow_route(smollm, smollm_trace, -1, threshold)
    last = smollm_trace.n_tokens - 1
    assert route.edges and all(e.share >= threshold for e in route.edges)
    on_route = {(2 * smollm.config.n_layers, last)}  # every edge writes into a node already on the route
    for e in route.edges:
        src, dst = e.levels
        assert (dst, e.query) in on_route
        on_route.add((src, e.key))
    for e in route.head_edges()[:5]:  # the shares are the layer's full shares
        full = flow_contributions(smollm, smollm_trace, e.layer)
        assert abs(full.attn[e.head, e.query, e.key] - e.share) < 1e-6
    with pytest.raises(engine.InputError):
        flow_route(smollm, smollm_trace, -1, 0.0)
