"""The app's state: one typed, frozen `AppState`, read from the page's link and written back to it.

The link's schema lives here and only here: which parameters it holds, how each is read (a bad value is
ignored, model names and texts are bounded, a hub id or folder is refused where the operator allows only the
embedded models) and when one is left out (a text too long for a link). Values are short stable ids
("causal", "key_rows", "heads"), never display labels; widgets show labels through `format_func`, and links
written before the ids existed (holding labels) still open.

In a session the state lives under the keys in KEYS. A widget that shows a field uses that key; every change
goes through `update(**changes)`, or `set_value(field, value)` for a view's own field. Components read the
state with `current(schema)`, never raw keys.

A view keeps values of its own in the link by declaring `Field`s in its module (`FIELDS = (Field(...), ...)`):
`Field("projections.mode", "qk", choices=(...))` travels as `?projections.mode=delta`, only while it differs
from its default. The registry collects every view's fields and the tabs into the `Schema`.

An activation patch of the app's run (`Patch`: another text's z of some heads carried into this run at one
token) travels as `?patch=3.0,3.1&patch_at=14&patch_from=<text>&patch_from_at=6`.
"""

from __future__ import annotations

import math
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import streamlit as st

import engine
from components.content import DEFAULT_SENTENCE
from components.figures.layout import FORMATS
from components.settings import Settings

Value = str | int | float | bool
DEFAULT_MODEL = next(iter(engine.EMBEDDED))
OTHER_MODEL = "other"  # the model picker's "other…": a hub id or folder typed into the CUSTOM_KEY field
MAX_MODEL_NAME = 512  # longest hub id or folder path taken from the field or the link (hub ids: at most 96)
MAX_LINK_TEXT = 6_000  # longest URL-encoded sentence kept in the link (proxies refuse request lines over 8 KB)
MAX_FIELD_TEXT = 200  # longest text a view's own field takes from the link, unless it says otherwise
MAX_LINK_PATCH = 1_500  # longest URL-encoded source text of a patch kept in the link

# Choices: id -> label. The link and the session hold ids; only widgets show the labels.
MASKS = {"default": "model default", "causal": "causal", "none": "none"}
CAUSAL = {"default": None, "causal": True, "none": False}  # mask id -> the run's `causal`
LAYOUTS = {"query_rows": "query rows", "key_rows": "key rows (notes)"}
FIGURE_FORMATS = {fmt: fmt.upper() for fmt in FORMATS}

# Session keys: app state field -> the key that holds it (widgets showing a field use this key).
KEYS = {"model": "model", "text": "text", "mask": "mask", "layer": "layer", "head": "head", "layout": "layout",
        "position": "position", "heads_off": "heads_off", "tab": "tab", "figure_format": "figure_format",
        "views": "view_fields", "patch": "patch"}
PICKER_KEY, CUSTOM_KEY = "model_choice", "custom_model"  # the model picker: the model a visitor asks for
_READY, _LAST_GOOD_TEXT, _FAILED, _REFUSED = "state_ready", "last_good_text", "failed_model", "refused_model"
_SESSION_ID, _LAST_GOOD_VIEW, _LAST_GOOD = "session_id", "last_good_view", "last_good"


@dataclass(frozen=True)
class Field:
    """A value one view keeps in the link as `?<link>=value`, where `link` is "<view id>.<name>"."""

    link: str
    default: Value  # its type is the field's type: bool, int, float or str
    choices: tuple[Value, ...] = ()  # the values allowed; empty: any value of the default's type
    max_chars: int = MAX_FIELD_TEXT  # a str field's longest value

    def parse(self, raw: str) -> Value | None:
        """The value a link's text stands for, or None when this field does not take it."""
        if isinstance(self.default, bool):
            value = {"1": True, "0": False}.get(raw)
        elif isinstance(self.default, int):
            value = _int(raw)
        elif isinstance(self.default, float):
            value = _float(raw)
        else:
            value = raw[: self.max_chars]
        return value if value is not None and (not self.choices or value in self.choices) else None


