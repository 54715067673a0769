"""The tabs. Each is one module here with `render(ctx: ViewContext) -> None`, listed once in `registry.VIEWS`.

A view reads the run and the state from its context, draws with the pure builders of components/figures, keeps
what it derives from a trace in `components.derived.per_trace`, and changes the app state only through
`components.state.update`. To keep values of its own in the link, a view declares `FIELDS` (state.Field).
Modules whose names start with "_" are parts several views share, not tabs.
"""
