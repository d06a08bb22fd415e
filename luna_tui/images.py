"""Which way the cockpit draws CT images (`--images auto|halfblock|sixel|kitty|off`), decided
before the app starts, as textual-image needs: it asks the terminal what it supports when it
is imported, which it cannot do once Textual owns the terminal.

``auto``: half-blocks (two pixels per cell, coloured Unicode ▀) inside tmux or screen (which
pass sixel only when built for it and never the kitty protocol) and when unsure; otherwise
what textual-image finds (kitty graphics, sixel), else half-blocks. A forced mode is used as
asked; ``off`` draws no images (the numbers only)."""

from __future__ import annotations

import os
from collections.abc import Mapping

MODES = ("auto", "halfblock", "sixel", "kitty", "off")


def in_multiplexer(env: Mapping[str, str]) -> bool:
    term = env.get("TERM", "")
    return bool(env.get("TMUX") or env.get("STY")) or term.startswith(("screen", "tmux"))


def resolve(mode: str, env: Mapping[str, str] | None = None) -> str:
    """The mode to draw with: ``auto`` decided, any other as given."""
    env = os.environ if env is None else env
    if mode != "auto":
        return mode
    if in_multiplexer(env):
        return "halfblock"
    try:
        from textual_image import renderable
    except Exception:  # noqa: BLE001 - no terminal to ask: the safe choice
        return "halfblock"
    found = getattr(renderable, "Image", None)
    if found is renderable.SixelImage:
        return "sixel"
    if found is renderable.TGPImage:
        return "kitty"
    return "halfblock"


def image_widget(mode: str):
    """The textual-image widget class for a resolved mode (None: ``off``)."""
    if mode == "off":
        return None
    from textual_image import widget

    return {"halfblock": widget.HalfcellImage, "sixel": widget.SixelImage,
            "kitty": widget.TGPImage}[mode]