@dataclass(frozen=True)
class Schema:
    """What a link may name beyond the common fields: the tabs (id -> label, in order; the first opens by
    default) and every view's own fields. Built by the views' registry."""

    tabs: Mapping[str, str]
    fields: tuple[Field, ...] = ()

    def __post_init__(self) -> None:
        links = [f.link for f in self.fields]
        if len(set(links)) != len(links):
            raise ValueError(f"two fields share a link name: {links}")
        for f in self.fields:
            if f.link.partition(".")[0] not in self.tabs:
                raise ValueError(f"field {f.link!r} must be named '<view id>.<name>' after its own view")

    @property
    def first_tab(self) -> str:
        return next(iter(self.tabs))

    def tab_id(self, name: str | None) -> str | None:
        """The id of a tab named by its id or its label (st.tabs holds labels; old links do too)."""
        if name in self.tabs:
            return name
        return next((tab for tab, label in self.tabs.items() if label == name), None)


@dataclass(frozen=True)
class Patch:
    """An activation patch of the app's run: the z (pattern @ v, before W_O) of `heads` at token `source_at` of
    the run of `source` replaces those heads' z at token `at` of the app's run (same model, mask and switches)."""

    source: str  # the text the z come from (the Compare view's A)
    source_at: int  # its token position (A's target)
    at: int  # the token position in the app's run (B's target)
    heads: tuple[tuple[int, int], ...]  # (layer, head) pairs, sorted

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", tuple(sorted(set(self.heads))))

    @classmethod
    def from_query(cls, query: Mapping[str, str], max_chars: int) -> Patch | None:
        """The patch a link describes, or None when any of its four parameters is missing or malformed."""
        heads = parse_heads(query.get("patch", ""))
        source = (query.get("patch_from") or "")[:max_chars]
        source_at, at = _int(query.get("patch_from_at"), -1), _int(query.get("patch_at"), -1)
        if not heads or not source or source_at < 0 or at < 0:
            return None
        return cls(source, source_at, at, tuple(heads))

    def to_query(self) -> dict[str, str]:
        """The link's parameters; none when the source text is too long for a link."""
        if len(urllib.parse.quote(self.source)) > MAX_LINK_PATCH:
            return {}
        return {"patch": ",".join(f"{layer}.{head}" for layer, head in self.heads), "patch_at": str(self.at),
                "patch_from": self.source, "patch_from_at": str(self.source_at)}


