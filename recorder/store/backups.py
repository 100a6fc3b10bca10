"""Backups of episode files that a salvage or a repair rewrites: ``<store>/backups/<name>/``.

Before a cut file is replaced by its clean copy, the original goes to a backup folder (a hard link when
the file system allows it, so a backup costs no space until the original is gone), with a
``backup.json`` naming the episode and what its index row said before. ``vla-studio store check`` lists
the backups; ``vla-studio store restore NAME`` puts the originals back, so a repair can be undone.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from recorder.errors import StoreError

BACKUPS_DIR = "backups"
MANIFEST = "backup.json"


class Backup:
    """The backup of one episode folder's originals; the folder is made on the first :meth:`keep`."""

    def __init__(self, root: Path, episode_folder: Path, *, episode_id: int | None, num_frames: int | None,
                 status: str | None, reason: str) -> None:
        self.root = Path(root)
        self.episode_folder = Path(episode_folder)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.name = f"{stamp}-episode-{episode_id}-{self.episode_folder.name[:8]}"
        self.folder = self.root / BACKUPS_DIR / self.name
        self.manifest = {
            "episode_id": episode_id,
            "uuid": self.episode_folder.name,
            "num_frames": num_frames,
            "status": status,
            "reason": reason,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": [],
        }

    def keep(self, path: Path) -> Path:
        """Keep the original of ``path`` (inside the episode folder) before it is replaced."""
        rel = Path(path).relative_to(self.episode_folder)
        dest = self.folder / rel
        if dest.exists():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, dest)
        except OSError:
            shutil.copy2(path, dest)
        self.manifest["files"].append(str(rel))
        self.save()
        return dest

    def save(self) -> None:
        """Write the manifest (also with no file kept: the index row before a cut is worth keeping)."""
        from recorder.fsutil import write_json_atomic

        self.folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.folder / MANIFEST, self.manifest)

    @property
    def used(self) -> bool:
        return bool(self.manifest["files"])


def list_backups(root: Path) -> list[dict]:
    """Every backup of the store, oldest first: its manifest plus ``name`` and ``path``."""
    base = Path(root) / BACKUPS_DIR
    out = []
    if not base.is_dir():
        return out
    for folder in sorted(base.iterdir()):
        try:
            info = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict):
            out.append({**info, "name": folder.name, "path": folder})
    return out


def find_backup(root: Path, name: str) -> dict:
    for b in list_backups(root):
        if b["name"] == name:
            return b
    names = ", ".join(b["name"] for b in list_backups(root)) or "none"
    raise StoreError(f"no backup named {name!r} in {Path(root) / BACKUPS_DIR} (backups: {names}); "
                     "see 'vla-studio store check'")


def put_back(backup: dict, episode_folder: Path) -> list[str]:
    """Move the backed-up originals back into ``episode_folder``; the backup folder is removed."""
    folder = Path(backup["path"])
    if not episode_folder.is_dir():
        raise StoreError(f"{episode_folder} is missing: backup {backup['name']} has no episode to go back to")
    restored = []
    for rel in backup.get("files") or []:
        src = folder / rel
        if not src.is_file():
            raise StoreError(f"{src} is missing: backup {backup['name']} is incomplete, nothing was restored")
    for rel in backup.get("files") or []:
        dest = episode_folder / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder / rel, dest)
        restored.append(rel)
    shutil.rmtree(folder)
    return restored
