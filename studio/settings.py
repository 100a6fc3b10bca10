"""The studio's settings: one typed, Qt-free object with a schema version, kept in ``<home>/settings.json``.

``StudioSettings.load(path)`` never fails a launch: a missing file gives the defaults, an unreadable or
newer-schema file gives the defaults too and says so in ``load_warning`` (the window shows that line and
keeps the file as it is until something changes). ``save()`` writes atomically. The window wraps it in
``studio.context.SettingsModel``, a QObject that emits ``changed(key)``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from recorder.fsutil import write_json_atomic

SCHEMA_VERSION = 1
SETTINGS_FILE = "settings.json"


@dataclass
class StudioSettings:
    schema_version: int = SCHEMA_VERSION  # the file's format; a newer one is not overwritten blindly
    welcome_dismissed: bool = False  # the first-launch guide was closed by the person
    splitters: dict[str, list[int]] = field(default_factory=dict)  # splitter key -> sizes in pixels
    path: Path | None = field(default=None, repr=False, compare=False)  # where it is saved (None: nowhere)
    load_warning: str = field(default="", repr=False, compare=False)  # why the file was not used

    @classmethod
    def load(cls, path: Path) -> StudioSettings:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path=path)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            return cls(path=path, load_warning=f"{path}: unreadable settings ({err}); using the defaults "
                                               "(delete the file to start afresh)")
        if not isinstance(raw, dict):
            return cls(path=path, load_warning=f"{path}: not a settings object; using the defaults")
        version = raw.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            return cls(path=None, load_warning=f"{path}: settings of a newer vla-studio (schema {version}); "
                                               "using the defaults and leaving the file untouched")
        out = cls(path=path)
        if isinstance(raw.get("welcome_dismissed"), bool):
            out.welcome_dismissed = raw["welcome_dismissed"]
        splitters = raw.get("splitters")
        if isinstance(splitters, dict):
            for key, sizes in splitters.items():
                if (isinstance(sizes, list) and sizes
                        and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 100_000 for s in sizes)):
                    out.splitters[str(key)] = list(sizes)
        return out

    def to_dict(self) -> dict:
        keep = {f.name for f in fields(self) if f.compare}
        return {k: v for k, v in asdict(self).items() if k in keep}

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, self.to_dict())
