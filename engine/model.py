"""Model: converted weights + tokenizer, and `run()` that returns a Trace. Never mutated by a run."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from types import MappingProxyType

import torch

from . import loading, transformer
from .config import ModelConfig
from .convert import config_of, convert
from .errors import InputError, ModelLoadError, RunCancelled
from .interventions import PatchArg, check_patch, reusable_layers
from .lean import held
from .tokens import readable_tokens
from .trace import Prefix, Trace, freeze_patch
from .transformer import Attention, Forward, forward
from .weights import Weights, WeightsView


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
    """A loaded model: typed weights in the uniform layout and a tokenizer. Never mutated by a run, so one
    instance serves every session and thread at once."""

    def __init__(self, config: ModelConfig, weights: Weights, tokenizer, device: torch.device, source: str = ""):
        self.config = config
        self._weights = weights  # the engine's own: read through `weights` (copies)
        self.tokenizer = tokenizer
        self.device = device
        self.source = source
        self._tokenizer_lock = threading.Lock()  # Hugging Face's fast tokenizer is one shared Rust object
        self._frozen = True

    @property
    def weights(self) -> WeightsView:
        """The weights in the uniform layout, read-only: each tensor read is a copy."""
        return WeightsView(self._weights)

    def __setattr__(self, name: str, value) -> None:
        if "_frozen" in self.__dict__:
            raise AttributeError(f"a loaded model is shared and read-only: cannot set {name!r}")
        super().__setattr__(name, value)

    @property
    def dtype(self) -> torch.dtype:
        return self._weights.W_E.dtype

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

    def readable(self, token_ids: Sequence[int]) -> list[str]:
        return readable_tokens(self.tokenizer, list(token_ids))

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids of the tokenizer's special tokens ([CLS], [SEP], <|endoftext|>, ...)."""
        return frozenset(getattr(self.tokenizer, "all_special_ids", []) or [])

    def default_head_mask(self) -> torch.Tensor:
        return torch.ones(self.config.n_layers, self.config.n_heads, dtype=torch.bool)

    def head_mask_without(self, heads_off: Iterable[tuple[int, int]]) -> torch.Tensor:
        """bool [n_layers, n_heads] with the given (layer, head) pairs switched off."""
        mask = self.default_head_mask()
        for layer, head in heads_off:
            mask[layer, head] = False
        return mask

    @torch.inference_mode()
    def run(self, text: str, causal: bool | None = None, head_mask: torch.Tensor | None = None,
            max_tokens: int | None = None, *, patch: PatchArg | None = None, reuse: Trace | Prefix | None = None,
            attention: Attention = "fused", cancel: Callable[[], bool] | None = None,
            keep: Sequence[str] = (), lean: bool = False) -> Trace:
        """Tokenize and run `text`.

        causal: None = the model's own mask; head_mask: bool [n_layers, n_heads], False = head off;
        patch: {(layer, head): {position: z [d_head]}} replaces that head's z at those query positions;
        reuse: a trace of the same tokens whose layers before the first one that differs are taken as they are;
        attention: "fused" (scaled_dot_product_attention) or "explicit" (the reference);
        cancel: asked before each layer, True stops the run with RunCancelled;
        keep=("pattern",): for a caller that reads every layer's pattern (a notebook): attention runs explicitly
        and each pattern it computes is handed, without a copy, to the first trace["pattern", layer] that asks
        (held by the trace until then: 4.5 GB for SmolLM2 at 2,048 tokens); such a run is lean;
        lean: the trace stores each layer's resid_pre only and recomputes the rest when read (the same numbers;
        d_model floats per token and layer, as Hugging Face's hidden states, instead of 5.7× that for SmolLM2)."""
        ids, truncated, n_total = self.tokenize(text, max_tokens)
        return self.run_ids(ids, causal=causal, head_mask=head_mask, truncated=truncated, n_tokens_in_text=n_total,
                            patch=patch, reuse=reuse, attention=attention, cancel=cancel, keep=keep, lean=lean)

    @torch.inference_mode()
    def run_ids(self, token_ids: Sequence[int], causal: bool | None = None, head_mask: torch.Tensor | None = None,
                truncated: bool = False, n_tokens_in_text: int | None = None, *, patch: PatchArg | None = None,
                reuse: Trace | Prefix | None = None, attention: Attention = "fused",
                cancel: Callable[[], bool] | None = None, keep: Sequence[str] = (), lean: bool = False) -> Trace:
        cfg = self.config
        token_ids = [int(i) for i in token_ids]
        if not token_ids:
            raise InputError("no tokens to run.")
        if len(token_ids) > cfg.max_tokens:
            raise InputError(f"{len(token_ids)} tokens exceed {cfg.name}'s context of {cfg.max_tokens}.")
        if attention not in ("fused", "explicit"):
            raise InputError(f"attention must be 'fused' or 'explicit', not {attention!r}.")
        if isinstance(keep, str) or not set(keep) <= {"pattern"}:
            raise InputError(f"keep takes ('pattern',) or (), not {keep!r}.")
        if "pattern" in keep:
            attention, lean = "explicit", True  # the path that computes the patterns; they are what is kept
        lean = bool(lean)
        head_mask = self.check_head_mask(head_mask)
        causal = cfg.causal if causal is None else bool(causal)
        patch = check_patch(patch, cfg, len(token_ids), self.device, self.dtype)
        first = reusable_layers(reuse, self._weights, token_ids, causal, head_mask, patch, attention, lean)
        kept = list(reuse.layers[:first]) if first else []
        if first == cfg.n_layers:  # the same run: share everything
            out = Forward(records=[], resid_last=reuse.resid_last, resid_final=reuse.resid_final_)
        else:
            start = (first, reuse.resid_pre_at(first)) if first else None
            ids = torch.tensor(token_ids, dtype=torch.long, device=self.device)
            try:
                out = forward(self._weights, cfg, ids, causal, head_mask, patch=patch, attention_impl=attention,
                              start=start, cancel=cancel, keep_pattern="pattern" in keep, lean=lean)
            except RunCancelled as stop:
                records, layer, resid = stop.done
                stop.prefix = Prefix(config=cfg, _weights=self._weights, token_ids=tuple(token_ids), causal=causal,
                                     attention=attention, head_mask_=head_mask, patch=freeze_patch(patch),
                                     layers=tuple(MappingProxyType({k: t for k, t in held(r).items() if k != "pattern"})
                                                  for r in kept + records),
                                     resid_next=resid, lean=lean) if layer else None
                raise
        return Trace.build(config=cfg, weights=self._weights, tokens=self.readable(token_ids), token_ids=token_ids,
                           causal=causal, head_mask=head_mask, records=kept + out.records, resid_last=out.resid_last,
                           resid_final=out.resid_final, patch=patch, attention=attention, truncated=truncated,
                           n_tokens_in_text=n_tokens_in_text or len(token_ids), lean=lean)

    def check_head_mask(self, head_mask) -> torch.Tensor:
        cfg = self.config
        if head_mask is None:
            return self.default_head_mask()
        head_mask = torch.as_tensor(head_mask, dtype=torch.bool).cpu()
        if tuple(head_mask.shape) != (cfg.n_layers, cfg.n_heads):
            expected = (cfg.n_layers, cfg.n_heads)
            raise InputError(f"head_mask must have shape {expected}, got {tuple(head_mask.shape)}.")
        return head_mask

    def generate(self, text: str, max_new_tokens: int = 32, temperature: float = 0.0, top_k: int | None = None,
                 seed: int | None = None, head_mask: torch.Tensor | None = None, max_tokens: int | None = None,
                 on_token: Callable[[int, int], None] | None = None, cancel: Callable[[], bool] | None = None):
        """Write up to max_new_tokens after `text` (see engine.generate.generate)."""
        from .generate import generate

        return generate(self, text, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, seed=seed,
                        head_mask=head_mask, max_tokens=max_tokens, on_token=on_token, cancel=cancel)

    @torch.inference_mode()
    def unembed(self, resid: torch.Tensor, final_norm: bool = True) -> torch.Tensor:
        """Logits for residual-stream vectors [..., d_model]. An encoder without an LM head decodes through
        its tied input embedding (W_E), which `config.has_lm_head` tells the caller."""
        resid = torch.as_tensor(resid).to(self.device, self.dtype)
        if self._weights.unembed is None:
            return resid @ self._weights.W_E.T
        x = transformer.final_norm(resid, self._weights, self.config) if final_norm else resid
        return transformer.unembed(x, self._weights, self.config)

    def nbytes(self) -> int:
        """Bytes the weights hold, each storage once (tied tensors share one)."""
        seen = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for _, t in self._weights.named()}
        return sum(seen.values())

    def n_params(self) -> int:
        """Parameters counted from the actual weights, each shared (tied) tensor once."""
        seen: dict[tuple[int, int], int] = {}
        for _, t in self._weights.named():
            seen[(t.untyped_storage().data_ptr(), t.storage_offset())] = t.numel()
        return sum(seen.values())


