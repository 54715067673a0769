"""The two runs the Compare view compares (shared by compare.py and _patching.py)."""

from __future__ import annotations

from dataclasses import dataclass

import engine


@dataclass(frozen=True)
class Pair:
    """The two runs compared, each with its target word's token positions; the target is the last of them."""

    text_a: str
    text_b: str
    a: engine.Trace
    b: engine.Trace
    span_a: tuple[int, ...]
    span_b: tuple[int, ...]

    @property
    def target_a(self) -> int:
        return self.span_a[-1]

    @property
    def target_b(self) -> int:
        return self.span_b[-1]
