"""Low-dim streams of an episode in one Arrow IPC *stream* file (``lowdim.arrows``).

One row per tick: ``index`` (int64), ``t`` (float64 monotonic seconds), ``ts.<cam>`` (capture time,
NaN when the camera gave no frame), ``dropped.<cam>`` (bool: the frame of this tick is not in the
video), ``stale.<cam>`` (bool: the camera had no new frame for this tick, so the image is an older one:
held from the previous tick, or captured before a sim reset), then one fixed-size-list column per declared stream (``observation.state``, ``action``,
extras). Rows are buffered and written as a record batch at least every ``flush_s`` seconds; each
batch is a self-contained message, so a file cut by a crash reads back up to its last whole batch.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from recorder.errors import StoreError
from recorder.store.faults import MIN_FREE_BYTES, free_bytes, read_fault
from recorder.store.types import LowdimSpec

FILENAME = "lowdim.arrows"

#: per-tick columns the store writes itself (not streams a caller declares)
BOOKKEEPING = ("index", "t")
BOOKKEEPING_PREFIXES = ("ts.", "dropped.", "stale.")


def is_bookkeeping(key: str) -> bool:
    """True for the store's own per-tick columns (index, t, ts./dropped./stale.<cam>)."""
    return key in BOOKKEEPING or key.startswith(BOOKKEEPING_PREFIXES)


def build_schema(cameras: list[str], lowdim: dict[str, LowdimSpec]) -> pa.Schema:
    fields = [pa.field("index", pa.int64()), pa.field("t", pa.float64())]
    for cam in cameras:
        fields.append(pa.field(f"ts.{cam}", pa.float64()))
        fields.append(pa.field(f"dropped.{cam}", pa.bool_()))
        fields.append(pa.field(f"stale.{cam}", pa.bool_()))
    for name, spec in lowdim.items():
        n = int(np.prod(spec.shape)) if spec.shape else 1
        fields.append(
            pa.field(
                name,
                pa.list_(pa.from_numpy_dtype(np.dtype(spec.dtype)), n),
                metadata={"shape": ",".join(str(s) for s in spec.shape)},
            )
        )
    return pa.schema(fields)


class LowdimWriter:
    def __init__(self, path: Path, cameras: list[str], lowdim: dict[str, LowdimSpec], flush_s: float = 0.5):
        self.path = Path(path)
        self.cameras = list(cameras)
        self.lowdim = dict(lowdim)
        self.schema = build_schema(self.cameras, self.lowdim)
        self.flush_s = flush_s
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._writer = pa.ipc.new_stream(self._file, self.schema)
        self._file.flush()
        self._rows: dict[str, list] = {f.name: [] for f in self.schema}
        self._n_buffered = 0
        self._last_flush = time.monotonic()
        self.rows_written = 0

    def prepare(self, values: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Check and flatten one tick's values (ValueError names what is wrong); EpisodeWriter checks undeclared names."""
        out = []
        for name, spec in self.lowdim.items():
            v = values.get(name)
            if v is None:
                raise ValueError(f"add_tick is missing value {name!r} (declared in lowdim)")
            arr = np.asarray(v, dtype=spec.dtype)
            if arr.shape != spec.shape and arr.size != int(np.prod(spec.shape)):
                raise ValueError(f"value {name!r} has shape {arr.shape}, declared {spec.shape}")
            out.append(arr.reshape(-1).copy())
        return out

    def append(
        self,
        index: int,
        t: float,
        ts: dict[str, float],
        dropped: dict[str, bool],
        prepared: list[np.ndarray],
        stale: dict[str, bool] | None = None,
    ) -> None:
        """Buffer one row; ``prepared`` comes from ``prepare``."""
        stale = stale or {}
        rows = self._rows
        rows["index"].append(index)
        rows["t"].append(t)
        for cam in self.cameras:
            rows[f"ts.{cam}"].append(ts.get(cam, float("nan")))
            rows[f"dropped.{cam}"].append(bool(dropped.get(cam, False)))
            rows[f"stale.{cam}"].append(bool(stale.get(cam, False)))
        for name, arr in zip(self.lowdim, prepared):
            rows[name].append(arr)
        self._n_buffered += 1
        if time.monotonic() - self._last_flush >= self.flush_s:
            self.flush(check_space=True)

    def flush(self, check_space: bool = False) -> None:
        """Write the buffered rows as one batch. ``check_space``: first make sure the disk has room, and
        raise ENOSPC *before* writing anything when it has not (a batch cut in the middle is lost; rows
        kept buffered are written by close() once space is given back)."""
        if check_space and self._n_buffered and free_bytes(self.path.parent) < MIN_FREE_BYTES:
            raise OSError(errno.ENOSPC, "No space left on device (less than the store's minimum free)",
                          str(self.path))
        if self._n_buffered:
            arrays = []
            for f in self.schema:
                col = self._rows[f.name]
                if pa.types.is_fixed_size_list(f.type):
                    flat = np.concatenate(col) if col else np.empty(0)
                    arrays.append(
                        pa.FixedSizeListArray.from_arrays(
                            pa.array(flat, type=f.type.value_type), f.type.list_size
                        )
                    )
                else:
                    arrays.append(pa.array(col, type=f.type))
            self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
            self.rows_written += self._n_buffered
            self._rows = {f.name: [] for f in self.schema}
            self._n_buffered = 0
        self._file.flush()
        self._last_flush = time.monotonic()

    def close(self, fsync: bool = True) -> None:
        if self._file.closed:
            return
        self.flush()
        self._writer.close()
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())
        self._file.close()


