"""The head-role probe every view shares: role scores and the in-context learning check, each one forward pass
of the standard probe (engine/analysis/roles.py), computed once per model, mask and set of switched-off heads
and kept for the whole server."""

from __future__ import annotations

import streamlit as st

import engine
from engine.analysis.icl import ICLCheck, icl_losses
from engine.analysis.roles import HeadRoles, head_roles

MAX_ROLE_RUNS = 8  # each keeps its probe run (SmolLM2: 100 tokens, 40 MB)
MAX_ICL_CHECKS = 32  # numbers only


def _key(model: engine.Model, *args: object) -> tuple:
    return (model.config.name, model.source, *args)


@st.cache_resource(max_entries=MAX_ROLE_RUNS, show_spinner="Running the probe…")
def _roles(key: tuple, _model: engine.Model, _causal: bool | None,
           _heads_off: frozenset[tuple[int, int]]) -> HeadRoles:
    return head_roles(_model, causal=_causal, head_mask=_model.head_mask_without(_heads_off))


@st.cache_resource(max_entries=MAX_ICL_CHECKS, show_spinner="Measuring the loss on the probe…")
def _icl(key: tuple, _model: engine.Model, _heads_off: frozenset[tuple[int, int]]) -> ICLCheck:
    reference = reference_roles(_model)
    return icl_losses(_model, reference.probe, _model.head_mask_without(_heads_off), unmodified=reference.trace)


def roles(model: engine.Model, causal: bool | None, heads_off: frozenset[tuple[int, int]]) -> HeadRoles:
    """Every head's role scores on the standard probe, under this mask and with these heads switched off."""
    return _roles(_key(model, causal, tuple(sorted(heads_off))), model, causal, frozenset(heads_off))


def reference_roles(model: engine.Model) -> HeadRoles:
    """The role scores with every head on and the model's own mask: where the top heads of a role are ranked."""
    return roles(model, None, frozenset())


def icl_check(model: engine.Model, heads_off: frozenset[tuple[int, int]]) -> ICLCheck:
    """Next-token loss on the probe's two copies, with these heads off and with every head on (always causal).
    Raises engine.EngineError for a model without a language-model head."""
    return _icl(_key(model, tuple(sorted(heads_off))), model, frozenset(heads_off))