@dataclass(frozen=True)
class AppState:
    """Everything the page shows is a function of this (and the operator's settings)."""

    model: str = DEFAULT_MODEL  # the model shown
    text: str = DEFAULT_SENTENCE  # as typed; a run cuts it to settings.max_chars
    mask: str = "default"  # an id of MASKS
    layer: int = 0
    head: int = 0
    layout: str = "query_rows"  # an id of LAYOUTS
    position: int = -1  # where the prediction panel predicts: a token position, -1 = after the last token
    heads_off: frozenset[tuple[int, int]] = frozenset()  # (layer, head) pairs switched off
    tab: str = "pattern"  # the open tab's id; the registry's first tab by default
    figure_format: str = "png"  # what the camera button of every figure saves: an id of FIGURE_FORMATS
    # views' own fields by link name ("projections.mode"), only those that differ from their default
    views: Mapping[str, Value] = field(default_factory=lambda: MappingProxyType({}))
    patch: Patch | None = None  # an activation patch of the app's run (set by the Compare view)

    @property
    def causal(self) -> bool | None:
        return CAUSAL[self.mask]

    def value(self, f: Field) -> Value:
        """A view's own field."""
        return self.views.get(f.link, f.default)

    def fit(self, n_layers: int, n_heads: int) -> AppState:
        """This state on a model of n_layers × n_heads: layer and head clamped, heads it does not have dropped."""
        return replace(self, layer=min(max(self.layer, 0), n_layers - 1), head=min(max(self.head, 0), n_heads - 1),
                       heads_off=frozenset((la, h) for la, h in self.heads_off if la < n_layers and h < n_heads))

    @classmethod
    def from_query(cls, query: Mapping[str, str], settings: Settings, schema: Schema) -> AppState:
        """The state a link describes. A parameter that is missing or not in an accepted form keeps its default."""
        d = cls()
        views = {f.link: value for f in schema.fields
                 if f.link in query and (value := f.parse(query[f.link])) is not None and value != f.default}
        return cls(
            model=link_model(query, settings) or d.model,
            text=query["text"][: settings.max_chars] if query.get("text") else d.text,
            mask=_choice(query.get("mask"), MASKS, d.mask),
            layer=_int(query.get("layer"), d.layer),
            head=_int(query.get("head"), d.head),
            layout=_choice(query.get("layout"), LAYOUTS, d.layout),
            position=_int(query.get("position"), d.position),
            heads_off=parse_heads(query.get("off", "")),
            tab=schema.tab_id(query.get("tab")) or schema.first_tab,
            figure_format=_choice(query.get("figure"), FIGURE_FORMATS, d.figure_format),
            views=MappingProxyType(views),
            patch=Patch.from_query(query, settings.max_chars),
        )

    def to_query(self, settings: Settings) -> dict[str, str]:
        """The link's parameters. A text too long for a link is left out (proxies refuse long request lines);
        switched-off heads, the figure format, views' fields and the patch only when they are set."""
        params = {"model": self.model, "text": self.text[: settings.max_chars], "mask": self.mask,
                  "layer": str(self.layer), "head": str(self.head), "layout": self.layout,
                  "position": str(self.position), "tab": self.tab}
        if len(urllib.parse.quote(params["text"])) > MAX_LINK_TEXT:
            del params["text"]
        if self.heads_off:
            params["off"] = ",".join(f"{layer}.{head}" for layer, head in sorted(self.heads_off))
        if self.figure_format != AppState.figure_format:
            params["figure"] = self.figure_format
        params.update({link: _text(value) for link, value in sorted(self.views.items())})
        if self.patch is not None:
            params.update(self.patch.to_query())
        return params


def link_model(query: Mapping[str, str], settings: Settings) -> str | None:
    """The model a link names, where this server may load it: an embedded model, or (where the operator allows
    custom models) a hub id or folder, cut to MAX_MODEL_NAME characters."""
    name = query.get("model") or ""
    if name in engine.EMBEDDED:
        return name
    return name[:MAX_MODEL_NAME] if name and settings.allow_custom_models else None


def refused_model(query: Mapping[str, str], settings: Settings) -> str | None:
    """The model a link names that this server will not load (it offers only its embedded models)."""
    name = query.get("model") or ""
    return name[:MAX_MODEL_NAME] if name and link_model(query, settings) is None else None


def parse_heads(value: str) -> frozenset[tuple[int, int]]:
    """'5.3,7.0' -> {(5, 3), (7, 0)}; items that are not 'layer.head' in digits are ignored."""
    heads = set()
    for item in value.split(","):
        layer, _, head = item.strip().partition(".")
        if layer.isdigit() and head.isdigit():
            heads.add((int(layer), int(head)))
    return frozenset(heads)


def _int(raw: str | None, default: int | None = None) -> int | None:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return default


