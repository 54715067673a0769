"""The engine's own exception: every failure a user can cause is raised as an EngineError."""


class EngineError(Exception):
    """A clear, user-facing failure: the message says what was tried and what to do."""


class ModelLoadError(EngineError):
    """A model could not be found, fetched or read."""


class UnsupportedModelError(EngineError):
    """The checkpoint's architecture is not one the engine implements."""


class InputError(EngineError):
    """The text or the run's settings cannot be used."""


class RunCancelled(EngineError):
    """A run was stopped before it finished (its visitor asked for something else)."""


class BudgetExceeded(EngineError):
    """A run needs more memory than the server's whole budget."""
