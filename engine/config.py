"""ModelConfig: one description that drives the forward pass for every architecture."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal


@dataclass(frozen=True)
class ModelConfig:
    """Shape and wiring of a transformer, independent of where its weights came from."""

    name: str
    family: Literal["gpt2", "llama", "bert"]
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
    mlp: Literal["gelu", "swiglu"]
    act: Literal["gelu", "gelu_new", "silu"]
    rope_theta: float = 10_000.0
    n_token_types: int = 0  # BERT's segment embeddings; 0 = none
    has_lm_head: bool = True  # False for an encoder checkpoint without a masked-LM head
    lm_head_transform: bool = False  # BERT's MLM head: dense + act + LayerNorm before the unembedding
    eos_token_ids: tuple[int, ...] = ()  # generation stops after one of these

    @property
    def kv_group(self) -> int:
        """How many query heads share one key/value head."""
        return self.n_heads // self.n_kv_heads

    def to_dict(self) -> dict:
        return asdict(self)
