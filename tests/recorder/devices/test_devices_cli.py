"""`vla-studio devices` works with nothing plugged in."""

from __future__ import annotations

import json

from studio.cli import main


def test_devices_lists_sections_with_nothing_plugged_in(home, capsys):
    assert main(["--home", str(home), "devices"]) == 0
    out = capsys.readouterr().out
    for section in ("OpenCV cameras:", "RealSense cameras:", "Serial ports"):
        assert section in out
    assert main(["--home", str(home), "devices", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"opencv", "realsense", "serial"}
    assert all(isinstance(v, list) for v in data.values())


def test_calibrate_on_a_missing_port_is_a_one_line_error(home, capsys):
    rc = main(
        [
            "--home",
            str(home),
            "devices",
            "calibrate",
            "--type",
            "so101_leader",
            "--port",
            "/dev/ttyNOPE",
            "--id",
            "l1",
            "--seconds",
            "0.1",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "/dev/ttyNOPE" in err and len(err.strip().splitlines()) == 1
