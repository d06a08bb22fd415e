"""luna_core's log records as LogRecord events (console, cockpit, event file), for the
length of a run."""

from __future__ import annotations

import logging

from luna_core.run import events as ev


class BusLogHandler(logging.Handler):
    """Turns luna_core's log records into LogRecord events; ``install`` routes the
    "luna_core" logger to it alone (at INFO), ``remove`` puts the logger back as it was."""

    def __init__(self, bus: ev.EventBus) -> None:
        super().__init__()
        self.bus = bus
        self._saved: tuple[int, bool] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.bus.emit(ev.LogRecord(level=record.levelname, message=record.getMessage(),
                                   t=record.created))

    @classmethod
    def install(cls, bus: ev.EventBus) -> BusLogHandler:
        handler = cls(bus)
        core_log = logging.getLogger("luna_core")
        handler._saved = core_log.level, core_log.propagate
        core_log.addHandler(handler)
        core_log.setLevel(logging.INFO)
        core_log.propagate = False
        return handler

    def remove(self) -> None:
        core_log = logging.getLogger("luna_core")
        core_log.removeHandler(self)
        core_log.setLevel(self._saved[0])
        core_log.propagate = self._saved[1]
