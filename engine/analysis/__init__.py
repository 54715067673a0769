"""Pure analyses over traces, one job per module; each returns numbers (numpy arrays or small dataclasses).

    deltas       Δe per head, how the heads add up to the attention output, the value down/up factoring
    lens         the logit lens: which tokens a residual-stream vector pushes up and down
    projections  PCA projections of queries and keys, of e -> e + Δe, of a token's path through the layers
    senses       one word in several sentences: its vectors, their similarities, the heads that separate them
    params       parameter counts from a model's weights, or from a configuration alone
    head_stats   per-head summaries of the patterns (entropy, first / previous / self share)
    predict      next-token predictions, and how an intervention changed them
    roles        head roles (previous token, duplicate, induction, first token, self) on a repeated probe
    icl          the in-context learning check: next-token loss on each copy of the probe
    value_weighted  value-weighted attention ‖α_ij v_j W_O[h]‖ per head and per layer (Kobayashi et al., 2020)
    sinks        the first token's share of α and of the value-weighted attention; the pattern without it
    rollout      attention rollout across layers (Abnar & Zuidema, 2020), raw or value-weighted
    frozen_norms norms with their scale frozen at the run's value; the residual stream split into parts
    attribution  direct logit attribution: each head's, MLP's, embedding's and bias's part of a logit difference
    qk_attribution  a head's score as query part × key part of the residual stream
    flow         information-flow shares of each block's parts, and routes from a token down to the input
    compare      two contexts: per-head distance at a target, similarity across layers, patching sweeps
    notes        the guided walk's numbers: one query, a window's dot-product grid, Σ α v, the next token sampled

Nothing here imports Streamlit or Plotly, and nothing here writes a sentence for the page.
"""
