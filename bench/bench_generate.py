"""Generation: our generate (key/value cache, a full trace recorded) against Hugging Face's
`generate(max_new_tokens=64, output_attentions=True, return_dict_in_generate=True)` with eager attention, on
the same prompt ids, greedy; then our time per new token at longer prompts (the difference between writing 33
tokens and writing 1, so the prompt's pass is not counted; the trace's assembly at the end is, in part).

    .venv/bin/python bench/bench_generate.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from bench_engine import hf_model, token_ids  # noqa: E402

import engine  # noqa: E402


def ours(model: engine.Model, ids: list[int], n_new: int) -> tuple[float, list[int]]:
    text = model.tokenizer.decode(ids)
    start = time.perf_counter()
    gen = model.generate(text, max_new_tokens=n_new)
    return time.perf_counter() - start, list(gen.token_ids)


def theirs(hf, ids: list[int], n_new: int) -> tuple[float, list[int]]:
    start = time.perf_counter()
    with torch.no_grad():
        out = hf.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                          max_new_tokens=n_new, do_sample=False, output_attentions=True, return_dict_in_generate=True,
                          pad_token_id=hf.config.eos_token_id, eos_token_id=None)
    return time.perf_counter() - start, out.sequences[0].tolist()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    model = engine.load("smollm2-135m", device=device)
    hf = hf_model("smollm2-135m", device)
    ids = token_ids(model, 64)
    assert model.tokenize(model.tokenizer.decode(ids))[0] == ids
    ours(model, ids[:8], 4), theirs(hf, ids[:8], 4)  # warm-up
    mine, hfs = [], []
    for _ in range(args.repeats):  # interleaved
        t, a = ours(model, ids, args.new)
        mine.append(t)
        t, b = theirs(hf, ids, args.new)
        hfs.append(t)
    print(f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f}; "
          f"same tokens: {a[:len(b)] == b} ({len(a) - len(ids)} new)\n")
    m, h = statistics.median(mine), statistics.median(hfs)
    print("| what | ours s | Hugging Face s | ours / HF |\n|---|---:|---:|---:|")
    print(f"| {args.new} new tokens after a 64-token prompt (greedy) | {m:.2f} | {h:.2f} | {m / h:.2f} |\n")
    print("| prompt tokens | ms per new token (ours: 33 new minus 1 new, over 32) |\n|---:|---:|")
    for n in (64, 512, 2048):
        prompt = token_ids(model, n)
        one = statistics.median(ours(model, prompt, 1)[0] for _ in range(args.repeats))
        many = statistics.median(ours(model, prompt, 33)[0] for _ in range(args.repeats))
        print(f"| {n:,} | {1000 * (many - one) / 32:.1f} |")


if __name__ == "__main__":
    main()
