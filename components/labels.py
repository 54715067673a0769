"""Token labels that show every token literally: in Plotly text, in tables and in Markdown.

Plotly renders a small HTML subset in every text field (`<b>`, `<br>`, `<a>`, `<sup>`, entities such as
`&amp;`) and hands any string holding two `$` runs to MathJax when it is loaded. Its entity decoder
(`&lt;`, `&gt;`, `&amp;`, `&#NN;`) runs after both checks and writes plain text nodes, so escaping `&`, `<`,
`>`, `$` and `%` as entities shows a token exactly as typed and can't inject markup or math.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

EMPTY = "∅"
SPACE = "␣"
_VISIBLE = {"\n": "↵", "\t": "⇥"}
# Control, format, separator and surrogate characters are invisible or reorder text (bidi overrides):
# show their code instead. ZERO WIDTH JOINER stays, it holds emoji sequences together.
_HIDDEN = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp", "Zs"}
_KEEP = {" ", "\u200d"}
_PLOTLY = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "$": "&#36;", "%": "&#37;"})
_WORD_JOINER = "\u2060"
_MD_PUNCT = re.compile("([" + re.escape(string.punctuation) + "])")
# Streamlit rewrites text nodes after parsing: `:name:` emoji and icons, `->` `<-` `--` `>=` `<=` `~=` arrows.
_MD_JOIN = re.compile(r"(?<=:)|(?<=[-<>~])(?=[-=>])")


def _code(ch: str) -> str:
    cp = ord(ch)
    return f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}"


def token_text(token: str) -> str:
    """Plain readable form of one token: visible whitespace and control characters, no markup escaping.

    ' Paris' -> '␣Paris', '\\n' -> '↵', '\\t' -> '⇥', NUL -> '\\x00', '' -> '∅'. Use it in DataFrames and CSV.
    """
    if token == "":
        return EMPTY
    body = "".join(
        _VISIBLE.get(ch) or (_code(ch) if unicodedata.category(ch) in _HIDDEN and ch not in _KEEP else ch)
        for ch in token
    )
    core = body.strip(" ")
    lead = len(body) - len(body.lstrip(" "))
    trail = len(body) - len(body.rstrip(" ")) if core else 0
    return SPACE * lead + core + SPACE * trail


def readable_text(text: str) -> str:
    """A text for a code block (shown literally): spaces, tabs and line breaks kept, every other invisible or
    reordering character shown as its code, as token_text shows it."""
    return "".join(ch if ch in "\n\t" or ch in _KEEP or unicodedata.category(ch) not in _HIDDEN else _code(ch)
                   for ch in text)


def plotly_escape(text: str) -> str:
    """Escape any string for a Plotly text field (title, tick text, hover, customdata) so it shows as typed."""
    return text.translate(_PLOTLY)


def token_labels(tokens: Sequence[str], max_chars: int | None = None) -> list[str]:
    """Plotly-safe display labels, one per token, in order; duplicates stay duplicates (use positions).

    max_chars cuts long tokens with '…' (for tick text; keep the full label for hover).
    """
    return list(_token_labels(tuple(tokens), max_chars))  # every rerun draws the same tokens again: memoised


@lru_cache(maxsize=64)
def _token_labels(tokens: tuple[str, ...], max_chars: int | None) -> tuple[str, ...]:
    out = []
    for tok in tokens:
        text = token_text(tok)
        if max_chars is not None and len(text) > max_chars:
            text = text[: max(max_chars - 1, 1)] + "…"
        out.append(plotly_escape(text))
    return tuple(out)


def position_labels(tokens: Sequence[str]) -> list[str]:
    """Plotly-safe labels with their position, '3: mole', unique even when tokens repeat (for hover)."""
    return [f"{i}: {label}" for i, label in enumerate(token_labels(tokens))]


def axis_ticks(labels: Sequence[str], max_ticks: int = 60) -> tuple[list[int], list[str]]:
    """(tickvals, ticktext) for an axis of token positions 0..n-1, showing every k-th label when n > max_ticks."""
    step = max(1, math.ceil(len(labels) / max(max_ticks, 1)))
    vals = list(range(0, len(labels), step))
    return vals, [labels[i] for i in vals]


def markdown_literal(text: str) -> str:
    """Escape a string so `st.markdown` / `st.caption` show it literally (pass token_text() for tokens).

    Backslash-escapes all ASCII punctuation (Markdown, HTML `<` `>` `&`, math `$`, directives `:red[...]`),
    puts an invisible WORD JOINER where Streamlit would turn `:smile:` into an emoji or `->` into an arrow,
    and keeps spaces at the start and end of a line (as `&nbsp;`, which no parser strips).
    """
    text = _MD_PUNCT.sub(r"\\\1", _MD_JOIN.sub(_WORD_JOINER, text))
    return re.sub(r"(?m)^ +| +$", lambda m: "&nbsp;" * len(m.group()), text)
