"""The cockpit's panes, one module each."""

from luna_tui.widgets.bottleneck import BottleneckPane
from luna_tui.widgets.class_table import ClassTablePane
from luna_tui.widgets.diagnostics import DiagnosticsPane
from luna_tui.widgets.examples import ExamplesPane
from luna_tui.widgets.log import LogPane
from luna_tui.widgets.progress import ProgressPane
from luna_tui.widgets.system import SystemPane
from luna_tui.widgets.trends import TrendsPane

__all__ = ["BottleneckPane", "ClassTablePane", "DiagnosticsPane", "ExamplesPane", "LogPane",
           "ProgressPane", "SystemPane", "TrendsPane"]
