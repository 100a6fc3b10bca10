"""Shared test setup: offscreen Qt, headless MuJoCo, markers that skip where the resource is absent."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from recorder.errors import StudioWarning  # noqa: E402

warnings.simplefilter("error", StudioWarning)


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject's addopts): one worker per core, at most 4. Most tests pin torch to one thread and
    many wait on child processes, so a second core halves the suite; past 4 the torchrun and fine-tune children
    of parallel files only compete. `-n 0` runs in one process (e.g. under a debugger)."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    cuda = None
    for item in items:
        if "gpu" in item.keywords:
            if cuda is None:
                cuda = _has_cuda()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        if "hardware" in item.keywords and not os.environ.get("VLA_STUDIO_HARDWARE"):
            item.add_marker(pytest.mark.skip(reason="needs real hardware (set VLA_STUDIO_HARDWARE=1)"))


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh, empty store root used as VLA_STUDIO_HOME."""
    root = tmp_path / "home"
    monkeypatch.setenv("VLA_STUDIO_HOME", str(root))
    return root


@pytest.fixture
def small_disk(tmp_path):
    """A fresh 30 MB tmpfs (a real full disk for disk-full tests); skipped where mounting is not allowed."""
    from tests.diskfull import mount_small_disk

    yield from mount_small_disk(tmp_path)


@pytest.fixture(autouse=True)
def _gui_thread_gc(request):
    """GUI tests run as the studio does (widgets.gui_gc): cyclic garbage, Qt objects in it included, is
    collected in the GUI thread only, and all of it at the end of the test, here, before the next one."""
    if "qtbot" not in request.fixturenames and "qapp" not in request.fixturenames:
        yield
        return
    from widgets import gui_gc

    gui_gc.install(request.getfixturevalue("qapp"))
    yield
    gui_gc.uninstall()
