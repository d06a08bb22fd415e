"""The views table (issue 29): each view's key, title, help and panes, and each pane's widget,
help, band and one-line summary are declared once, in luna_tui.model.views; the cockpit screen
binds, composes, lays out and builds its help from it. A view added to the table (here a
test-only one) has its key, its pane's keys, its help and its place on screen."""

from __future__ import annotations

import dataclasses

from textual.binding import Binding
from textual.widgets import Static

from luna_core.run.command_table import CommandChannel
from luna_core.run.events import BatchDone
from luna_tui.app import CockpitApp
from luna_tui.link.local import LocalLink
from luna_tui.model import layout as plan
from luna_tui.model import views
from luna_tui.screens import cockpit
from luna_tui.screens.cockpit import CockpitScreen
from luna_tui.screens.help import HelpScreen, key_rows, pane_rows
from luna_tui.widgets import pane_class
from luna_tui.widgets.pane import CockpitPane
from tests.cockpit_helpers import (
    FROZEN_READING,
    frozen_clock,
    on_screen,
    scripted_run,
    wait_for,
)


def bound(bindings, action: str) -> Binding:
    return next(b for b in bindings if b.action == action)


def test_each_view_s_key_title_help_and_panes_come_from_the_table():
    keys = CockpitScreen.BINDINGS
    for k, view in enumerate(views.VIEWS):
        binding = bound(keys, f"view({view.name!r})")
        assert binding.key == view.key
        assert binding.description == ("Views" if k == 0 else view.title)
        assert binding.tooltip == views.views_help()
        assert f"{view.key} {view.help}" in binding.tooltip
        if view.dashboard:
            lay = plan.overview(160, 48, {})
            assert set(lay.rows) == set(view.panes) and view is views.dashboard()
        else:
            assert set(plan.fill_view(view.name, 120, 36).rows) == set(view.panes)
    assert keys[len(cockpit.RUN_KEYS)].key_display == "1-8"       # the footer's "1-8 Views"
    assert not hasattr(plan, "VIEWS")                            # the old, unused table


def test_each_pane_s_widget_help_band_and_keys_come_from_the_table():
    assert pane_rows()[:-1] == [(p.title, views.pane_help(p)) for p in views.PANES]
    assert pane_rows()[-1][0] == "Notifications"
    for spec in views.PANES:
        widget = pane_class(spec.widget)
        assert issubclass(widget, CockpitPane), spec
        assert any(spec.name in v.panes for v in views.VIEWS), spec    # a view shows it
        assert (spec.line is not None) == (spec.name in views.dashboard().panes)
        for key in widget.KEYS:                   # its own keys run its own actions
            assert callable(getattr(widget, f"action_{key.action.split('(')[0]}")), key
            screen_key = bound(CockpitScreen.BINDINGS,
                               f"pane_key({spec.name!r}, {key.action!r})")
            assert screen_key.key == key.key
            home = views.home(spec.name)
            assert screen_key.tooltip.startswith(
                f"{home.name} view ({home.key}): " if views.off_dashboard(spec.name) else "")
    assert views.home("examples").key == "6" and views.home("bottleneck").name == "system"
    assert [band for band, _panes in views.bands(views.dashboard().panes)] == [
        "top", "trends", "mid", "log"]


def test_a_collapsed_pane_s_line_names_the_key_of_its_view():
    from luna_tui.model.snapshot import RunSnapshot

    snap = RunSnapshot()
    assert views.summary(views.pane("log"), snap, None) == "log: nothing yet · press 3 for the log"
    assert views.summary(views.pane("system"), snap, FROZEN_READING).endswith(
        "· press 4 for details")
    assert views.summary(views.pane("trends"), snap, None).endswith("press 2 for the plots")


# -- a view added to the table -------------------------------------------------------------

class FakePane(CockpitPane, Static):
    """A test-only pane with a key of its own: `j` brings its view up, then pokes it."""

    can_focus = True
    KEYS = [Binding("j", "poke", "Poke", show=False, tooltip="j pokes the fake pane")]

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.pokes = 0

    def show(self, snap) -> None:
        self.update(f"fake pane at {snap.batches_done} batches · {self.pokes} pokes")

    def action_poke(self) -> None:
        if not self.bring_up():
            self.pokes += 1


FAKE_PANE = views.PaneSpec("fake", "Fake", "a pane that only tests have.",
                           f"{__name__}.FakePane")
FAKE_VIEW = views.ViewSpec("fake", "9", "Fake", "a fake view", ("fake",))


async def test_a_view_added_to_the_table_has_its_key_its_pane_s_keys_and_its_help(monkeypatch):
    monkeypatch.setattr(views, "PANES", (*views.PANES, FAKE_PANE))
    monkeypatch.setattr(views, "VIEWS", (*views.VIEWS, FAKE_VIEW))

    class Extended(CockpitScreen):
        BINDINGS = cockpit.screen_keys()

    monkeypatch.setattr("luna_tui.app.CockpitScreen", Extended)
    keys = {text: key for key, text in key_rows(Extended.BINDINGS)}
    assert keys[views.views_help()] == "1 2 3 4 5 6 7 8 9"
    assert "9 a fake view" in views.views_help()
    assert keys["fake view (9): j pokes the fake pane"] == "j"
    assert Extended.BINDINGS[len(cockpit.RUN_KEYS)].key_display == "1-9"

    collector = scripted_run(lambda e: isinstance(e, BatchDone) and e.batch_ndx == 20,
                             epochs=2, trn_batches=50, val_batches=10)
    app = CockpitApp(LocalLink(collector, CommandChannel()), clock=frozen_clock(),
                     system_probe=lambda: FROZEN_READING)
    async with app.run_test(size=(120, 40)) as pilot:
        fake = app.query_one(FakePane)
        assert not app.query_one("#slot-fake").display          # not on the overview
        await pilot.press("9")
        await on_screen(pilot, app, "fake pane at 21 batches", "view: fake (1: all)")
        assert app.cockpit.view == "fake" and app.query_one("#slot-fake").display
        await pilot.press("1", "j")                  # in another view: its view first
        await wait_for(pilot, lambda: app.cockpit.view == "fake")
        assert fake.pokes == 0
        await pilot.press("j")
        await wait_for(pilot, lambda: fake.pokes == 1)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert ("j", "fake view (9): j pokes the fake pane") in app.screen.keys
        assert ("Fake", "view 9: a pane that only tests have.") in pane_rows()


def test_the_table_s_specs_are_plain_frozen_data():
    for spec in (*views.PANES, *views.VIEWS):
        assert dataclasses.is_dataclass(spec)
        assert spec.__dataclass_params__.frozen
