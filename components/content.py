"""Words for the page that are not tied to one view: model descriptions, preset sentences, the notes' GPT-3
figures, and short explanations that several views share. The engine returns numbers; sentences live here."""

from __future__ import annotations

from engine.analysis.params import ConfigCounts
from engine.config import ModelConfig

MODEL_DESCRIPTIONS = {
    "smollm2-135m": "SmolLM2-135M-Instruct, causal decoder, offline",
    "minilm-l6": "MiniLM-L6 (all-MiniLM-L6-v2), bidirectional encoder, offline",
}

# Preset sentences from the explanation, with the context written before the word a causal model must read.
SENTENCES: dict[str, tuple[str, str]] = {  # id -> (label, sentence)
    "creature": ("Fluffy blue creature", "a fluffy blue creature roamed the verdant forest"),
    "eiffel": ("Eiffel tower", "Near the Eiffel tower in Paris, the tourist bought a small model of the tower"),
    "mole_animal": ("mole: animal", "In the garden, the small furry animal dug a tunnel: it was a mole"),
    "mole_chemistry": ("mole: chemistry",
                       "In chemistry, the amount of a substance is measured in units called the mole"),
    "mole_skin": ("mole: skin mark", "The dermatologist examined the dark spot on his skin: it was a mole"),
    "paris": ("Capital of France", "The capital of France is"),
}
DEFAULT_SENTENCE = SENTENCES["creature"][1]

# One word in several sentences, each labelled with its sense.
SENSE_PRESETS: dict[str, dict] = {
    "mole": {"word": "mole", "sentences": [
        ("animal", "The gardener trapped the burrowing mole"),
        ("animal", "Under the lawn lives a small furry burrowing animal, the mole"),
        ("chemistry", "In chemistry, the amount of a substance is measured in units called the mole"),
        ("chemistry", "The chemist weighed the compound and calculated the number of atoms in one mole"),
        ("skin", "The dermatologist examined the dark spot on his skin, a mole"),
    ]},
    "bank": {"word": "bank", "sentences": [
        ("river", "We had a picnic on the grass beside the river, on the bank"),
        ("river", "The fisherman cast his line from the muddy river bank"),
        ("money", "She deposited her paycheck and savings at the bank"),
        ("money", "To get a mortgage loan, he went to the bank"),
    ]},
    "tower": {"word": "tower", "sentences": [
        ("landmark", "In Paris, tourists climbed to the top of the Eiffel tower"),
        ("landmark", "The famous iron landmark of Paris is the Eiffel tower"),
        ("computer", "He installed a new graphics card inside his desktop computer tower"),
        ("miniature", "On my desk sits a tiny plastic souvenir, a miniature Eiffel tower"),
    ]},
}



def _sense(preset: str, index: int) -> tuple[str, str]:
    return SENSE_PRESETS[preset]["sentences"][index]


# Two contexts of one word, for the Compare view: the Word senses sentences, so both views tell one story.
COMPARE_PRESETS: dict[str, dict] = {
    "mole_chemistry": {"label": "“mole”: animal vs chemistry", "word": "mole",
                       "a": _sense("mole", 0), "b": _sense("mole", 2)},
    "mole_skin": {"label": "“mole”: animal vs skin mark", "word": "mole",
                  "a": _sense("mole", 0), "b": _sense("mole", 4)},
    "bank": {"label": "“bank”: river vs money", "word": "bank", "a": _sense("bank", 0), "b": _sense("bank", 2)},
}

# The patching effects, as the Compare view defines them (engine.analysis.compare computes them).
EFFECTS = {"gap": "gap closed", "logprob": "Δ log p"}
EFFECT_DEFINITIONS = {
    "gap": "**(a) gap closed** in the final-layer representation of B's target: "
           "(cos(B_patched, A) − cos(B, A)) / (1 − cos(B, A)), each vector the target's output of the last block "
           "(resid_post). 0: the patch changed nothing; 1: B's target now points where A's does; below 0: further "
           "away.",
    "logprob": "**(b) Δ log p**: the change in B's next-token log-probability of the followed token after B's "
               "target, log p_patched(token) − log p(token), in nats.",
}
NO_LOGPROB = ("{name} is a bidirectional encoder without a language-model head: it predicts no next token, so only "
              "(a) is measured here.")