def read_lowdim(path: Path) -> tuple[dict[str, np.ndarray], bool]:
    """All rows as numpy arrays (lists reshaped to their declared shape) and whether the file was cut short."""
    path = Path(path)
    try:
        with pa.OSFile(str(path), "rb") as f:
            table = pa.ipc.open_stream(f).read_all()  # the common case (a whole file) in one call
        truncated = False
    except FileNotFoundError:
        raise StoreError(f"{path} is missing; run 'vla-studio store check --repair'") from None
    except (pa.ArrowInvalid, OSError):  # cut short, unreadable or failing: batch by batch says which
        table, truncated = _read_batches(path)
    out: dict[str, np.ndarray] = {}
    n = table.num_rows
    for f, col in zip(table.schema, table.columns, strict=True):
        if pa.types.is_fixed_size_list(f.type):
            shape = tuple(int(s) for s in (f.metadata or {}).get(b"shape", b"").decode().split(",") if s)
            if not n:
                values = pa.array([], type=f.type.value_type)
            elif col.num_chunks == 1:
                values = col.chunk(0).flatten()
            else:
                values = col.combine_chunks().flatten()
            out[f.name] = np.asarray(values.to_numpy(zero_copy_only=False)).reshape((n, *shape))
        else:
            out[f.name] = col.to_numpy()
    return out, truncated


def _read_batches(path: Path) -> tuple[pa.Table, bool]:
    """The whole batches of a stream file, and whether it was cut short (a crash mid-batch)."""
    if not path.is_file():
        raise StoreError(f"{path} is missing; run 'vla-studio store check --repair'")
    batches = []
    truncated = False
    with pa.OSFile(str(path), "rb") as f:
        try:
            reader = pa.ipc.open_stream(f)
        except (pa.ArrowInvalid, OSError) as err:
            fault = read_fault(err, path)
            if fault is not None:
                raise fault from None
            raise StoreError(
                f"{path} is not a readable Arrow stream ({err}); run 'vla-studio store check --repair'"
            ) from None
        schema = reader.schema
        while True:
            try:
                batches.append(reader.read_next_batch())
            except StopIteration:
                break
            except (pa.ArrowInvalid, OSError) as err:
                fault = read_fault(err, path)
                if fault is not None:
                    raise fault from None
                truncated = True
                break
    return pa.Table.from_batches(batches, schema=schema), truncated


def write_lowdim_table(
    path: Path, data: dict[str, np.ndarray], cameras: list[str], lowdim: dict[str, LowdimSpec], backup=None
) -> None:
    """Write whole arrays as a fresh stream file (used to rewrite a salvaged episode).

    Atomic: the new file is complete and synced before it replaces ``path``, whose original first goes
    to ``backup`` (a recorder.store.backups.Backup) when one is given. On failure ``path`` is untouched."""
    path = Path(path)
    tmp = path.with_suffix(".arrows.tmp")
    try:
        w = LowdimWriter(tmp, cameras, lowdim, flush_s=1e9)
        n = len(data["index"])
        no_flag = np.zeros(n, bool)
        for i in range(n):
            w.append(
                int(data["index"][i]),
                float(data["t"][i]),
                {c: float(data[f"ts.{c}"][i]) for c in cameras},
                {c: bool(data[f"dropped.{c}"][i]) for c in cameras},
                w.prepare({k: data[k][i] for k in lowdim}),
                {c: bool(data.get(f"stale.{c}", no_flag)[i]) for c in cameras},
            )
        w.close()
        back, cut = read_lowdim(tmp)
        if cut or len(back["index"]) != n:
            raise StoreError(f"{tmp}: the rewritten table reads back {len(back['index'])} of {n} rows; "
                             f"{path} is left as it was")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if backup is not None and path.exists():
        backup.keep(path)
    os.replace(tmp, path)
