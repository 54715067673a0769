"""Loaded models shared by every session of a server: each loaded once, at most `max_models` kept."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from ..model import Model


class ModelStore:
    """Thread-safe: two sessions asking for the same model at once wait for one load, not two."""

    def __init__(self, max_models: int = 3):
        self.max_models = max_models
        self._models: OrderedDict[str, Model] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def __contains__(self, name: str) -> bool:
        return name in self._models

    def nbytes(self) -> int:
        """Bytes the loaded models' weights hold: what a server holds outside its runs' memory budget."""
        with self._lock:
            models = list(self._models.values())
        return sum(model.nbytes() for model in models)

    def get(self, name: str, load: Callable[[], Model]) -> Model:
        """The model called `name`, calling `load()` once if it is not loaded yet."""
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            name_lock = self._locks.setdefault(name, threading.Lock())
        with name_lock:
            with self._lock:
                if name in self._models:
                    return self._models[name]
            model = load()
            with self._lock:
                self._models[name] = model
                while len(self._models) > self.max_models:
                    self._models.popitem(last=False)
            return model
