"""`luna-tui demo`'s cockpit: the attached cockpit on one run of the story, which leaves by
itself a few seconds after the run ends (Leaving.after_run_s), so that the next
run's cockpit follows."""

from __future__ import annotations

#: Seconds the ended run's cockpit stays (its last validation, the verdict) before the next.
LINGER_S = 6.0


def follow_run(run_dir: str, runs_dir: str) -> bool:
    """The cockpit on ``run_dir`` until the run is over (True) or it is left by hand
    (False)."""
    from luna_tui.attach import build_attach_app
    from luna_tui.images import image_widget
    from luna_tui.images import resolve as resolve_images

    app = build_attach_app(run_dir, runs_dir=runs_dir,
                           image_class=image_widget(resolve_images("auto")))
    app.leaving.after_run_s = LINGER_S
    try:
        app.run()
    finally:
        app.link.close()
    return app.leaving.left_by_itself
