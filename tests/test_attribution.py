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
from tests.families import CASES, build
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


def through_post(trace: engine.Trace, layer: int, position: int, part: torch.Tensor) -> torch.Tensor:
    """part [..., d_model] of attention's sum at `position` through the layer's output norm (Gemma 2/3, OLMo 2),
    its statistic frozen at the run's sum Σ head_out + b_O there; unchanged without one."""
    cfg, block = trace.config, trace.weights.blocks[layer]
    post = block.ln1_post
    if post is None:
        return part.double()
    x = trace["head_out", layer][:, position].double().sum(0)
    if block.attn.b_O is not None:
        x = x + block.attn.b_O.double()
    assert cfg.norm == "rmsnorm"  # every family with an output norm uses RMSNorm
    return part.double() / torch.sqrt((x**2).mean() + cfg.norm_eps) * post.w.double()


def direction(trace: engine.Trace, target: int, baseline: int | None) -> torch.Tensor:
    W_U = trace.weights.unembed.W_U.double()
    return W_U[:, target] - (W_U[:, baseline] if baseline is not None else 0)


def check_logit_attribution(model: engine.Model, trace: engine.Trace, position: int, target: int,
                            baseline: int | None) -> engine.LogitAttribution:
    a = engine.logit_attribution(model, trace, position, target, baseline)
    cfg, w = trace.config, trace.weights
    d = direction(trace, target, baseline)
    scale = float(np.abs(a.heads).sum() + np.abs(a.mlps).sum() + abs(a.embed) + abs(a.bias))
    u = w.unembed
    logits = trace.resid_final[position].double() @ u.W_U.double()  # before any final soft-cap
    logits = logits if u.b_U is None else logits + u.b_U.double()
    if cfg.final_softcap:  # the run's logits are the capped ones; the attribution is of the logit before the cap
        cap = cfg.final_softcap
        assert torch.allclose(torch.tanh(logits / cap) * cap, trace.logits_at(position).double(), atol=1e-5)
        assert a.final_softcap == cap
    else:
        assert torch.allclose(logits, trace.logits_at(position).double(), atol=1e-4 * float(logits.abs().max()))
    actual = float(logits[target] - (logits[baseline] if baseline is not None else 0))
    assert close(a.actual, actual, scale)
    assert close(a.total, a.actual, scale)
    assert close(a.total, a.heads.sum() + a.mlps.sum() + a.embed + a.bias, scale)
    for layer in range(cfg.n_layers):
        head_out = through_post(trace, layer, position, trace["head_out", layer][:, position])  # [n_heads, d_model]
        expected = frozen_final(trace, position, head_out) @ d
        assert np.allclose(a.heads[layer], expected.numpy(), rtol=1e-4, atol=1e-4 * scale)
        mlp = frozen_final(trace, position, trace["mlp_out", layer][position]) @ d
        assert close(a.mlps[layer], float(mlp), scale)
        pattern, v = trace["pattern", layer][:, position].double(), trace["v", layer].double()  # [H, n], [H, n, d]
        by_key = pattern[:, :, None] * torch.einsum("hne,hed->hnd", v, w.blocks[layer].attn.W_O.double())
        by_key = by_key * trace.head_mask[layer].double()[:, None, None]  # a switched-off head adds nothing
        expected = frozen_final(trace, position, through_post(trace, layer, position, by_key)) @ d  # [n_heads, n]
        assert np.allclose(a.heads_by_source[layer], expected.numpy(), rtol=1e-4, atol=1e-4 * scale)
    embed = frozen_final(trace, position, trace["resid_pre", 0][position]) @ d
    assert close(a.embed, float(embed), scale)
    assert np.allclose(a.heads_by_source.sum(-1), a.heads, atol=1e-4 * scale)
    for layer in range(cfg.n_layers):  # masked keys (causal, outside a window) add exactly 0
        hidden = trace.masked(slice(a.position, a.position + 1), layer)[0].numpy()
        assert (a.heads_by_source[layer][:, hidden] == 0).all()
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
    """A field a later family adds, set away from its default, is refused rather than ignored."""
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Newer(engine.ModelConfig):
        logit_bias_shift: float = 0.0

    cfg = Newer(**smollm.config.to_dict())
    check_linear(cfg, "x")  # at its default: fine
    with pytest.raises(engine.EngineError, match="logit_bias_shift=30.0"):
        check_linear(dataclasses.replace(cfg, logit_bias_shift=30.0), "Logit attribution")


# ---- query·key attribution -----------------------------------------------------------------------------