# The notes' GPT-3 figures: its configuration, and the published total.
GPT3_NAME = "GPT-3 175B"
GPT3 = ConfigCounts(d_model=12_288, d_head=128, n_heads=96, n_layers=96, d_vocab=50_257, n_ctx=2_048)
GPT3_TOTAL_QUOTED = 175_000_000_000


def layer_names(n_layers: int) -> list[str]:
    """Names of the n_layers + 1 points of the residual stream: 'embedding', 'after block 0', ..."""
    return ["embedding"] + [f"after block {layer}" for layer in range(n_layers)]


def post_norm_note(config: ModelConfig, output_norm: bool = False) -> str:
    """Empty for plain pre-norm models; otherwise how this family's block changes what Δe means: post-norm (BERT),
    a norm on the attention's output before it is added (Gemma 2/3, OLMo 2: output_norm, read from the weights),
    attention and MLP in parallel (GPT-NeoX, GPT-J)."""
    notes = []
    if config.norm_placement == "post":
        notes.append("This model is post-norm (BERT): each block adds Δe to the residual stream and then applies "
                     "LayerNorm, resid_mid = LN(resid_pre + attn_out); the deltas shown are added before that norm.")
    if output_norm:
        notes.append("This model norms the attention's output before adding it (RMSNorm after attention): the "
                     "heads' Δe shown here sum to what goes into that norm, not to what is added.")
    if config.parallel:
        notes.append("Attention and MLP run in parallel here: both read resid_pre, so the MLP never sees this Δe "
                     "in the same block (resid_mid is only the partial sum resid_pre + attn_out).")
    return " ".join(notes)


def attention_note(config: ModelConfig, layer: int) -> str:
    """Empty for plain softmax(q·k/√d_head) attention; otherwise what this model does differently in a layer."""
    notes = []
    if config.window(layer):
        notes.append(f"Layer {layer} attends within a sliding window: each query sees only the last "
                     f"{config.window(layer)} positions (itself included); keys further back are masked.")
    if config.attn_scale:
        notes.append(f"Scores are q·k × {config.attn_scale:.4g} (this model's scale), not q·k / √d_head.")
    if config.attn_softcap:
        notes.append(f"Scores are soft-capped: {config.attn_softcap:g} · tanh(score / {config.attn_softcap:g}), "
                     f"so they lie within ±{config.attn_softcap:g}.")
    if config.qk_norm:
        notes.append("q and k are RMS-normed (before rotary) as the model does; the vectors shown are after it.")
    return " ".join(notes)


def lens_note(config: ModelConfig) -> str:
    """How the logit lens decodes for this model."""
    if config.has_lm_head:
        return "Decoded through the model's final norm and its unembedding W_U (the logit lens)."
    return (f"{config.name} has no language-model head: vectors are decoded through its tied input "
            "embedding W_E (logits = vector · W_Eᵀ, no final norm), a nearest-token reading.")


# Head roles (engine/analysis/roles.py): the names a visitor reads, and what each role's target keys are.
ROLE_LABELS = {"previous_token": "previous token", "duplicate_token": "duplicate token", "induction": "induction",
               "first_token": "first token", "self": "self"}
ROLE_TARGETS = {
    "previous_token": "the key just before the query: {i − 1}, for i ≥ 1",
    "duplicate_token": "earlier copies of the query's token: {j < i : id_j = id_i}",
    "induction": "the token after an earlier copy of the query's token: {j + 1 : j + 1 < i and id_j = id_i}",
    "first_token": "the first key: {0}, for i ≥ 1",
    "self": "the query itself: {i}",
}
SINK_NOTE = ("Why the first token can take most of α and little of the output: many heads park their attention on "
             "the first token when nothing else in the text matches (an attention sink), and that token's value "
             "vector, after the head's output map, is tiny — so α_i0 is large while α_i0 · ‖v_0 W_O‖ is small.")
