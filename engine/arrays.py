"""Numbers handed out of the engine: numpy copies that nobody can write to."""

from __future__ import annotations

import numpy as np
import torch


def readonly(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """A float array of `x` (float64 stays float64, other floats become float32) marked not writeable.

    Tensors are copied off the device; the result never shares memory with a stored trace tensor, and the
    flag makes an accidental in-place write in a view fail loudly instead of corrupting a shared cache entry."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        x = (x if x.dtype == torch.float64 else x.float()).cpu().numpy().copy()
    else:
        x = np.array(x, copy=True)
    x.flags.writeable = False
    return x
