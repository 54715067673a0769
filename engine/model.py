"""Model: converted weights + tokenizer, and `run()` that returns a Trace. Never mutated by a run."""

from __future__ import annotations

import threading

import torch

from . import loading
from .config import ModelConfig
from .convert import config_of, convert
from .errors import InputError, ModelLoadError
from .tokens import readable_tokens
from .trace import Trace
from .transformer import forward, unembed

# Above this many bytes of float32 patterns (all layers), a trace keeps its patterns as float16.
PATTERN_FP16_BYTES = 2 << 30


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA if available, else Apple MPS, else CPU; an explicit choice wins."""
    if device is not None:
        try:
            return torch.device(device)
        except RuntimeError as err:
            raise InputError(f"unknown device {device!r}: {err}") from None
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Model:
    """A loaded model in the uniform layout. `run()` is safe to call from many threads at once."""

    def __init__(self, config: ModelConfig, params: dict[str, torch.Tensor], tokenizer,
                 device: torch.device, source: str = ""):
        self.config = config
        self.params = params
        self.tokenizer = tokenizer
        self.device = device
        self.source = source
        self._tokenizer_lock = threading.Lock()  # Hugging Face's fast tokenizer is one shared Rust object

    @property
    def dtype(self) -> torch.dtype:
        return self.params["embed.W_E"].dtype

    def tokenize(self, text: str, max_tokens: int | None = None) -> tuple[list[int], bool, int]:
        """(token ids, whether the text was cut, token count of the whole text).

        The text is tokenized once and cut here, keeping trailing special tokens (BERT's [SEP]); the shared
        tokenizer is never switched into a truncating mode, so concurrent runs cannot affect each other."""
        if not isinstance(text, str):
            raise InputError(f"text must be a string, not {type(text).__name__}.")
        if not text.strip():
            raise InputError("the text is empty: type a sentence to see its attention.")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise InputError(f"the text holds invalid Unicode (a lone surrogate at position {err.start}).") from None
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise InputError(f"max_tokens must be a positive whole number, not {max_tokens!r}.")
        limit = min(max_tokens or self.config.max_tokens, self.config.max_tokens)
        with self._tokenizer_lock:
            encoded = self.tokenizer(text, verbose=False, return_special_tokens_mask=True)
        ids, special = encoded["input_ids"], encoded["special_tokens_mask"]
        if len(ids) <= limit:
            return ids, False, len(ids)
        n_leading = _leading_ones(special)  # e.g. BERT's [CLS]
        n_trailing = _leading_ones(special[::-1])  # e.g. BERT's final [SEP], kept after a cut
        if limit <= n_leading + n_trailing:
            raise InputError(f"max_tokens={limit} leaves no room for text between {self.config.name}'s "
                             f"{n_leading + n_trailing} special tokens.")
        cut = ids[: limit - n_trailing] + (ids[len(ids) - n_trailing:] if n_trailing else [])
        return cut, True, len(ids)

    def readable(self, token_ids: list[int]) -> list[str]:
        return readable_tokens(self.tokenizer, token_ids)

    def default_head_mask(self) -> torch.Tensor:
        return torch.ones(self.config.n_layers, self.config.n_heads, dtype=torch.bool)

    @torch.inference_mode()
    def run(self, text: str, causal: bool | None = None, head_mask: torch.Tensor | None = None,
            max_tokens: int | None = None) -> Trace:
        """Tokenize and run `text`. causal: None = the model's own mask; head_mask: False = head off."""
        ids, truncated, n_total = self.tokenize(text, max_tokens)
        return self.run_ids(ids, causal=causal, head_mask=head_mask, truncated=truncated, n_tokens_in_text=n_total)

    @torch.inference_mode()
    def run_ids(self, token_ids: list[int], causal: bool | None = None, head_mask: torch.Tensor | None = None,
                truncated: bool = False, n_tokens_in_text: int | None = None) -> Trace:
        cfg = self.config
        if not token_ids:
            raise InputError("no tokens to run.")
        if len(token_ids) > cfg.max_tokens:
            raise InputError(f"{len(token_ids)} tokens exceed {cfg.name}'s context of {cfg.max_tokens}.")
        if head_mask is None:
            head_mask = self.default_head_mask()
        head_mask = torch.as_tensor(head_mask, dtype=torch.bool).cpu()
        if tuple(head_mask.shape) != (cfg.n_layers, cfg.n_heads):
            expected = (cfg.n_layers, cfg.n_heads)
            raise InputError(f"head_mask must have shape {expected}, got {tuple(head_mask.shape)}.")
        causal = cfg.causal if causal is None else bool(causal)
        n = len(token_ids)
        pattern_bytes = cfg.n_layers * cfg.n_heads * n * n * 4
        pattern_dtype = torch.float16 if pattern_bytes > PATTERN_FP16_BYTES else torch.float32
        ids = torch.tensor(token_ids, dtype=torch.long, device=self.device)
        out = forward(self.params, cfg, ids, causal, head_mask, pattern_dtype)
        W_O = [self.params[f"blocks.{layer}.attn.W_O"] for layer in range(cfg.n_layers)]
        b_O = [self.params.get(f"blocks.{layer}.attn.b_O") for layer in range(cfg.n_layers)]
        return Trace(config=cfg, tokens=self.readable(token_ids), token_ids=list(token_ids), logits=out["logits"],
                     resid_final=out["resid_final"], causal=causal, head_mask=head_mask, truncated=truncated,
                     n_tokens_in_text=n_tokens_in_text or n, store=out["store"], W_O=W_O, b_O=b_O)

    @torch.inference_mode()
    def unembed(self, resid: torch.Tensor, final_norm: bool = True) -> torch.Tensor:
        """Logits for residual-stream vectors [..., d_model]. An encoder without an LM head decodes through
        its tied input embedding (W_E), which `has_lm_head` tells the caller."""
        resid = resid.to(self.device, self.dtype)
        if self.config.has_lm_head:
            return unembed(resid, self.params, self.config, final_norm=final_norm)
        return resid @ self.params["embed.W_E"].T

    def n_params(self) -> int:
        """Parameters counted from the actual weights, each shared (tied) tensor once."""
        seen: dict[tuple[int, int], int] = {}
        for t in self.params.values():
            seen[(t.untyped_storage().data_ptr(), t.storage_offset())] = t.numel()
        return sum(seen.values())


def load(name: str = "smollm2-135m", device: str | torch.device | None = None, dtype: torch.dtype | str = "float32",
         progress: loading.Progress | None = None, max_params: int | None = None) -> Model:
    """Load an embedded model ("smollm2-135m", "minilm-l6"), a hub id ("gpt2") or a local folder."""
    progress = progress or (lambda fraction, message: None)
    if not isinstance(name, str) or not name.strip():
        raise ModelLoadError("no model name given: choose smollm2-135m, minilm-l6, a hub id or a folder.")
    name = name.strip()
    dev = pick_device(device)
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
        raise InputError(f"dtype must be a floating-point torch dtype, not {dtype!r}.")
    # Configuration first: an unsupported or too large model is refused before any weights are fetched.
    folder = loading.resolve(name, progress, weights=False)
    hf_config = loading.read_config(folder)
    cfg = config_of(hf_config, name)
    if max_params is not None and estimated_params(cfg) > max_params:
        raise ModelLoadError(f"{name} has about {estimated_params(cfg) / 1e6:,.0f} M parameters, over this "
                             f"server's limit of {max_params / 1e6:,.0f} M. Choose a smaller model.")
    if not loading.has_weights(folder):  # a hub checkpoint whose config alone was fetched
        folder = loading.resolve(name, progress)
    progress(0.7, "reading weights")
    state = loading.read_weights(folder)
    config, params = convert(hf_config, state, name)
    if name in loading.EMBEDDED:
        config = _with_description(config, loading.EMBEDDED[name]["description"])
    params = _to_device(params, dev, torch_dtype)
    progress(0.9, "loading the tokenizer")
    tokenizer = loading.load_tokenizer(folder, name)
    progress(1.0, "ready")
    return Model(config, params, tokenizer, dev, source=str(folder))


def _leading_ones(flags: list[int]) -> int:
    count = 0
    for flag in flags:
        if flag != 1:
            break
        count += 1
    return count


def estimated_params(cfg: ModelConfig) -> int:
    """Rough parameter count from the configuration alone (before any weights are fetched)."""
    attn = cfg.d_model * cfg.d_head * (2 * cfg.n_heads + 2 * cfg.n_kv_heads)
    mlp = cfg.d_model * cfg.d_mlp * (3 if cfg.mlp == "swiglu" else 2)
    return cfg.n_layers * (attn + mlp) + cfg.d_vocab * cfg.d_model


def _with_description(cfg: ModelConfig, description: str) -> ModelConfig:
    from dataclasses import replace

    return replace(cfg, description=description)


def _to_device(params: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype) -> dict:
    """Move weights to one device and dtype; a tied unembedding stays a view of W_E (one copy)."""
    tied = params["unembed.W_U"].untyped_storage().data_ptr() == params["embed.W_E"].untyped_storage().data_ptr() \
        if "unembed.W_U" in params else False
    out = {key: t.to(device=device, dtype=dtype) for key, t in params.items()}  # transposed views stay views
    if tied:
        out["unembed.W_U"] = out["embed.W_E"].T  # [d_model, d_vocab]
    return out
