"""Attention Explorer's engine: load a real model, run our own forward pass, return a Trace.

    import engine
    model = engine.load("smollm2-135m")
    trace = model.run("The capital of France is", causal=None, head_mask=None)
    trace["pattern", 3]   # [n_heads, n_tokens, n_tokens]
    roles = engine.head_roles(model)
    roles["induction"]    # [n_layers, n_heads]
"""

from .analysis.roles import HeadRoles, head_roles
from .config import ModelConfig
from .errors import (
    BudgetExceeded,
    DiskBudgetExceeded,
    EngineError,
    InputError,
    ModelLoadError,
    NotAllowed,
    RateLimited,
    RunCancelled,
    UnsupportedModelError,
)
from .generate import Generation, Step
from .loading import EMBEDDED
from .model import Model, load, pick_device
from .trace import NAMES, Trace

__all__ = ["EMBEDDED", "NAMES", "BudgetExceeded", "DiskBudgetExceeded", "EngineError", "Generation", "HeadRoles",
           "InputError", "Model", "ModelConfig", "ModelLoadError", "NotAllowed", "RateLimited", "RunCancelled", "Step",
           "Trace", "UnsupportedModelError", "head_roles", "load", "pick_device"]
