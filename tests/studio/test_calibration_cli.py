"""`vla-studio rollout --calibration` reads camera calibrations with the Rollout tab's parser: JSON or TOML,
and the same one-line errors naming the file."""

import json

import numpy as np
import pytest

from recorder.errors import ConfigError
from studio.commands.rollout import _calibrations
from studio.rollout.calibration import load_calibrations

K = [[100.0, 0.0, 80.0], [0.0, 100.0, 60.0], [0.0, 0.0, 1.0]]
W2C = [[1.0, 0.0, 0.0, -0.2], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 1.0], [0.0, 0.0, 0.0, 1.0]]


def _toml_rows(m):
    return "[" + ", ".join("[" + ", ".join(str(v) for v in row) + "]" for row in m) + "]"


def test_the_cli_takes_a_toml_calibration_like_the_tab(tmp_path):
    path = tmp_path / "cams.toml"
    path.write_text(f"[front]\nintrinsics = {_toml_rows(K)}\nworld_to_camera = {_toml_rows(W2C)}\n")
    calibs = _calibrations(str(path))
    assert list(calibs) == ["front"]
    np.testing.assert_allclose(calibs["front"].intrinsics, K)
    np.testing.assert_allclose(calibs["front"].world_to_camera, W2C)
    # a point on the table below the camera projects to the principal point, as the tab's parse does
    point = np.array([[0.2, 0.0, 0.0]])
    np.testing.assert_allclose(calibs["front"].project(point), load_calibrations(path)["front"].project(point))
    np.testing.assert_allclose(calibs["front"].project(point), [[80.0, 60.0]])


@pytest.mark.parametrize("content, expected", [
    ("{not json", "is not valid JSON"),
    (json.dumps({"front": {"intrinsics": [[0, 0, 80], [0, 100, 60], [0, 0, 1]], "world_to_camera": W2C}}),
     "intrinsics fx and fy must be positive"),
])
def test_a_bad_cli_calibration_names_the_file_as_the_tab_does(tmp_path, content, expected):
    path = tmp_path / "cams.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        _calibrations(str(path))
    assert str(err.value).startswith(f"calibration file {path}")
    assert expected in str(err.value)
    assert "\n" not in str(err.value)
