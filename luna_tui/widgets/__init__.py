"""The cockpit's panes, one module each. The views table (luna_tui.model.views) names each
pane's widget by its dotted path; ``pane_class`` finds it."""

from importlib import import_module


def pane_class(path: str) -> type:
    """The widget class at the dotted ``path`` (module, then class)."""
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)
