"""Screenshots of each tab of the real studio window, for the README (and a test that keeps them current).

    xvfb-run -a -s "-screen 0 1600x1000x24" python -m studio.screenshots --out docs/screenshots

Fills a fresh store the way a person would (scripted sim demonstrations, a tiny CPU fine-tune started
from the Fine-tune tab, a rollout of its checkpoint from the Rollout tab), then grabs the window from the
screen for each tab: ``first-launch.png``, ``record.png``, ``datasets.png``, ``finetune.png``,
``rollout-live.png``, ``rollout-review.png``. Needs a display (Xvfb is enough); takes about a minute on a
laptop CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

SHOTS = ("first-launch", "record", "datasets", "finetune", "rollout-live", "rollout-review")
WINDOW_SIZE = (1400, 860)


def _wait(app, until, timeout_s: float, what: str) -> None:
    t0 = time.monotonic()
    while not until():
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"screenshots: gave up waiting for {what} after {timeout_s:.0f} s")
        app.processEvents()
        time.sleep(0.02)


def _settle(app, seconds: float = 0.4) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        app.processEvents()
        time.sleep(0.02)


GRABBED: list[str] = []  # how each picture was taken: "screen" (X server pixels) or "widget"


def _grab(app, window, path: Path) -> Path:
    """The window as the screen shows it (X server pixels); the widget's own rendering where the platform
    cannot read the screen (offscreen)."""
    _settle(app)
    screen = window.screen() or app.primaryScreen()
    pix = screen.grabWindow(int(window.winId())) if app.platformName() == "xcb" else None
    GRABBED.append("screen")
    if pix is None or pix.isNull() or pix.width() < 100:
        pix = window.grab()
        GRABBED[-1] = "widget"
    if not pix.save(str(path), "PNG"):
        raise OSError(f"screenshots: cannot write {path}")
    return path


def _record_demos(home: Path, episodes: int) -> None:
    import io

    from studio.commands.record import run_record

    run_record(home, "sim", "pick-demos", None, episodes, fps=15.0, episode_time=6.0, reset_time=0.0,
               scripted=True, size="160x120", out=io.StringIO())


def take(out: Path, home: Path | None = None, steps: int = 24) -> list[Path]:
    """Take every screenshot into ``out``; returns the PNG paths."""
    from widgets.gui_gc import gui_app

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    home = Path(home) if home is not None else Path(tempfile.mkdtemp(prefix="vla-shots-"))
    app = gui_app()
    from studio.app import MainWindow
    from studio.context import AppContext

    paths = []
    ctx = AppContext(home=home, rig="sim")
    window = MainWindow(ctx)
    window.setWindowTitle("vla-studio")
    window.resize(*WINDOW_SIZE)
    window.show()
    _wait(app, window.isVisible, 10, "the window")
    _wait(app, lambda: window.all_tabs_built, 120, "the tabs")  # built once the store is open
    try:
        tabs = window.tab_widgets
        # 1. a fresh store: what the studio says first
        paths.append(_grab(app, window, out / "first-launch.png"))
        window.welcome.hide_button.click()  # the person has read the guide: the tabs get the whole window

        # 2. Record: the sim rig connected, cameras live
        record = tabs["Record"]
        window.tabs.setCurrentWidget(record)
        record.connect_rig()
        _wait(app, lambda: record.rig is not None and all(v.frames_shown > 10 for v in record._views.values())
              and record._views, 60, "the sim rig's cameras")
        _settle(app, 1.5)  # counters and the joint chart fill in
        paths.append(_grab(app, window, out / "record.png"))
        record.disconnect_rig()
        _wait(app, lambda: record.phase == "disconnected" and not ctx.rigs.holder, 30, "the rig to disconnect")

        # 3. Datasets: scripted demonstrations, one selected
        _record_demos(home, 2)
        ctx.store_changed.emit()
        datasets = tabs["Datasets"]
        window.tabs.setCurrentWidget(datasets)
        datasets.refresh()
        _wait(app, lambda: datasets.loaded, 30, "the Datasets tab's rows")  # read in a thread
        ids = datasets.visible_ids()
        if ids:
            datasets.select_episode(ids[0])
            _wait(app, lambda: datasets.viewer.shown_tick >= 0 and datasets.viewer.plots.drawn, 30,
                  "the episode's frame and joint curves")
        _settle(app, 1.0)
        paths.append(_grab(app, window, out / "datasets.png"))

        # 4. Fine-tune: the tiny model on the CPU, started from the tab, followed live to the end
        ft = tabs["Fine-tune"]
        window.tabs.setCurrentWidget(ft)
        ft.refresh_datasets()
        ft.dataset_combo.setCurrentIndex(max(0, ft.dataset_combo.findText("pick-demos")))
        ft.model_edit.setCurrentText("tiny")
        ft.steps_spin.setValue(steps)
        ft.head_combo.setCurrentText("chunk")  # a chunk of 8 actions: the Rollout tab draws it as a path
        ft.chunk_spin.setValue(8)
        ft.lr_spin.setValue(3e-3)
        run_id = ft.start_run()
        if run_id is None:
            raise RuntimeError("screenshots: the Fine-tune tab refused to start the tiny run")
        _wait(app, lambda: not ft.is_running, 300, "the tiny fine-tune")
        ctx.store_changed.emit()
        ft.refresh_history()
        ft.select_run(run_id)
        paths.append(_grab(app, window, out / "finetune.png"))

        # 5. Rollout: the tuned checkpoint drives the sim with overlays
        ro = tabs["Rollout"]
        ft._on_open_clicked()  # "Open checkpoint in Rollout"
        window.tabs.setCurrentWidget(ro)
        ro.rig_spec = "sim"
        ro.episodes_spin.setValue(1)
        ro.fps_spin.setValue(15)
        ro.max_s_spin.setValue(6)
        ro.execute_spin.setValue(4)
        ro.start_rollout()
        _wait(app, lambda: ro.ticks_shown > 30, 120, "the rollout's first ticks")
        paths.append(_grab(app, window, out / "rollout-live.png"))
        _wait(app, lambda: not ro.running, 60, "the rollout to end")

        # 6. Review: the stored rollout played back with its overlays
        ro.inner_tabs.setCurrentIndex(1)
        review = ro.review
        review.refresh()
        if review.table.rowCount():
            review.table.selectRow(0)
            review.slider.setValue(review.slider.maximum() // 2)
        paths.append(_grab(app, window, out / "rollout-review.png"))
    finally:
        window.close()
        _settle(app, 0.2)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m studio.screenshots", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/screenshots", help="folder for the PNGs (default docs/screenshots)")
    p.add_argument("--home", default=None, help="store to fill (default: a fresh temporary folder)")
    p.add_argument("--steps", type=int, default=24, help="steps of the tiny fine-tune (default 24)")
    args = p.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    from PyQt6.QtWidgets import QApplication

    for path in take(Path(args.out), Path(args.home) if args.home else None, steps=args.steps):
        print(path, flush=True)
    print(f"platform {QApplication.instance().platformName()}; grabbed from: {', '.join(GRABBED)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
