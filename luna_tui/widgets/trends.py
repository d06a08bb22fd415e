"""Trends: the live training loss per batch (smoothed), and per epoch the loss (all and
positives) and the % of nodules correct, for trn and val, with LUNA16's CPM of each
validation (x 100) once the run has one.

Each plot's title carries its current value and the best so far; a few huge values are drawn
clipped at the top (▲) instead of squashing the y axis; `s` toggles the smoothing, `y` the log
scale of the loss plots, `x` epochs or training samples on the x axis (luna_tui.model.plotdata has
the rules). Plots are rebuilt only when their data or options changed, and the live line at
most ``1 / min_interval`` times a second, so a redraw never competes with the UI.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual_plotext import PlotextPlot

from luna_core.run.metric_catalog import CORRECT_POS, CPM, LOSS, RECALL
from luna_tui.model import plotdata as pd
from luna_tui.model.plotdata import PlotOptions
from luna_tui.model.snapshot import EpochPoint, RunSnapshot
from luna_tui.widgets.pane import CockpitPane

PLOT_KEYS_HELP = ("plots: s smoothing of the batch loss on/off (EMA 0.9), y log scale on/off, "
                  "x epochs or training samples")


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

    def fit(self, *titles: str) -> str:
        """The first title that fits the plot's width (plotext drops one that does not, and
        its y axis labels take ~4 columns of it)."""
        width = self.size.width or 80
        for title in titles:
            if len(title) + 4 <= width:
                return title
        return titles[-1][: max(1, width - 4)]

    def redraw(self, draw: Callable[[PlotextPlot], None]) -> None:
        plt = self.plt
        plt.clear_figure()          # data and axis settings (ticks, limits) alike
        plt.frame(False)
        draw(self)
        self.redraws += 1
        self.refresh()


def _epochs(points: tuple[EpochPoint, ...], attr: str) -> list[tuple[int, float]]:
    return [(p.epoch, getattr(p, attr)) for p in points if pd.finite(getattr(p, attr))]


class TrendsPane(CockpitPane, Container):
    can_focus = True          # Tab moves here; z zooms the focused pane

    DEFAULT_CSS = """
    TrendsPane { layout: horizontal; height: 1fr; }
    TrendsPane > TrendPlot { width: 1fr; height: 1fr; }
    TrendsPane.-stacked { layout: vertical; }
    """

    #: The plot keys (``action_plot``): the screen binds them, so they work in every view.
    KEYS = [Binding(key, f"plot('{what}')", name, show=False, tooltip=PLOT_KEYS_HELP)
            for key, what, name in (("s", "smoothing", "Smooth"), ("y", "log", "Log y"),
                                    ("x", "x", "x axis"))]

    def __init__(self, *, min_interval: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "Trends"
        self.min_interval = min_interval
        self.options = PlotOptions()
        self._metrics_version: int | None = None
        self._loss_version: int | None = None
        self._loss_drawn_at = -1e9
        self._snap: RunSnapshot | None = None
        self._log_auto = False        # what the data says when the user has not chosen
        self.baseline = None          # a RunHistory drawn beside this run (luna_core.run.compare)

    @classmethod
    def for_cockpit(cls, screen, name: str) -> TrendsPane:
        return cls(id=name, min_interval=screen.plot_interval)

    def set_baseline(self, baseline) -> None:
        self.baseline = baseline
        if self._snap is not None:
            self.show(self._snap, force=True)

    def _baseline_points(self, key: str, scale: float = 1.0) -> list[tuple[float, float]]:
        """The baseline's validation ``key`` per epoch, at its epoch or its own training
        samples (so both runs line up by samples seen)."""
        if self.baseline is None:
            return []
        out = []
        for row in self.baseline.epochs:
            v = row.values.get(key)
            if pd.finite(v):
                x = row.total_samples if self.options.x_samples else row.epoch
                out.append((x, v * scale))
        return out

    def compose(self) -> ComposeResult:
        yield TrendPlot("training loss per batch", id="plot-batch")
        yield TrendPlot("loss per epoch", id="plot-loss")
        yield TrendPlot("% of nodules correct", id="plot-pos")

    def arrange_plots(self, plots: str) -> None:
        """'row': the plots side by side; 'column': stacked."""
        self.set_class(plots != "row", "-stacked")

    def laid_out(self, layout, width: int, height: int) -> None:
        self.arrange_plots(layout.plots)

    def on_resize(self) -> None:
        if self._snap is not None:      # titles and ticks depend on the width
            self.call_after_refresh(self.show, self._snap, force=True)

    # -- the plot keys --------------------------------------------------------------------

    def set_options(self, **changes) -> PlotOptions:
        self.options = PlotOptions(**{**self.options.__dict__, **changes})
        if self._snap is not None:
            self.show(self._snap, force=True)
        return self.options

    def toggle_smoothing(self) -> PlotOptions:
        return self.set_options(smoothing=0.0 if self.options.smoothing else pd.SMOOTHING)

    def toggle_log(self) -> PlotOptions:
        """Log scale on both loss plots, or off on both. Until the first `y` the batch loss
        is linear and the epoch loss log when its values span more than 30x."""
        return self.set_options(log_y=not self.options.log_y)

    def toggle_x(self) -> PlotOptions:
        return self.set_options(x_samples=not self.options.x_samples)

    def toggle(self, what: str) -> PlotOptions:
        """A plot key: 'smoothing' (s), 'log' (y) or 'x' (x)."""
        return {"smoothing": self.toggle_smoothing, "log": self.toggle_log,
                "x": self.toggle_x}[what]()

    def action_plot(self, what: str) -> None:
        """The plot keys (s y x): their titles and axis labels say what is on."""
        self.toggle(what)

    # -- drawing --------------------------------------------------------------------------

    def show(self, snap: RunSnapshot, *, force: bool = False) -> None:
        self._snap = snap
        if snap.task == "analysis":      # `luna-tui analyze` trains nothing
            self.border_title = "Trends · none: an analysis trains nothing (its series: Log)"
            return
        if force or snap.metrics_version != self._metrics_version:
            self._metrics_version = snap.metrics_version
            self._draw_epochs(snap)
        now = time.monotonic()
        if force or (snap.batch_loss_version != self._loss_version
                     and now - self._loss_drawn_at >= self.min_interval):
            self._loss_version = snap.batch_loss_version
            self._loss_drawn_at = now
            self._draw_batches(snap)

    def _x_label(self, snap: RunSnapshot) -> str:
        return "training samples" if self.options.x_samples and snap.trn_samples else "epoch"

    def _draw_batches(self, snap: RunSnapshot) -> None:
        points = snap.batch_loss
        opts = self.options
        per_epoch = snap.trn_samples

        def draw(w: TrendPlot) -> None:
            plt = w.plt
            if not points:
                plt.title(w.fit("training loss per batch (waiting)", "batch loss"))
                return
            xs = [pd.x_of_epoch(p[0], per_epoch, opts) for p in points]
            raw = [p[1] for p in points]
            smooth = pd.ema(raw, opts.smoothing)
            log = pd.wants_log(raw, bool(opts.log_y))   # linear until `y` asks for log
            limit = None if log else pd.clip_limit(raw)
            shown_raw, cx, cy = pd.clipped(xs, raw, limit)
            shown_smooth = pd.clipped(xs, smooth, limit)[0]

            def y(values: list[float]) -> list[float]:   # log10 here (see the loss plot)
                return [math.log10(max(v, 1e-12)) for v in values] if log else values

            if opts.smoothing:
                plt.plot(xs, y(shown_raw), marker="·", color=pd.RAW_COLOR)
            plt.plot(xs, y(shown_smooth), marker="braille", color=pd.TRN_COLOR)
            if cx:
                plt.scatter(cx, cy, marker=pd.CLIP_MARKER, color=pd.CLIP_COLOR)
            axis = pd.log_axis(raw) if log else None
            if axis is not None:
                ticks, labels, lo, hi = axis
                plt.yticks(ticks, labels)
                plt.ylim(lo, hi)
            how = (f"EMA {opts.smoothing:g}" if opts.smoothing else "raw") + \
                (", log" if log else "")
            clip = f" · {len(cx)} ▲ clipped" if cx else ""
            now, low = smooth[-1], min(smooth)
            plt.title(w.fit(f"training loss per batch · {now:.4f} ({how}) · min {low:.4f}"
                            f"{clip}", f"batch loss {now:.4f} ({how}){clip}",
                            f"loss {now:.4f} ({how})", f"loss {now:.3f}", f"{now:.3f}"))
            self._sample_ticks(plt, min(xs), max(xs))
            plt.xlabel(self._x_label(snap))

        self.query_one("#plot-batch", TrendPlot).redraw(draw)

    def _draw_epochs(self, snap: RunSnapshot) -> None:
        frame = _EpochFrame.of(snap, self.options)
        self.query_one("#plot-loss", TrendPlot).redraw(lambda w: self._draw_loss(w, frame))
        self.query_one("#plot-pos", TrendPlot).redraw(lambda w: self._draw_pos(w, frame))

    def _draw_loss(self, w: TrendPlot, f: _EpochFrame) -> None:
        plt, opts, trn, val, x = w.plt, self.options, f.trn, f.val, f.x
        values = [v for pts in (trn, val) for p in pts for v in (p.loss_all, p.loss_pos)
                  if v is not None and v > 0 and math.isfinite(v)]
        # loss/pos is often 100x loss/all (the book's imbalance): a log axis shows both.
        # (log10 is applied here, not by plotext, whose log scale is not re-render safe)
        self._log_auto = bool(values) and max(values) / min(values) > 30
        log = bool(values) and (self._log_auto if opts.log_y is None else opts.log_y)
        for points, name in ((trn, "trn"), (val, "val")):
            for attr, what in (("loss_all", "all"), ("loss_pos", "pos")):
                pts = _epochs(points, attr)
                if log:
                    pts = [(e, math.log10(v)) for e, v in pts if v > 0]
                if pts:
                    color, marker = pd.SERIES[(name, what)]
                    plt.plot([x(e) for e, _ in pts], [v for _, v in pts], marker=marker,
                             color=color, label=f"{name} {what}")
        base = self._baseline_points(LOSS.key)
        if base:
            values += [v for _x, v in base if v > 0]
            pts = [(x, math.log10(v) if log else v) for x, v in base if v > 0 or not log]
            plt.plot([x for x, _ in pts], [v for _, v in pts], marker=pd.BASE_MARKER,
                     color=pd.BASE_COLOR, label="base val all")
        axis = pd.log_axis(values) if log else None
        if axis is not None:
            ticks, labels, lo, hi = axis
            plt.yticks(ticks, labels)
            plt.ylim(lo, hi)
        series = _epochs(val or trn, "loss_all")
        scale = " (log)" if log else ""
        title = (pd.value_title("loss per epoch" + scale, f.title_phase, series, LOSS.lower,
                                LOSS.spec),
                 pd.value_title("loss" + scale, f.title_phase, series, LOSS.lower, ".3f"),
                 "epoch loss")
        self._epoch_axis(w, f.epoch_ticks, f.last, bool(values), title, f.snap)

    def _draw_pos(self, w: TrendPlot, f: _EpochFrame) -> None:
        plt, trn, val, x = w.plt, f.trn, f.val, f.x
        cpm = _epochs(val, "cpm")
        any_data = False
        for points, name in ((trn, "trn"), (val, "val")):
            pts = _epochs(points, "correct_pos")
            if pts:
                any_data = True
                color, marker = pd.SERIES[(name, "all")]
                plt.plot([x(e) for e, _ in pts], [v for _, v in pts], marker=marker,
                         color=color, label=f"{name} %" if cpm else name)
        if cpm:        # LUNA16's CPM, x 100 on the same 0-100 axis
            color, marker = pd.CPM_SERIES
            plt.plot([x(e) for e, _ in cpm], [100 * v for _, v in cpm], marker=marker,
                     color=color, label="val CPM")
        # the baseline's CPM when both runs have one, else its recall (= % of nodules right)
        shown = CPM if cpm and self._baseline_points(CPM.key) else RECALL
        base = self._baseline_points(shown.key, 100.0)
        if base:
            any_data = True
            plt.plot([x for x, _ in base], [v for _, v in base], marker=pd.BASE_MARKER,
                     color=pd.BASE_COLOR,
                     label=f"base {CPM.name}" if shown is CPM else "base val")
        plt.ylim(0, 100)
        if cpm:
            title = (pd.value_title(f"{CPM.name} x100, nodules %", "val", cpm, CPM.lower,
                                    CPM.spec),
                     pd.value_title(CPM.name, "val", cpm, CPM.lower, CPM.spec),
                     pd.value_title(CPM.name, "val", cpm, CPM.lower, ".2f"), CPM.name)
        else:
            series = _epochs(val or trn, "correct_pos")
            m = CORRECT_POS
            label, short = ((m.label, m.short) if f.snap.task != "seg"
                            else ("% of nodule pixels found (recall)", "pixels found %"))
            title = (pd.value_title(label, f.title_phase, series, m.lower, m.spec),
                     pd.value_title(short, f.title_phase, series, m.lower, ".0f"),
                     short)
        self._epoch_axis(w, f.epoch_ticks, f.last, any_data or bool(cpm), title, f.snap)

    def _epoch_axis(self, w: TrendPlot, ticks, last: int, any_data: bool,
                    titles: tuple[str, ...], snap: RunSnapshot) -> None:
        plt = w.plt
        if any_data:
            plt.title(w.fit(*titles))
        else:
            plt.title(w.fit(f"{titles[-1]} (after epoch 1)", titles[-1]))
        per_epoch = snap.trn_samples
        if ticks:
            plt.xticks(ticks)
        lo = pd.x_of_epoch(0.5, per_epoch, self.options)
        hi = pd.x_of_epoch(last + 0.5, per_epoch, self.options)
        plt.xlim(lo, hi)
        self._sample_ticks(plt, lo, hi)
        if self.options.x_samples and per_epoch:
            plt.xlabel("training samples")

    def _sample_ticks(self, plt, lo: float, hi: float) -> None:
        """With samples on the x axis (`x`): round numbers of samples (2k, 4k ...), not
        plotext's fractions."""
        if self.options.x_samples and self._snap is not None and self._snap.trn_samples:
            ticks = pd.nice_ticks(lo, hi)
            if ticks:
                plt.xticks(ticks, [pd.count_label(t) for t in ticks])


@dataclass
class _EpochFrame:
    """What both per-epoch plots draw from: the points, the x of an epoch, the ticks."""

    snap: RunSnapshot
    trn: tuple
    val: tuple
    x: Callable[[float], float]
    epoch_ticks: list[int] | None
    last: int
    title_phase: str

    @classmethod
    def of(cls, snap: RunSnapshot, opts) -> _EpochFrame:
        trn = snap.history.get("trn", ())
        val = snap.history.get("val", ())
        per_epoch = snap.trn_samples
        last = max([p.epoch for p in trn + val] or [1])
        epoch_ticks = list(range(1, last + 1)) if last <= 12 and not (
            opts.x_samples and per_epoch) else None
        samples_at = {p.epoch: p.total_samples for p in trn + val if p.total_samples}

        def x(e: float) -> float:
            if opts.x_samples and e in samples_at:
                return samples_at[e]           # what the run saw, whatever its epoch size
            return pd.x_of_epoch(e, per_epoch, opts)

        return cls(snap, trn, val, x, epoch_ticks, last, "val" if val else "trn")
