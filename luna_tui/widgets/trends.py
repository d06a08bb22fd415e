"""Trends: per-epoch loss and positive-class accuracy for trn and val, and the live per-batch
training loss (already downsampled by the collector).

Plots are rebuilt only when their data changed, and the live line at most
``1 / min_interval`` times a second, so a redraw never competes with the UI.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container
from textual_plotext import PlotextPlot

from luna_tui.snapshot import EpochPoint, RunSnapshot

TRN_COLOR = "cyan"
VAL_COLOR = "magenta"


class TrendPlot(PlotextPlot):
    """A PlotextPlot that counts its rebuilds (for tests and for keeping them rare)."""

    def __init__(self, title: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.plot_title = title
        self.redraws = 0

    def on_mount(self) -> None:
        super().on_mount()
        self.plt.title(self.plot_title)
        self.plt.frame(False)

    def render(self):
        try:
            return super().render()
        except Exception as exc:  # noqa: BLE001 - a plotting hiccup must not end the cockpit
            return Text(f"{self.plot_title}: cannot draw ({type(exc).__name__})", style="dim")

    def redraw(self, draw: Callable[[PlotextPlot], None]) -> None:
        plt = self.plt
        plt.clear_figure()          # data and axis settings (ticks, limits) alike
        plt.frame(False)
        plt.title(self.plot_title)
        draw(self)
        self.redraws += 1
        self.refresh()


def _epochs(points: tuple[EpochPoint, ...], attr: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for p in points:
        v = getattr(p, attr)
        if v is not None and v == v and abs(v) != float("inf"):
            xs.append(p.epoch)
            ys.append(v)
    return xs, ys


class TrendsPane(Container):
    DEFAULT_CSS = """
    TrendsPane { layout: horizontal; height: 1fr; }
    TrendsPane > TrendPlot { width: 1fr; height: 1fr; }
    """

    def __init__(self, *, min_interval: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "Trends"
        self.min_interval = min_interval
        self._metrics_version: int | None = None
        self._loss_version: int | None = None
        self._loss_drawn_at = -1e9

    def compose(self) -> ComposeResult:
        yield TrendPlot("training loss per batch", id="plot-batch")
        yield TrendPlot("loss per epoch", id="plot-loss")
        yield TrendPlot("% of nodules correct", id="plot-pos")

    def show(self, snap: RunSnapshot, *, force: bool = False) -> None:
        if force or snap.metrics_version != self._metrics_version:
            self._metrics_version = snap.metrics_version
            self._draw_epochs(snap)
        now = time.monotonic()
        if snap.batch_loss_version != self._loss_version and (
                force or now - self._loss_drawn_at >= self.min_interval):
            self._loss_version = snap.batch_loss_version
            self._loss_drawn_at = now
            self._draw_batches(snap)

    def _draw_batches(self, snap: RunSnapshot) -> None:
        points = snap.batch_loss

        def draw(w: PlotextPlot) -> None:
            plt = w.plt
            if points:
                xs = [p[0] for p in points]
                ys = [p[1] for p in points]
                plt.plot(xs, ys, marker="braille", color=TRN_COLOR)
                plt.xlabel("epoch")
            else:
                plt.title("training loss per batch (waiting)")

        self.query_one("#plot-batch", TrendPlot).redraw(draw)

    def _draw_epochs(self, snap: RunSnapshot) -> None:
        trn = snap.history.get("trn", ())
        val = snap.history.get("val", ())
        last = max([p.epoch for p in trn + val] or [1])
        epoch_ticks = list(range(1, last + 1)) if last <= 12 else None

        def loss(w: PlotextPlot) -> None:
            plt = w.plt
            any_data = False
            values = [v for pts in (trn, val) for p in pts for v in (p.loss_all, p.loss_pos)
                      if v is not None and v > 0 and math.isfinite(v)]
            # loss/pos is often 100x loss/all (the book's imbalance): a log axis shows both.
            # (log10 is applied here, not by plotext, whose log scale is not re-render safe)
            log = bool(values) and max(values) / min(values) > 30
            for points, name, color in ((trn, "trn", TRN_COLOR), (val, "val", VAL_COLOR)):
                for attr, label, marker in (("loss_all", "all", "hd"),
                                            ("loss_pos", "pos", "dot")):
                    xs, ys = _epochs(points, attr)
                    if log:
                        xs = [x for x, y in zip(xs, ys, strict=True) if y > 0]
                        ys = [math.log10(y) for y in ys if y > 0]
                    if xs:
                        any_data = True
                        plt.plot(xs, ys, marker=marker, color=color, label=f"{name} {label}")
            if log:
                lo = math.floor(math.log10(min(values)))
                hi = math.ceil(math.log10(max(values)))
                ticks = list(range(lo, hi + 1))
                plt.yticks(ticks, [f"{10.0 ** t:g}" for t in ticks])
                plt.ylim(lo, hi)
            _epoch_axis(plt, epoch_ticks, last, any_data, "loss per epoch" + (
                " (log)" if log else ""))

        def pos(w: PlotextPlot) -> None:
            plt = w.plt
            any_data = False
            for points, name, color in ((trn, "trn", TRN_COLOR), (val, "val", VAL_COLOR)):
                xs, ys = _epochs(points, "correct_pos")
                if xs:
                    any_data = True
                    plt.plot(xs, ys, marker="hd", color=color, label=name)
            plt.ylim(0, 100)
            _epoch_axis(plt, epoch_ticks, last, any_data, "% of nodules correct")

        self.query_one("#plot-loss", TrendPlot).redraw(loss)
        self.query_one("#plot-pos", TrendPlot).redraw(pos)


def _epoch_axis(plt, ticks, last: int, any_data: bool, title: str) -> None:
    plt.title(title if any_data else f"{title} (after epoch 1)")
    if ticks:
        plt.xticks(ticks)
    plt.xlim(0.5, last + 0.5)
