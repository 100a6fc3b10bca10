"""The one rate meter: the Record tab's per-camera fps (last second) and a rollout's control rate (last ticks)."""

from recorder.rates import RateMeter


def test_fps_over_the_last_second_forgets_older_frames():
    m = RateMeter()
    assert m.rate() == 0.0
    for i in range(31):  # 30 fps for a second
        m.tick(i / 30)
    assert abs(m.rate() - 30.0) < 1e-6
    for i in range(1, 11):  # then 10 fps: after a second only the slow frames count
        m.tick(1.0 + i / 10)
    assert abs(m.rate() - 10.0) < 1e-6


def test_control_rate_is_the_mean_over_the_last_intervals():
    m = RateMeter(window_s=None, last=3)
    assert m.add(0.0) is None
    assert m.add(0.0) is None  # no time between the two ticks yet
    for t in (0.1, 0.2, 0.3):
        rate = m.add(t)
    assert abs(rate - 10.0) < 1e-6
    for t in (0.8, 1.3, 1.8):  # three slow intervals push the fast ones out
        rate = m.add(t)
    assert abs(rate - 2.0) < 1e-6
    m.reset()
    assert m.add(5.0) is None
