"""Diagnostics (a view of its own): how the latest validation ranks nodules against the rest,
beside the validation before it: LUNA16's FROC (sensitivity against false positives per scan
on a log axis, the seven points of the CPM marked), the PR curve, the prediction histograms of
nodules and non-nodules (the book's TensorBoard histograms) with one line that reads them, and
the confusion counts at the threshold. All four at once on a large screen; one at a time,
cycled with `n`, on a small one. Drawn only when a new validation arrives or the size changes
(luna_tui.model.score_plots has the numbers)."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.widgets import Static

from luna_core.run import verdict
from luna_tui.model import plotdata as pd
from luna_tui.model import score_plots as dg
from luna_tui.model.snapshot import RunSnapshot
from luna_tui.widgets.pane import CockpitPane
from luna_tui.widgets.trends import TrendPlot

#: The histograms' y axis runs to this times 100 %: the legend's rows sit above the data.
HISTOGRAM_HEADROOM = 1.35
_N_HELP = ("the next plot (FROC, PR curve, histograms, confusion) when the screen shows one "
           "at a time")
BEFORE_COLOR = (150, 150, 150)


class DiagnosticsPane(CockpitPane, Container):
    can_focus = True

    KEYS = [Binding("n", "next_plot", "Next plot", show=False, tooltip=_N_HELP)]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "Diagnostics · latest validation"
        self.current = 0                  # the plot shown when one at a time
        self.grid = False
        self._drawn: tuple | None = None
        self._snap: RunSnapshot | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="diag-reading")
        with Container(id="diag-plots"):
            yield TrendPlot("FROC", id="diag-froc", classes="diag-plot")
            yield TrendPlot("PR curve", id="diag-pr", classes="diag-plot")
            yield TrendPlot("predictions", id="diag-histograms", classes="diag-plot")
            yield Static("", id="diag-confusion", classes="diag-plot")

    # -- arrangement -----------------------------------------------------------------------

    def show_plots(self, grid: bool) -> None:
        """All four plots in a 2 x 2 grid, or the current one alone."""
        self.grid = grid
        self.set_class(grid, "-grid")
        for k, name in enumerate(dg.PLOTS):
            self.query_one(f"#diag-{name}").display = grid or k == self.current
        self._update_title()

    def action_next_plot(self) -> None:
        """`n`: the diagnostics view, or its next plot when it shows one at a time."""
        if not self.bring_up() and not self.grid:
            self.next_plot()

    def laid_out(self, layout, width: int, height: int) -> None:
        self.show_plots(dg.grid(width, height))

    def next_plot(self) -> str:
        self.current = (self.current + 1) % len(dg.PLOTS)
        self.show_plots(self.grid)
        return dg.PLOTS[self.current]

    def _update_title(self) -> None:
        if self.grid:
            self.border_subtitle = ""
        else:
            name = dg.PLOT_NAMES[dg.PLOTS[self.current]]
            self.border_subtitle = f"{self.current + 1}/{len(dg.PLOTS)} {name} · n next"

    def on_resize(self) -> None:
        if self._snap is not None:
            self.call_after_refresh(self.show, self._snap, True)

    # -- drawing ---------------------------------------------------------------------------

    def show(self, snap: RunSnapshot, force: bool = False) -> None:
        self._snap = snap
        key = (snap.scores and snap.scores[-1][0], len(snap.scores), self.size)
        if not force and key == self._drawn:
            return
        self._drawn = key
        reading = self.query_one("#diag-reading", Static)
        if not snap.scores or snap.task == "analysis":
            said = ("a --task seg run has no candidate ranking to score (no FROC, PR curve "
                    "or histograms): its numbers are in the pixel table (1), its worst slices "
                    "in the examples (6)" if snap.task == "seg" else
                    "an analysis' scores are in the Detection pane (1) and its folder's "
                    "summary.json (the FROC's seven points), its detections in detections.csv"
                    if snap.task == "analysis" else
                    "no scored validation yet: the diagnostics appear after the first "
                    "validation")
            reading.update(Text(said, style="dim"))
            for name in ("froc", "pr", "histograms"):
                self.query_one(f"#diag-{name}", TrendPlot).redraw(
                    lambda w, n=name: w.plt.title(w.fit(f"{dg.PLOT_NAMES[n]} (after "
                                                        "validation)", dg.PLOT_NAMES[n])))
            self.query_one("#diag-confusion", Static).update("")
            return
        epoch, score = snap.scores[-1]
        before_epoch, before = snap.scores[-2] if len(snap.scores) > 1 else (None, None)
        line = Text(f"val E{epoch}: ", style="bold")
        line.append(verdict.verdict(dg.score_metrics(score), dg.cpm_history(snap)),
                    style="bold")
        line.append("\n" + dg.reading(score))
        reading.update(line)
        self.query_one("#diag-froc", TrendPlot).redraw(
            lambda w: self._froc(w, score, epoch, before, before_epoch))
        self.query_one("#diag-pr", TrendPlot).redraw(
            lambda w: self._pr(w, score, epoch, before, before_epoch))
        self.query_one("#diag-histograms", TrendPlot).redraw(
            lambda w: self._histograms(w, score, epoch))
        self.query_one("#diag-confusion", Static).update(
            Text("\n".join(dg.confusion_lines(score, before, epoch, before_epoch))))

    @staticmethod
    def _froc(w: TrendPlot, score: Mapping, epoch: int, before: Mapping | None,
              before_epoch: int | None) -> None:
        plt = w.plt
        if before is not None and before.get("cpm") is not None:
            xs, ys = dg.froc_points(before)
            plt.plot(xs, ys, marker="·", color=BEFORE_COLOR, label=f"E{before_epoch}")
        xs, ys = dg.froc_points(score)
        if xs:
            plt.plot(xs, ys, marker="braille", color=pd.VAL_COLOR, label=f"E{epoch}")
            mx, my = dg.froc_marks(score)
            plt.scatter(mx, my, marker=pd.CPM_SERIES[1], color=pd.VAL_COLOR)
        ticks, labels = dg.froc_ticks()
        plt.xticks(ticks, labels)
        plt.xlim(ticks[0], ticks[-1])
        plt.ylim(0, 1)
        plt.xlabel("false positives per scan")
        plt.title(w.fit(*dg.froc_title(score, epoch, before, before_epoch)))

    @staticmethod
    def _pr(w: TrendPlot, score: Mapping, epoch: int, before: Mapping | None,
            before_epoch: int | None) -> None:
        plt = w.plt
        if before is not None and before.get("pr_recall"):
            plt.plot(before["pr_recall"], before["pr_precision"], marker="·",
                     color=BEFORE_COLOR, label=f"E{before_epoch}")
        if score.get("pr_recall"):
            plt.plot(score["pr_recall"], score["pr_precision"], marker="braille",
                     color=pd.VAL_COLOR, label=f"E{epoch}")
        plt.xlim(0, 1)
        plt.ylim(0, 1)
        plt.xlabel("recall (nodules)")
        ap = score.get("average_precision")
        ap_text = "-" if ap is None else f"{ap:.3f}"
        plt.title(w.fit(f"PR curve val E{epoch} · AP {ap_text} · precision against recall",
                        f"PR E{epoch} · AP {ap_text}", f"AP {ap_text}", "PR"))

    @staticmethod
    def _histograms(w: TrendPlot, score: Mapping, epoch: int) -> None:
        plt = w.plt
        xs = dg.bin_centres(score)
        for key, name, what in (("hist_neg", "non-nodules", "all"),
                                ("hist_pos", "nodules", "pos")):
            counts = list(score.get(key) or [])
            if counts:
                color, marker = pd.SERIES[("val", what)]
                plt.plot(xs, dg.class_share(counts), marker=marker, color=color,
                         label=f"{name} ({sum(counts):,})")
        plt.xlim(0, 1)
        # headroom above 100 % for the legend (top left), so that a class all in the first
        # bin (non-nodules at p ~ 0) is drawn below it, not hidden by it
        plt.ylim(0, 100 * HISTOGRAM_HEADROOM)
        plt.yticks([0, 25, 50, 75, 100])
        plt.xlabel("probability of nodule")
        plt.title(w.fit(f"predictions val E{epoch} · % of each class per "
                        f"{1 / int(score.get('hist_bins') or 20):g} of probability",
                        f"predictions E{epoch} (% of class)", "predictions"))
