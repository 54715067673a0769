"""ModelConfig: one description that drives the forward pass for every architecture."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal


@dataclass(frozen=True)
class ModelConfig:
    """Shape and wiring of a transformer, independent of where its weights came from."""

    name: str
    family: str  # the converter's name: gpt2, llama, bert, gpt_neox, gptj, gpt_neo, opt, qwen2, qwen3, mistral,
    # gemma, gemma2, gemma3_text, phi3, olmo2 (engine.convert.FAMILIES)
    n_layers: int
    n_heads: int
    n_kv_heads: int  # < n_heads when query heads share key/value heads (grouped-query attention)
    d_model: int
    d_head: int
    d_mlp: int
    d_vocab: int
    max_tokens: int  # context length the model was trained for
    causal: bool  # the model's native mask
    norm: Literal["layernorm", "rmsnorm"]
    norm_placement: Literal["pre", "post"]  # pre: GPT-2, Llama; post: BERT (norm after each sum)
    norm_eps: float
    positions: Literal["learned", "rotary"]
    mlp: Literal["gelu", "relu", "swiglu", "geglu"]  # gelu/relu: act(x W_in) W_out; swiglu/geglu: gated
    act: Literal["gelu", "gelu_new", "silu", "relu"]
    rope_theta: float = 10_000.0
    n_token_types: int = 0  # BERT's segment embeddings; 0 = none
    has_lm_head: bool = True  # False for an encoder checkpoint without a masked-LM head
    lm_head_transform: bool = False  # BERT's MLM head: dense + act + LayerNorm before the unembedding
    eos_token_ids: tuple[int, ...] = ()  # generation stops after one of these
    # ---- what other families change (the defaults are GPT-2's / Llama's and cost nothing) -------------------
    parallel: bool = False  # attention and MLP both read resid_pre (GPT-NeoX, GPT-J): resid_mid is not an input
    rotary_dim: int = 0  # rotary on the first rotary_dim dimensions of each head; 0 = all of d_head
    rotary_interleaved: bool = False  # rotate pairs (2i, 2i+1) (GPT-J) instead of (i, i + rotary_dim/2)
    layer_rope_theta: tuple[float, ...] = ()  # per-layer rotary base (Gemma 3: local vs global); () = rope_theta
    windows: tuple[int, ...] = ()  # per layer: a query sees only keys with q - k < window (|q - k| when not
    # causal); 0 = no window
    attn_scale: float = 0.0  # q·k is multiplied by it; 0 = 1/√d_head (GPT-Neo: 1; Gemma: query_pre_attn_scalar^-½)
    attn_softcap: float = 0.0  # scores = cap · tanh(scores / cap) before the mask (Gemma 2); 0 = none
    final_softcap: float = 0.0  # logits = cap · tanh(logits / cap) (Gemma 2); 0 = none
    embed_scale: float = 1.0  # the token embedding is multiplied by this (Gemma: √d_model)
    qk_norm: Literal["", "head", "all"] = ""  # RMSNorm of q and k before rotary: per head (Qwen3, Gemma 3) or
    # over all heads of the projection at once (OLMo 2); "" = none

    @property
    def kv_group(self) -> int:
        """How many query heads share one key/value head."""
        return self.n_heads // self.n_kv_heads

    @property
    def gated(self) -> bool:
        """True for a gated MLP (SwiGLU, GeGLU): three matrices."""
        return self.mlp in ("swiglu", "geglu")

    def window(self, layer: int) -> int:
        """The layer's attention window (0 = every earlier position)."""
        return self.windows[layer] if self.windows else 0

    def scale(self) -> float:
        """What q·k is multiplied by before the softmax."""
        return self.attn_scale or self.d_head ** -0.5

    def to_dict(self) -> dict:
        return asdict(self)
