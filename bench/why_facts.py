"""The SmolLM2 facts the README's "Why" section quotes, measured with the engine (CPU, a few minutes):

1. the top five heads by direct logit attribution after the last token of a preset sentence (target: the top
   prediction, baseline: the second);
2. the largest key-side and query-side parts of head 18.6's scores at the head-role probe's induction positions
   (query i in the second copy, key: the token after the earlier copy of i's token), averaged over them;
3. the route from the last token of a preset sentence at a threshold, and the ablation check: for its top ten
   head edges, the change of the logit difference when that head is switched off.

    .venv/bin/python bench/why_facts.py
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

import engine  # noqa: E402
from components.content import SENTENCES  # noqa: E402
from engine.analysis.attribution import logit_difference  # noqa: E402
from engine.analysis.roles import head_roles  # noqa: E402

SENTENCE = SENTENCES["paris"][1]  # "The capital of France is"
THRESHOLD = 0.04
MOVES = 0.1  # as components/views/why.py


def main() -> None:
    model = engine.load("smollm2-135m", device="cpu")
    trace = model.run(SENTENCE)
    last = trace.n_tokens - 1
    target, baseline = trace.logits_at(last).topk(2).indices.tolist()
    names = model.readable([target, baseline])
    a = engine.logit_attribution(model, trace, last, target, baseline)
    print(f"1. “{SENTENCE}”: logit({names[0]!r}) − logit({names[1]!r}) = {a.actual:.3f} (parts: {a.total:.3f})")
    order = np.argsort(-np.abs(a.heads), axis=None)[:5]
    for flat in order:
        layer, head = np.unravel_index(flat, a.heads.shape)
        print(f"   head {layer}.{head}: {a.heads[layer, head]:+.3f}")
    print(f"   MLPs together {a.mlps.sum():+.3f}, heads together {a.heads.sum():+.3f}, embeddings {a.embed:+.3f}")

    roles = head_roles(model)
    probe, probe_trace = roles.probe, roles.trace
    length = probe.first.stop - probe.first.start
    queries = range(probe.second.start, probe.second.stop)
    got = [engine.qk_attribution(model, probe_trace, 18, 6, i, i - length + 1) for i in queries]
    parts = got[0].parts
    key_side = np.mean([q.key_side for q in got], 0)
    query_side = np.mean([q.query_side for q in got], 0)
    score = np.mean([q.score for q in got])
    print(f"2. head 18.6 at {len(got)} induction positions: mean score {score:.2f}")
    for name, side in (("key side", key_side), ("query side", query_side)):
        top = np.argsort(-np.abs(side))[:3]
        print(f"   {name}: " + ", ".join(f"{parts[i]} {side[i]:+.2f}" for i in top))

    text = SENTENCE
    trace = model.run(text)
    last = trace.n_tokens - 1
    target, baseline = trace.logits_at(last).topk(2).indices.tolist()
    names = model.readable([target, baseline])
    route = engine.flow_route(model, trace, last, THRESHOLD)
    heads = route.head_edges()
    base = logit_difference(trace, last, target, baseline)
    print(f"3. “{text}”, threshold {THRESHOLD}: {len(route.edges)} edges, {len(heads)} through heads; "
          f"logit({names[0]!r}) − logit({names[1]!r}) = {base:.3f}")
    moved = 0
    for e in heads[:10]:
        off = model.run(text, head_mask=model.head_mask_without([(e.layer, e.head)]))
        change = logit_difference(off, last, target, baseline) - base
        moved += abs(change) > MOVES
        print(f"   head {e.layer}.{e.head} key {e.key} {trace.tokens[e.key]!r} → query {e.query}: share {e.share:.3f},"
              f" change when off {change:+.3f}")
    print(f"   {moved} of {min(10, len(heads))} move it by more than {MOVES}")


if __name__ == "__main__":
    main()
