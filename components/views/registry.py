"""The tabs in the order they appear: (id, label, module). A new tab is one module in this folder plus one line
here; the id goes into the page's link, the label onto the tab."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from components.state import Schema
from components.views import (
    compare,
    corpus,
    deltas,
    generate,
    heads,
    interventions,
    notes,
    params,
    pattern,
    projections,
    qk,
    roles,
    senses,
    why,
)


@dataclass(frozen=True)
class View:
    id: str  # short and stable: links hold it
    label: str  # what the tab shows
    module: ModuleType  # with render(ctx) and, optionally, FIELDS it keeps in the link


VIEWS = (
    View("pattern", "Attention pattern", pattern),
    View("heads", "All heads", heads),
    View("roles", "Head roles", roles),
    View("qk", "Query · key", qk),
    View("why", "Why", why),
    View("interventions", "Interventions", interventions),
    View("deltas", "Δe: embedding changes", deltas),
    View("projections", "Projections", projections),
    View("senses", "Word senses", senses),
    View("compare", "Compare", compare),
    View("params", "Parameters", params),
    View("generate", "Generate", generate),
    View("notes", "Follow the notes", notes),
    View("corpus", "Corpus", corpus),
)

SCHEMA = Schema(tabs={v.id: v.label for v in VIEWS},
                fields=tuple(f for v in VIEWS for f in getattr(v.module, "FIELDS", ())))


def label(view_id: str) -> str:
    """The tab label of a view id."""
    return SCHEMA.tabs[view_id]
