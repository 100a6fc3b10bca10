"""One reader for JSON files that must hold an object (recorder.fsutil.load_json_object), worded by each caller:
an episode's meta.json (store check) and a run's / checkpoint's JSON files (fine-tune)."""

from __future__ import annotations

import pytest

from finetune.run_config import read_json_object
from recorder.errors import ConfigError, StoreError
from recorder.store.check import read_meta

# (what the file is, what store check says about meta.json, what fine-tune says about a config file)
RUNGS = [
    ("missing", None, "meta.json is missing", "config.json: missing; is this a run folder?"),
    ("a folder", "dir", "meta.json cannot be read (Is a directory)",
     "config.json: cannot read (Is a directory); is this a run folder?"),
    ("not UTF-8", b"\x00\xff not json", "meta.json is not valid JSON ('utf-8' codec can't decode byte 0xff",
     "config.json: not a text (UTF-8) file (byte 1); the file is damaged; is this a run folder?"),
    ("not JSON", b"{not json", "meta.json is not valid JSON (Expecting property name",
     "config.json: not valid JSON (Expecting property name enclosed in double quotes, line 1); is this a run"),
    ("nested too deeply", b"[" * 200_000, "meta.json is not valid JSON (maximum recursion depth",
     "config.json: JSON nested too deeply; is this a run folder?"),
    ("a list", b"[1, 2]", "meta.json is not an episode's meta.json (a list, not an object)",
     "config.json: expected a JSON object, found a list; is this a run folder?"),
]


def _place(path, content):
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)


@pytest.mark.parametrize("what, content, meta_says, config_says", RUNGS, ids=[r[0] for r in RUNGS])
def test_each_rung_is_one_line_naming_the_file_in_both_readers(tmp_path, what, content, meta_says, config_says):
    _place(tmp_path / "meta.json", content)
    with pytest.raises(StoreError) as meta_err:
        read_meta(tmp_path)
    assert str(meta_err.value).startswith(str(tmp_path / "meta.json"))
    assert meta_says in str(meta_err.value) and "\n" not in str(meta_err.value)

    _place(tmp_path / "config.json", content)
    with pytest.raises(ConfigError) as cfg_err:
        read_json_object(tmp_path / "config.json", fix="is this a run folder?")
    assert str(cfg_err.value).startswith(str(tmp_path / "config.json"))
    assert config_says in str(cfg_err.value) and "\n" not in str(cfg_err.value)


def test_an_object_reads_back_in_both_readers(tmp_path):
    (tmp_path / "config.json").write_text('{"config": {"steps": 3}}')
    assert read_json_object(tmp_path / "config.json", fix="x") == {"config": {"steps": 3}}
    (tmp_path / "meta.json").write_text('{"cameras": {}, "lowdim": {}, "fps": 10}')
    meta, cams, low, fps = read_meta(tmp_path)
    assert (meta["fps"], cams, low, fps) == (10, {}, {}, 10.0)