def _float(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _choice(raw: str | None, choices: Mapping[str, str], default: str) -> str:
    """The id `raw` names, by id or (links written before the ids) by label."""
    if raw in choices:
        return raw
    return next((key for key, label in choices.items() if label == raw), default)


def _text(value: Value) -> str:
    return ("1" if value else "0") if isinstance(value, bool) else str(value)


# ---- the session: the state's keys, the one way to change them, and what a session remembers -----------------

def init(query: Mapping[str, str], settings: Settings, schema: Schema) -> None:
    """First run of a session: write the state the link describes to the session keys. A hub id or folder in
    the link goes to the model picker; the default model shows until the sidebar has loaded it."""
    s = st.session_state
    if _READY in s:
        return
    start = AppState.from_query(query, settings, schema)
    custom = start.model not in engine.EMBEDDED
    for name, key in KEYS.items():
        value = getattr(replace(start, model=DEFAULT_MODEL) if custom else start, name)
        s[key] = schema.tabs[value] if name == "tab" else dict(value) if name == "views" else value
    s[PICKER_KEY], s[CUSTOM_KEY] = (OTHER_MODEL, start.model) if custom else (start.model, "")
    s[_FAILED] = {}
    s[_REFUSED] = refused_model(query, settings)
    s[_READY] = True


def from_session(session: Any, schema: Schema) -> AppState:
    """The state held in a session's keys (`st.session_state`, or AppTest's `at.session_state`)."""
    d = AppState()
    kept = {name: session[key] for name, key in KEYS.items() if key in session and name not in ("tab", "views")}
    tab = schema.tab_id(session[KEYS["tab"]]) if KEYS["tab"] in session else None
    views = dict(session[KEYS["views"]]) if KEYS["views"] in session else {}
    return replace(d, **kept, tab=tab or schema.first_tab, views=MappingProxyType(views))


def current(schema: Schema) -> AppState:
    """This session's state now."""
    return from_session(st.session_state, schema)


def open_tab(schema: Schema, tab: str) -> None:
    """Open the tab `tab` (an id) at the next run: from a widget's callback."""
    st.session_state[KEYS["tab"]] = schema.tabs[tab]


def update(**changes: Any) -> None:
    """Change fields of the app state, e.g. `update(layer=3, head=1)`: the one way components change it. Call it
    from a widget's callback, or before this run draws the widgets that show those fields."""
    for name, value in changes.items():
        if name not in KEYS or name in ("tab", "views"):
            raise TypeError(f"update() changes the fields {sorted(set(KEYS) - {'tab', 'views'})}, not {name!r}")
        st.session_state[KEYS[name]] = frozenset(value) if name == "heads_off" else value


def set_value(f: Field, value: Value) -> None:
    """Set a view's own field; it stays in the link while it differs from its default."""
    s = st.session_state
    views = dict(s.get(KEYS["views"], {}))
    if value == f.default:
        views.pop(f.link, None)
    else:
        views[f.link] = value
    if views != s.get(KEYS["views"]):
        s[KEYS["views"]] = views


def write_link(state: AppState, settings: Settings) -> bool:
    """Make the page's link hold `state` (the whole link: a parameter no longer wanted goes). False when the
    text had to be left out."""
    wanted = state.to_query(settings)
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)
    return "text" in wanted


def remember_good(name: str, value: Any) -> None:
    """Keep what last worked in a view (e.g. the Compare view's two texts and targets), to show again while the
    visitor's new input does not work; `last_good(name)` reads it back."""
    st.session_state[f"{_LAST_GOOD}.{name}"] = value


def last_good(name: str) -> Any:
    return st.session_state.get(f"{_LAST_GOOD}.{name}")


def last_good_text() -> str | None:
    """The last text that ran, shown again while the text field is empty."""
    return st.session_state.get(_LAST_GOOD_TEXT)


def last_good_view() -> tuple[str, AppState] | None:
    """The text and state of the last view that ran, shown again when a new run is refused."""
    return st.session_state.get(_LAST_GOOD_VIEW)


def remember_good_view(text: str, state: AppState) -> None:
    st.session_state[_LAST_GOOD_TEXT], st.session_state[_LAST_GOOD_VIEW] = text, (text, state)


def model_failure(name: str) -> str | None:
    """Why a model name failed to load in this session (a failed name is not tried again)."""
    return st.session_state[_FAILED].get(name)


def remember_model_failure(name: str, message: str) -> None:
    st.session_state[_FAILED][name] = message


def take_refused_model() -> str | None:
    """The model the session's link named that this server would not load, once (then None)."""
    return st.session_state.pop(_REFUSED, None)


def session_id() -> str:
    """A random id of this browser session, for the server's per-visitor fairness (kept in the session only)."""
    if _SESSION_ID not in st.session_state:
        st.session_state[_SESSION_ID] = uuid.uuid4().hex
    return st.session_state[_SESSION_ID]
