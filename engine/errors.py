"""The engine's own exception: every failure a user can cause is raised as an EngineError."""


class EngineError(Exception):
    """A clear, user-facing failure: the message says what was tried and what to do."""


class ModelLoadError(EngineError):
    """A model could not be found, fetched or read."""


class NotAllowed(ModelLoadError):
    """The server's policy does not let visitors load this kind of model (a local folder, a hub id). The message
    is the same whatever the name, so it reveals nothing about the server's disk."""


class DiskBudgetExceeded(ModelLoadError):
    """A hub model's download does not fit in the server's disk budget for downloaded models."""


class UnsupportedModelError(EngineError):
    """The checkpoint's architecture is not one the engine implements."""


class InputError(EngineError):
    """The text or the run's settings cannot be used."""


class RunCancelled(EngineError):
    """A run was stopped before it finished (its visitor asked for something else). `prefix`, when set, holds
    the layers it had computed (an engine.trace.Prefix), which a later run of the same settings can reuse."""

    def __init__(self, message: str, prefix=None):
        super().__init__(message)
        self.prefix = prefix


class RateLimited(EngineError):
    """A visitor started more new runs in a minute than the server allows."""


class BudgetExceeded(EngineError):
    """A run needs more memory than the server's whole budget."""
