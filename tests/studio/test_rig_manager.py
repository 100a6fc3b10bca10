"""One owner for the rig: the Record and Rollout tabs share the window's RigManager and its lease."""

import threading

import pytest

from recorder.devices.rig import sim_rig_config
from tests.recorder.record_doubles import fake_rig, pattern_rig
from tests.rollout_doubles import FixedChunkPolicy

pytestmark = pytest.mark.gui


@pytest.fixture
def tabs(qtbot, home):
    from studio.context import AppContext
    from studio.record.tab import RecordTab
    from studio.rollout.tab import RolloutTab

    ctx = AppContext(home=home)
    record = RecordTab(ctx)
    rollout = RolloutTab(ctx)
    for t in (record, rollout):
        qtbot.addWidget(t)
        t.resize(1000, 700)
        t.show()
    rollout.rig_spec = sim_rig_config(teleop="scripted", width=160, height=120, fps=15)
    rollout.fps_spin.setValue(15)
    rollout.episodes_spin.setValue(1)
    rollout.max_s_spin.setValue(1.0)
    rollout.policy_object = FixedChunkPolicy(chunk_size=4, step=1.0, camera_names=("front",))
    yield record, rollout, ctx
    rollout.shutdown()
    record.shutdown()
    ctx.close()


def test_record_holds_the_rig_so_rollout_refuses_until_released(qtbot, tabs):
    record, rollout, ctx = tabs
    errors = []
    ctx.error_posted.connect(errors.append)
    record.rig_factory = lambda spec, home: pattern_rig(width=160, height=120)
    record.connect_rig()
    qtbot.waitUntil(lambda: record.phase == "idle", timeout=10000)
    assert ctx.rigs.holder == "Record" and ctx.rigs.rig is record.rig

    # the Rollout tab shows who has the rig, and Start is refused with a visible message
    assert "in use by Record" in rollout.rig_label.text() and not rollout.start_button.isEnabled()
    rollout.start_rollout()
    assert rollout.thread is None
    assert "in use by Record" in rollout.status_label.text()
    assert errors and "in use by Record" in errors[-1]

    # Record gives the rig back (disconnected off the GUI thread): Rollout can start and drive it
    record.disconnect_rig()
    qtbot.waitUntil(lambda: record.phase == "disconnected" and ctx.rigs.holder == "", timeout=10000)
    assert ctx.rigs.rig is None
    assert rollout.rig_label.text() == "" and rollout.start_button.isEnabled()
    rollout.start_rollout()
    assert rollout.thread is not None and ctx.rigs.holder == "Rollout"
    qtbot.waitUntil(lambda: rollout.ticks_shown >= 3, timeout=20000)

    # meanwhile Record cannot connect: it says who drives the arm
    assert "in use by Rollout" in record.conn_label.text() and not record.connect_btn.isEnabled()
    record.connect_rig()
    assert record.rig is None and "in use by Rollout" in errors[-1]

    with qtbot.waitSignal(rollout.thread.finished, timeout=20000):
        pass
    qtbot.waitUntil(lambda: ctx.rigs.holder == "", timeout=5000)
    assert rollout.success_label.text() == "successes 0/1"
    assert ctx.rigs.rig is None  # the rollout connected the sim rig, so it disconnected it
    assert record.connect_btn.isEnabled() and record.conn_label.text() == "disconnected"


def test_connect_happens_off_the_gui_thread_and_failure_frees_the_lease(qtbot, tabs):
    record, rollout, ctx = tabs
    threads = []
    rig = fake_rig(cameras=("front",))
    connect = rig.connect

    def spy_connect():
        threads.append(threading.current_thread())
        connect()

    rig.connect = spy_connect
    record.rig_factory = lambda spec, home: rig
    record.connect_rig()
    qtbot.waitUntil(lambda: record.phase == "idle", timeout=10000)
    assert threads and threads[0] is not threading.main_thread()
    record.disconnect_rig()
    qtbot.waitUntil(lambda: record.phase == "disconnected" and ctx.rigs.holder == "", timeout=10000)

    def broken(spec, home):
        from recorder.errors import DeviceError

        raise DeviceError("serial port /dev/ttyACM0: no arm answers: check the cable")

    record.rig_factory = broken
    with qtbot.waitSignal(ctx.error_posted, timeout=10000) as blocker:
        record.connect_rig()
    assert "/dev/ttyACM0" in blocker.args[0]
    qtbot.waitUntil(lambda: record.connect_btn.isEnabled(), timeout=5000)
    assert ctx.rigs.holder == "" and record.conn_label.text() == "not connected"
    assert rollout.start_button.isEnabled()