def load(name: str = "smollm2-135m", device: str | torch.device | None = None, dtype: torch.dtype | str = "float32",
         progress: loading.Progress | None = None, max_params: int | None = None, *, allow_local_folders: bool = True,
         allow_hub: bool = True, model_cache_bytes: int | None = None) -> Model:
    """Load an embedded model ("smollm2-135m", "minilm-l6"), a hub id ("gpt2") or a local folder.

    A server passes its operator's policy: allow_local_folders=False refuses every path with one message that
    does not tell whether it exists (the disk is never looked at); allow_hub=False refuses hub ids; hub downloads
    are kept under model_cache_bytes on disk (least recently used removed; a model larger than that alone is
    refused before anything is downloaded). The defaults (everything allowed, no disk budget) are for scripts."""
    progress = progress or (lambda fraction, message: None)
    if not isinstance(name, str) or not name.strip():
        raise ModelLoadError("no model name given: choose smollm2-135m, minilm-l6, a hub id or a folder.")
    name = name.strip()
    dev = pick_device(device)
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
        raise InputError(f"dtype must be a floating-point torch dtype, not {dtype!r}.")
    with loading.source(name, progress, allow_local_folders=allow_local_folders, allow_hub=allow_hub,
                        model_cache_bytes=model_cache_bytes) as fetch:
        # Configuration first: an unsupported or too large model is refused before any weights are fetched.
        folder = fetch(False)
        hf_config = loading.read_config(folder)
        cfg = config_of(hf_config, name)
        if max_params is not None and estimated_params(cfg) > max_params:
            raise ModelLoadError(f"{name} has about {estimated_params(cfg) / 1e6:,.0f} M parameters, over this "
                                 f"server's limit of {max_params / 1e6:,.0f} M. Choose a smaller model.")
        if not loading.has_weights(folder):  # a hub checkpoint whose config alone was fetched
            folder = fetch(True)
        progress(0.7, "reading weights")
        state = loading.read_weights(folder)
        progress(0.9, "loading the tokenizer")
        tokenizer = loading.load_tokenizer(folder, name)  # read while the download cannot be removed
    config, params = convert(hf_config, state, name)
    weights = Weights.from_uniform(params, config.n_layers).map(lambda t: t.to(device=dev, dtype=torch_dtype))
    del state, params
    progress(1.0, "ready")
    return Model(config, weights, tokenizer, dev, source=str(folder))


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
    mlp = cfg.d_model * cfg.d_mlp * (3 if cfg.gated else 2)
    return cfg.n_layers * (attn + mlp) + cfg.d_vocab * cfg.d_model


