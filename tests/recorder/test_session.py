import time

import pytest

from recorder.errors import DatasetError
from recorder.session import Phase, RecordSession, SessionCallbacks, SessionConfig, rig_features
from tests.recorder.record_doubles import FailingCamera, MemoryStore, fake_rig


def wait_for(pred, timeout=5.0):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.01)


@pytest.fixture
def make_session():
    sessions = []

    def make(rig=None, store=None, **cfg):
        rig = rig or fake_rig()
        rig.connect()
        store = store or MemoryStore()
        states = []
        kw = dict(dataset="d", task="pick up the red cube", fps=50.0, episode_time_s=None, reset_time_s=0.0,
                  auto_advance=False)
        kw.update(cfg)
        s = RecordSession(store, rig, SessionConfig(**kw), SessionCallbacks(on_state=lambda st: states.append(st.phase)))
        s.states = states
        s.start_thread()
        sessions.append(s)
        wait_for(lambda: Phase.IDLE in states)
        return s

    yield make
    for s in sessions:
        s.close()
        assert s.phase is Phase.CLOSED


def test_time_limit_auto_advance_with_reset_phase(make_session):
    s = make_session(episode_time_s=0.3, reset_time_s=0.3, auto_advance=True, num_episodes=2)
    s.start_stop()
    wait_for(lambda: s.phase is Phase.DONE)
    eps = list(s.store.episodes_.values())
    assert [e.num_frames for e in eps] == [15, 15]  # 0.3 s at 50 Hz each
    assert s.states.count(Phase.RESET) == 1  # one reset between the two episodes
    # the arm moved during the reset phase although nothing was written then
    assert len(s.rig.robot.sent) >= 30 + 10
    assert len(s.store.writers) == 2


def test_stop_discard_rerecord_and_save(make_session):
    s = make_session()
    s.start_stop()
    wait_for(lambda: s.store.writers and len(s.store.writers[-1].ticks) >= 5)
    s.start_stop()
    wait_for(lambda: s.phase is Phase.REVIEW)
    s.discard()
    wait_for(lambda: s.phase is Phase.IDLE)
    assert s.store.writers[0].discarded and s.discarded == 1
    s.start()
    wait_for(lambda: len(s.store.writers) == 2 and len(s.store.writers[-1].ticks) >= 3)
    s.rerecord()  # throw this take away and record again at once
    wait_for(lambda: len(s.store.writers) == 3 and len(s.store.writers[-1].ticks) >= 5)
    assert s.store.writers[1].discarded
    assert s.phase is Phase.RECORDING
    s.set_label(True)
    s.save()
    wait_for(lambda: s.saved == 1 and s.phase is Phase.IDLE)
    (ep,) = s.store.episodes_.values()
    assert ep.success is True and ep.num_frames >= 5
    assert s.store.episodes() == [ep]
    # a label pressed after the save goes to the saved episode
    s.set_label(False)
    wait_for(lambda: ep.success is False)


def test_task_is_editable_between_episodes(make_session):
    s = make_session(episode_time_s=0.1, auto_advance=False)
    s.start()
    wait_for(lambda: s.phase is Phase.REVIEW)
    s.set_task("push the red cube onto the green square")
    s.save()
    wait_for(lambda: s.saved == 1)
    s.start()
    wait_for(lambda: s.phase is Phase.REVIEW)
    s.save()
    wait_for(lambda: s.saved == 2)
    assert [e["task"] for e in s.store.begun] == ["pick up the red cube", "push the red cube onto the green square"]
    with pytest.raises(DatasetError):
        s.set_task("   ")


def test_estop_stops_the_arm_keeps_the_episode_and_resumes(make_session):
    s = make_session()
    s.start()
    wait_for(lambda: s.store.writers and len(s.store.writers[-1].ticks) >= 5)
    s.estop()
    wait_for(lambda: s.phase is Phase.ESTOPPED)
    n = len(s.rig.robot.sent)
    time.sleep(0.1)
    assert len(s.rig.robot.sent) == n  # nothing more is sent while e-stopped
    (ep,) = s.store.episodes_.values()
    assert ep.status == "recovered" and "e-stop" in ep.notes
    s.start_stop()
    wait_for(lambda: s.phase is Phase.IDLE)
    wait_for(lambda: len(s.rig.robot.sent) > n)


def test_camera_lost_mid_episode_keeps_frames_and_session_survives(make_session):
    faults = []
    rig = fake_rig(camera_cls=FailingCamera, fail_after=10)
    s = make_session(rig=rig)
    s.cb.on_fault = faults.append
    s.start()
    wait_for(lambda: s.phase is Phase.FAULT)
    (ep,) = s.store.episodes_.values()
    # every frame read before the camera died (some went to the idle preview) is in the episode
    assert 0 < ep.num_frames == len(s.store.writers[0].ticks) <= 10
    assert ep.status == "recovered" and "front" in ep.notes
    assert faults and "front" in faults[0]
    assert s._thread.is_alive()
    rig.cameras["front"].fail_after = 10**9  # the person plugs it back in
    s.start()
    wait_for(lambda: s.phase is Phase.IDLE)
    s.start()
    wait_for(lambda: len(s.store.writers) == 2 and len(s.store.writers[-1].ticks) >= 3)


def test_disk_full_is_a_fault_with_the_episode_kept(make_session):
    store = MemoryStore()
    store.enospc_after = 6
    s = make_session(store=store)
    s.start()
    wait_for(lambda: s.phase is Phase.FAULT)
    assert "disk full" in s.fault
    (ep,) = store.episodes_.values()
    assert ep.num_frames == 6 and ep.status == "recovered"


def test_appending_needs_matching_features():
    rig = fake_rig()
    store = MemoryStore()
    feats = rig_features(rig, 30.0)
    store.get_or_create_dataset("d", feats)
    RecordSession(store, rig, SessionConfig(dataset="d", task="t", fps=30.0))  # same rig: fine
    other = fake_rig(width=32, height=24)
    with pytest.raises(DatasetError, match=r"dataset 'd'.*camera front is 64x48 in the dataset but 32x24 on the rig"):
        RecordSession(store, other, SessionConfig(dataset="d", task="t", fps=30.0))
    with pytest.raises(DatasetError, match="fps"):
        RecordSession(store, rig, SessionConfig(dataset="d", task="t", fps=15.0))


def test_arm_lost_mid_episode_stops_safely_and_keeps_the_episode(make_session):
    s = make_session()
    s.start()
    wait_for(lambda: s.store.writers and len(s.store.writers[-1].ticks) >= 3)
    s.rig.robot.fail_after_sends = len(s.rig.robot.sent) + 5
    wait_for(lambda: s.phase is Phase.FAULT)
    assert "arm" in s.fault and "serial cable" in s.fault
    (ep,) = s.store.episodes_.values()
    assert ep.status == "recovered" and ep.num_frames >= 3
    n = len(s.rig.robot.sent)
    time.sleep(0.1)
    assert len(s.rig.robot.sent) == n  # nothing is sent while in fault