def rotate(x: torch.Tensor, position: int, cfg: engine.ModelConfig, layer: int = 0) -> torch.Tensor:
    """The rotary embedding of x [..., d_head] at one position, written out: the layer's base, the first r
    dimensions (partial rotary), pairs (i, i + r/2) or (2i, 2i+1) (interleaved, GPT-J)."""
    r = cfg.rotary_dim or cfg.d_head
    theta = cfg.layer_rope_theta[layer] if cfg.layer_rope_theta else cfg.rope_theta
    freq = theta ** (-torch.arange(0, r, 2, dtype=torch.float64) / r)  # [⌈r/2⌉] (an odd r rotates r + 1 dims)
    angle = position * freq
    out = x.clone()
    for i in range(len(freq)):
        a, b = (2 * i, 2 * i + 1) if cfg.rotary_interleaved else (i, i + len(freq))
        c, s = math.cos(angle[i]), math.sin(angle[i])
        out[..., a], out[..., b] = x[..., a] * c - x[..., b] * s, x[..., b] * c + x[..., a] * s
    return out


def score_scale(cfg: engine.ModelConfig) -> float:
    return cfg.attn_scale if cfg.attn_scale else 1 / math.sqrt(cfg.d_head)


def pre_norm(cfg: engine.ModelConfig, x: torch.Tensor, w) -> torch.Tensor:
    """The input norm of a pre-norm block, written out (scale frozen at x itself); none for OLMo 2."""
    if w is None:
        return x
    if cfg.norm == "rmsnorm":
        return x / torch.sqrt((x**2).mean() + cfg.norm_eps) * w.w.double()
    out = (x - x.mean()) / torch.sqrt(((x - x.mean()) ** 2).mean() + cfg.norm_eps) * w.w.double()
    return out if w.b is None else out + w.b.double()


def key_part(trace: engine.Trace, layer: int, head: int, key: int, part: torch.Tensor) -> torch.Tensor:
    """One part [d_model] of resid_pre[layer] at `key` as head `head` sees it: through ln1 (frozen at the key),
    W_K, the k norm (frozen at the run's k there) and the rotation, written out."""
    cfg, block = trace.config, trace.weights.blocks[layer]
    attn, kv = block.attn, head // cfg.kv_group
    x = trace["resid_pre", layer][key].double()
    if block.ln1 is None:  # OLMo 2: no input norm
        normed = part
    elif cfg.norm == "rmsnorm":
        normed = part / torch.sqrt((x**2).mean() + cfg.norm_eps) * block.ln1.w.double()
    else:
        normed = (part - part.mean()) / torch.sqrt(((x - x.mean()) ** 2).mean() + cfg.norm_eps) * block.ln1.w.double()
    k_part = normed @ attn.W_K[kv].double()  # [d_head]
    if cfg.qk_norm:  # the whole k at the key, before its norm: the statistic to freeze
        full = torch.stack([pre_norm(cfg, x, block.ln1) @ attn.W_K[h].double() for h in range(cfg.n_kv_heads)])
        if attn.b_K is not None:
            full = full + attn.b_K.double()
        whole = full[kv] if cfg.qk_norm == "head" else full
        weight = attn.k_norm.w.double().reshape(-1, cfg.d_head)[kv if cfg.qk_norm == "all" else 0]
        k_part = k_part / torch.sqrt((whole**2).mean() + cfg.norm_eps) * weight
    return rotate(k_part, key, cfg, layer) if cfg.positions == "rotary" else k_part


def check_qk(model: engine.Model, trace: engine.Trace, layer: int, head: int, query: int, key: int
             ) -> engine.QKAttribution:
    cfg = trace.config
    got = engine.qk_attribution(model, trace, layer, head, query, key)
    score = float(trace["scores", layer, head][query, key])  # the model's, soft-capped where it caps
    q = trace["q", layer][head, query].double()
    uncapped = float(q @ trace["k", layer][head, key].double()) * score_scale(cfg)
    scale = float(np.abs(got.terms).sum())
    assert close(got.score, score, scale)
    assert close(got.uncapped, uncapped, scale)
    assert close(float(got.terms.sum()), uncapped, scale)
    if cfg.attn_softcap:
        cap = cfg.attn_softcap
        assert got.softcap == cap and abs(cap * math.tanh(float(got.terms.sum()) / cap) - score) < 1e-5
    else:
        assert got.softcap == 0 and close(float(got.terms.sum()), score, scale)
    assert got.masked == bool(trace.masked(slice(query, query + 1), layer)[0, key])
    assert got.terms.shape == (len(got.parts), len(got.parts))
    assert got.parts[:2] == ("embed", "bias") and len(got.parts) == 2 + layer * (cfg.n_heads + 1)
    if cfg.norm_placement == "pre" and layer > 0:  # one key part written out: head (layer-1).0 at the key
        part = through_post(trace, layer - 1, key, trace["head_out", layer - 1][0, key].double())
        expected = float(q @ key_part(trace, layer, head, key, part)) * score_scale(cfg)
        assert close(float(got.key_side[got.parts.index(f"{layer - 1}.0")]), expected, scale)
    if cfg.norm_placement == "pre":  # and the embedding's key part
        part = trace["resid_pre", 0][key].double()
        expected = float(q @ key_part(trace, layer, head, key, part)) * score_scale(cfg)
        assert close(float(got.key_side[0]), expected, scale)
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
    """(attn [H, n], attn_residual, attn_bias, mlp, mlp_residual) at one query, the rule written out in loops.
    A parallel block's one sum resid_pre + attn_out + mlp_out: mlp is mlp_out's share of it, mlp_residual the
    rest's, and the attention parts' shares are divided by that rest (see engine.analysis.flow)."""
    cfg, w = trace.config, trace.weights.blocks[layer]
    resid_pre = trace["resid_pre", layer][query].double()
    mlp_out = trace["mlp_out", layer][query].double()
    whole = resid_pre + trace["attn_out", layer][query].double() + (mlp_out if cfg.parallel else 0)
    pattern, v = trace["pattern", layer].double(), trace["v", layer].double()
    on = trace.head_mask[layer]
    n, H = trace.n_tokens, cfg.n_heads

    def proximity(total, part):
        return max(0.0, float(total.abs().sum() - (total - part).abs().sum()))

    heads = np.zeros((H, n))
    for h in range(H):
        for j in range(n):
            part = pattern[h, query, j] * (v[h, j] @ w.attn.W_O[h].double()) * float(on[h])
            heads[h, j] = proximity(whole, through_post(trace, layer, query, part))
    residual = proximity(whole, resid_pre)
    bias = (proximity(whole, through_post(trace, layer, query, w.attn.b_O.double())) if w.attn.b_O is not None
            else 0.0)
    total = heads.sum() + residual + bias
    if cfg.parallel:
        mlp = proximity(whole, mlp_out)
        everything = total + mlp
        return heads / total, residual / total, bias / total, mlp / everything, 1 - mlp / everything
    mid = trace["resid_mid", layer][query].double()  # post-norm: ln1 of the attention's sum
    mlp_whole = mid + mlp_out
    mlp, mlp_res = proximity(mlp_whole, mlp_out), proximity(mlp_whole, mid)
    return heads / total, residual / total, bias / total, mlp / (mlp + mlp_res), mlp_res / (mlp + mlp_res)


