"""The head-role probe every view shares: role scores and the in-context learning check, each one forward pass
of the standard probe (engine/analysis/roles.py), computed once per model, mask and set of switched-off heads
through the server's run cache: they reserve memory under the budget, a second visitor asking the same waits for
the first computation (single flight), and each new one counts toward its visitor's caps."""

from __future__ import annotations

from collections.abc import Callable

import engine
from components import runs, visitor
from components.settings import Settings
from components.waiting import show_waiting
from engine.analysis.icl import ICLCheck, icl_losses
from engine.analysis.roles import HeadRoles, head_roles
from engine.serving.memory import run_bytes

PROBE_TOKENS = 2 * 50 + 2  # the standard probe: 50 tokens twice, and at most a special token at each end


def _key(kind: str, model: engine.Model, *args: object) -> tuple:
    return (kind, model.config.name, model.source, *args)


def _get(key: tuple, compute: Callable[[], object], model: engine.Model, settings: Settings):
    """compute() through the run cache, reserving one probe run's memory; a notice while it queues or runs."""
    need = run_bytes(model.config, PROBE_TOKENS)
    with show_waiting() as on_wait:
        return runs.shared_cache(settings).get(key, lambda cancel, prefix: compute(), need,
                                               session=visitor.key(settings), on_wait=on_wait)


def roles(model: engine.Model, causal: bool | None, heads_off: frozenset[tuple[int, int]],
          settings: Settings) -> HeadRoles:
    """Every head's role scores on the standard probe, under this mask and with these heads switched off."""
    mask = model.config.causal if causal is None else bool(causal)
    heads_off = frozenset(heads_off)
    return _get(_key("roles", model, mask, tuple(sorted(heads_off))),
                lambda: head_roles(model, causal=mask, head_mask=model.head_mask_without(heads_off)), model, settings)


def reference_roles(model: engine.Model, settings: Settings) -> HeadRoles:
    """The role scores with every head on and the model's own mask: where the top heads of a role are ranked."""
    return roles(model, None, frozenset(), settings)


def icl_check(model: engine.Model, heads_off: frozenset[tuple[int, int]], settings: Settings) -> ICLCheck:
    """Next-token loss on the probe's two copies, with these heads off and with every head on (always causal).
    Raises engine.EngineError for a model without a language-model head."""
    reference = reference_roles(model, settings)  # first, in this thread: a computation never waits on another
    heads_off = frozenset(heads_off)
    return _get(_key("icl", model, tuple(sorted(heads_off))),
                lambda: icl_losses(model, reference.probe, model.head_mask_without(heads_off),
                                   unmodified=reference.trace), model, settings)
