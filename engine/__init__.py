"""Attention Explorer's engine: load a real model, run our own forward pass, return a Trace.

    import engine
    model = engine.load("smollm2-135m")
    trace = model.run("The capital of France is", causal=None, head_mask=None)
    trace["pattern", 3]   # [n_heads, n_tokens, n_tokens]
    roles = engine.head_roles(model)
    roles["induction"]    # [n_layers, n_heads]
    engine.logit_attribution(model, trace, position=-1, target=id)   # .heads [n_layers, n_heads], .total, .actual
"""

from .analysis.attribution import LogitAttribution, logit_attribution
from .analysis.flow import FlowShares, Route, flow_contributions, flow_route
from .analysis.qk_attribution import QKAttribution, qk_attribution
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

__all__ = ["EMBEDDED", "NAMES", "BudgetExceeded", "DiskBudgetExceeded", "EngineError", "FlowShares", "Generation",
           "HeadRoles", "InputError", "LogitAttribution", "Model", "ModelConfig", "ModelLoadError", "NotAllowed",
           "QKAttribution", "RateLimited", "Route", "RunCancelled", "Step", "Trace", "UnsupportedModelError",
           "flow_contributions", "flow_route", "head_roles", "load", "logit_attribution", "pick_device",
           "qk_attribution"]
