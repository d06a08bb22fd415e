"""The terminal's own ways to call the user back: the bell, and a desktop notification escape
(OSC 9, which iTerm2, WezTerm, kitty and Windows Terminal show; OSC 777, which VTE terminals
and foot show), wrapped for tmux so it passes through to the outer terminal. No Textual."""

from __future__ import annotations

BEL = "\a"


def _clean(text: str, limit: int = 200) -> str:
    """No control characters (they would end the escape early), one short line."""
    text = "".join(ch if ch.isprintable() else " " for ch in text).replace(";", ",")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def desktop_notification(title: str, body: str, in_tmux: bool = False) -> str:
    """OSC 9 and OSC 777 for ``title``: ``body``; in tmux each is passed through
    (``ESC P tmux; ... ESC \\``, its ESCs doubled; tmux needs ``allow-passthrough on``)."""
    title, body = _clean(title), _clean(body)
    sequences = [f"\x1b]9;{title}: {body}\a", f"\x1b]777;notify;{title};{body}\a"]
    if in_tmux:
        sequences = ["\x1bPtmux;" + s.replace("\x1b", "\x1b\x1b") + "\x1b\\" for s in sequences]
    return "".join(sequences)