def check_flow(model: engine.Model, trace: engine.Trace, layer: int) -> None:
    f = flow_contributions(model, trace, layer)
    assert f.parallel == trace.config.parallel
    assert f.attn.shape == (trace.config.n_heads, trace.n_tokens, trace.n_tokens)
    sums = f.attn.sum((0, 2)) + f.attn_residual + f.attn_bias
    assert np.allclose(sums, 1, atol=1e-5)
    assert np.allclose(f.mlp + f.mlp_residual, 1, atol=1e-5)
    if trace.weights.blocks[layer].attn.b_O is None:
        assert (f.attn_bias == 0).all()
        assert np.allclose(f.attn.sum((0, 2)) + f.attn_residual, 1, atol=1e-5)
    hidden = trace.masked(slice(None), layer).numpy()  # masked keys (causal, outside a window): α = 0, no part
    assert (f.attn[:, hidden] == 0).all()
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


# ---- every family of tests/families.py ---------------------------------------------------------------------

FAMILY_TEXT = "The quick brown fox jumps over the lazy dog because it was bored"


@pytest.fixture(scope="module")
def family_models(tmp_path_factory):
    """case -> engine model of its tiny random checkpoint, each built once for this module."""
    cache = {}

    def get(case: str) -> engine.Model:
        if case not in cache:
            folder = tmp_path_factory.mktemp(case)
            build(case, folder)
            cache[case] = engine.load(str(folder), device="cpu")
        return cache[case]

    return get


@pytest.mark.parametrize("case", list(CASES))
def test_attribution_every_family(case, family_models):
    model = family_models(case)
    trace = model.run(FAMILY_TEXT)
    cfg, n = model.config, trace.n_tokens
    top = trace.logits_at(n - 1).topk(2).indices.tolist()
    for position, target, baseline in ((n - 1, top[0], top[1]), (4, 17, None), (n - 3, 1000, 2)):
        check_logit_attribution(model, trace, position, target, baseline)
    queries = [(cfg.n_layers - 1, 1, n - 1, 0), (1, cfg.n_heads - 1, n - 2, n - 3), (0, 0, 5, 5), (1, 2, 3, n - 1)]
    windowed = [layer for layer in range(cfg.n_layers) if cfg.window(layer)]
    if windowed:  # a key just inside and one just outside the window
        layer = windowed[-1]
        inside, outside = n - cfg.window(layer), n - 1 - cfg.window(layer)
        queries += [(layer, 1, n - 1, inside), (layer, 1, n - 1, outside)]
        assert not check_qk(model, trace, layer, 1, n - 1, inside).masked
        assert check_qk(model, trace, layer, 1, n - 1, outside).masked
        assert float(trace["pattern", layer, 1][n - 1, outside]) == 0
    for layer, head, query, key in queries:
        check_qk(model, trace, layer, head, query, key)
    for layer in range(cfg.n_layers):
        check_flow(model, trace, layer)
    route = flow_route(model, trace, -1, 0.05)
    assert route.edges and all(e.share >= 0.05 for e in route.edges)
