"""`luna-tui demo`'s cockpit: the attached cockpit on one run of the story, which leaves by
itself a few seconds after the run ends, so that the next run's cockpit follows."""

from __future__ import annotations

from luna_tui.app import CockpitApp

#: Seconds the ended run's cockpit stays (its last validation, the verdict) before the next.
LINGER_S = 6.0


class FollowingCockpit(CockpitApp):
    """A CockpitApp that exits LINGER_S after its run is over; ``left_by_hand`` says whether
    it was closed before that."""

    left_by_hand = True
    _leaving_soon = False

    def show(self, snap) -> None:
        super().show(snap)
        if self.run_over and not self._leaving_soon:
            self._leaving_soon = True
            self.set_timer(LINGER_S, self._leave_after_run)

    def _leave_after_run(self) -> None:
        self.left_by_hand = False
        self.exit(0)


def follow_run(run_dir: str, runs_dir: str) -> bool:
    """The cockpit on ``run_dir`` until the run is over (True) or it is left by hand
    (False)."""
    from luna_tui.attach import build_attach_app
    from luna_tui.images import image_widget
    from luna_tui.images import resolve as resolve_images

    app = build_attach_app(run_dir, runs_dir=runs_dir, image_class=image_widget(
        resolve_images("auto")), app_class=FollowingCockpit)
    try:
        app.run()
    finally:
        app.link.close()
    return not app.left_by_hand
