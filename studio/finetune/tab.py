"""The Fine-tune tab: one-click LoRA fine-tunes with live progress, and the runs history.

The tab is a controller: it builds the ``vla-studio finetune`` command from the form, hands it to a
``FinetuneProcess`` (a detached child process, never training in the GUI process), and turns the
child's JSON events into curves, a progress bar and a log. The runs table comes from the store index.
"""

from __future__ import annotations

import os
import shlex
import time
from datetime import UTC, datetime
from pathlib import Path

from PyQt6.QtCore import QSignalBlocker, Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from finetune.learning import NOT_LEARNING
from finetune.presets import PRESETS, detect_gpu, preset_for, preset_reason
from finetune.run_config import (
    FinetuneConfig,
    check_model_spec,
    effective_status,
    last_checkpoint,
    make_run_id,
    pid_alive,
    run_dir,
)
from recorder.errors import KnownError
from studio.context import remember_splitter
from studio.finetune.process import FinetuneProcess
from widgets.curves import CurvesWidget

HISTORY_COLUMNS = ["run", "status", "dataset", "model", "duration", "best val", "checkpoints"]


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class FinetuneTab(QWidget):
    """Start, follow, cancel and resume fine-tunes; browse past runs.

    Signals:
        run_started(str): a run id whose process was started or re-attached.
        run_finished(str, str): (run id, status) when the followed run ends (done | cancelled | failed).
    """

    run_started = pyqtSignal(str)
    run_finished = pyqtSignal(str, str)

    def __init__(self, ctx, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.home = Path(ctx.home)
        self.child_program: list[str] | None = None  # replaces [python, -m, studio.cli] (tests)
        self.child_env: dict[str, str] | None = None
        self.process: FinetuneProcess | None = None
        self.run_id: str | None = None
        self.total_steps = 0
        self.last_error = ""
        self._close_choice = "stop"
        self._gpu = detect_gpu()
        self._build_ui()
        self.refresh_datasets(ctx.opened_datasets())  # the opener thread's list: no SQL in this pass
        self.refresh_history()
        ctx.store_changed.connect(self._on_store_changed)
        ctx.rigs.rig_connected.connect(self._update_load_note)
        ctx.rigs.rig_disconnected.connect(self._update_load_note)
        ctx.rigs.lease_changed.connect(self._update_load_note)
        self.reattach()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        root = QHBoxLayout(self)
        left = QWidget()
        left.setMaximumWidth(430)
        form_box = QVBoxLayout(left)
        form_box.setContentsMargins(0, 0, 0, 0)

        basic = QGroupBox("New fine-tune")
        form = QFormLayout(basic)
        self.dataset_combo = QComboBox()
        self.dataset_combo.currentIndexChanged.connect(self._on_dataset_changed)
        form.addRow("Dataset", self.dataset_combo)
        self.dataset_info = QLabel()  # how many episodes the chosen dataset holds, or why it cannot be used
        self.dataset_info.setWordWrap(True)
        form.addRow("", self.dataset_info)
        model_row = QHBoxLayout()
        self.model_edit = QComboBox()
        self.model_edit.setEditable(True)
        self.model_edit.addItems(["tiny", "openvla/openvla-7b"])
        self.model_edit.setToolTip("a local model folder, a Hugging Face hub id, or 'tiny' (the built-in tiny model)")
        browse = QToolButton()
        browse.setText("…")
        browse.clicked.connect(self._on_browse_clicked)
        model_row.addWidget(self.model_edit, 1)
        model_row.addWidget(browse)
        form.addRow("Base model", model_row)
        self.preset_combo = QComboBox()
        auto = preset_for(self._gpu)
        gpu_text = f"{self._gpu.name}, {self._gpu.total_gib:.0f} GiB" if self._gpu else "no GPU"
        self.preset_combo.addItem(f"auto ({gpu_text}: {auto.name})", "auto")
        for name, preset in PRESETS.items():
            self.preset_combo.addItem(preset.title, name)
        self.preset_combo.currentIndexChanged.connect(self._on_preset_changed)
        form.addRow("Preset", self.preset_combo)
        self.gpu_label = QLabel(preset_reason(self._gpu))  # the card, its memory and the preset auto picks
        self.gpu_label.setWordWrap(True)
        form.addRow("", self.gpu_label)
        self.estimate_label = QLabel()
        self.estimate_label.setWordWrap(True)
        form.addRow("", self.estimate_label)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 10_000_000)
        self.steps_spin.setValue(1000)
        form.addRow("Steps", self.steps_spin)
        form_box.addWidget(basic)

        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setText("Advanced options")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.toggled.connect(self._on_advanced_toggled)
        form_box.addWidget(self.advanced_toggle)
        self.advanced = QGroupBox()
        adv = QFormLayout(self.advanced)
        self.rank_spin = QSpinBox()
        self.rank_spin.setRange(1, 512)
        self.alpha_spin = QSpinBox()
        self.alpha_spin.setRange(1, 1024)
        self.lr_spin = QDoubleSpinBox()
        self.lr_spin.setDecimals(6)
        self.lr_spin.setRange(1e-6, 1.0)
        self.lr_spin.setSingleStep(1e-4)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 4096)
        self.accum_spin = QSpinBox()
        self.accum_spin.setRange(1, 1024)
        self.quant_check = QCheckBox("4-bit base weights (QLoRA, CUDA only)")
        self.ckpt_check = QCheckBox("activation checkpointing")
        self.cameras_edit = QLineEdit()
        self.cameras_edit.setPlaceholderText("default: the model's camera count, e.g. front,wrist")
        from finetune.run_config import ACTION_HEADS

        self.head_combo = QComboBox()
        self.head_combo.addItems(list(ACTION_HEADS))
        self.head_desc_label = QLabel(ACTION_HEADS["tokens"])  # one line about the chosen action head
        self.head_desc_label.setWordWrap(True)
        self.head_combo.currentTextChanged.connect(lambda h: self.head_desc_label.setText(ACTION_HEADS.get(h, "")))
        self.chunk_spin = QSpinBox()
        self.chunk_spin.setRange(1, 64)
        self.chunk_spin.setValue(8)
        self.eval_spin = QSpinBox()
        self.eval_spin.setRange(0, 1_000_000)
        self.eval_spin.setValue(100)
        self.save_spin = QSpinBox()
        self.save_spin.setRange(0, 1_000_000)
        self.save_spin.setValue(200)
        self.val_spin = QDoubleSpinBox()
        self.val_spin.setRange(0.0, 0.9)
        self.val_spin.setSingleStep(0.05)
        self.val_spin.setValue(0.1)
        self.gpus_spin = QSpinBox()
        self.gpus_spin.setRange(1, 16)
        self.sharding_combo = QComboBox()
        self.sharding_combo.addItems(["ddp", "fsdp"])
        self.sharding_combo.setToolTip("with several GPUs: ddp keeps a whole model per GPU; fsdp shards the decoder layers")
        self.vision_lora_check = QCheckBox("LoRA on the vision towers too (OpenVLA's exact targets; slower)")
        for label, w in [("LoRA rank", self.rank_spin), ("LoRA alpha", self.alpha_spin), ("Learning rate", self.lr_spin),
                         ("Batch", self.batch_spin), ("Grad accumulation", self.accum_spin), ("", self.quant_check),
                         ("", self.ckpt_check), ("Cameras", self.cameras_edit), ("Action head", self.head_combo),
                         ("", self.head_desc_label), ("Chunk size", self.chunk_spin), ("Eval every", self.eval_spin), ("Save every", self.save_spin),
                         ("Val fraction", self.val_spin), ("GPUs", self.gpus_spin),
                         ("Multi-GPU", self.sharding_combo), ("", self.vision_lora_check)]:
            adv.addRow(label, w)
        # the memory estimate follows every option it depends on, not only the preset
        for spin in (self.batch_spin, self.rank_spin, self.chunk_spin):
            spin.valueChanged.connect(self._on_options_changed)
        self.head_combo.currentTextChanged.connect(self._on_options_changed)
        self.model_edit.currentTextChanged.connect(self._on_options_changed)
        for check in (self.quant_check, self.ckpt_check, self.vision_lora_check):
            check.toggled.connect(self._on_options_changed)
        self.remote_check = QCheckBox("run on a remote GPU host over SSH")
        self.remote_host_edit = QLineEdit()
        self.remote_host_edit.setPlaceholderText("user@host[:port]")
        self.remote_home_edit = QLineEdit()
        self.remote_home_edit.setPlaceholderText("store path on the host, e.g. ~/vla-studio")
        self.remote_cmd_edit = QLineEdit("vla-studio")
        self.remote_key_edit = QLineEdit()
        self.remote_key_edit.setPlaceholderText("ssh key file (optional)")
        adv.addRow("", self.remote_check)
        adv.addRow("Host", self.remote_host_edit)
        adv.addRow("Remote store", self.remote_home_edit)
        adv.addRow("Remote command", self.remote_cmd_edit)
        adv.addRow("SSH key", self.remote_key_edit)
        self.remote_opts_edit = QLineEdit()
        self.remote_opts_edit.setPlaceholderText("extra ssh -o options, comma-separated (optional)")
        adv.addRow("SSH options", self.remote_opts_edit)
        self.advanced.setVisible(False)
        form_box.addWidget(self.advanced)

        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start fine-tune")
        self.start_button.clicked.connect(self._on_start_clicked)
        self.cancel_button = QPushButton("Cancel (checkpoint)")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        form_box.addLayout(buttons)
        form_box.addStretch(1)
        root.addWidget(left)

        right = QSplitter(Qt.Orientation.Vertical)
        live = QWidget()
        live_box = QVBoxLayout(live)
        live_box.setContentsMargins(0, 0, 0, 0)
        self.status_label = QLabel("No run.")
        self.status_label.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m steps")
        self.stats_label = QLabel("")
        # "not learning: ..." with the likely causes, when the run's loss / val L1 stays flat
        self.learning_label = QLabel("")
        self.learning_label.setWordWrap(True)
        self.learning_label.setStyleSheet("color: #b35900;")
        self.learning_label.hide()
        live_box.addWidget(self.status_label)
        live_box.addWidget(self.progress)
        live_box.addWidget(self.stats_label)
        live_box.addWidget(self.learning_label)
        # why a local run may be slower than expected (a connected rig shares the CPU)
        self.load_label = QLabel("")
        self.load_label.setWordWrap(True)
        self.load_label.hide()
        live_box.addWidget(self.load_label)
        self.curves = CurvesWidget()
        live_box.addWidget(self.curves, 1)
        right.addWidget(live)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(2000)
        right.addWidget(self.log_view)

        history = QWidget()
        hbox = QVBoxLayout(history)
        hbox.setContentsMargins(0, 0, 0, 0)
        self.history_table = QTableWidget(0, len(HISTORY_COLUMNS))
        self.history_table.setHorizontalHeaderLabels(HISTORY_COLUMNS)
        self.history_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.history_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.history_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.history_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.history_table.itemSelectionChanged.connect(self._on_history_selection_changed)
        hbox.addWidget(self.history_table)
        hb = QHBoxLayout()
        self.open_button = QPushButton("Open checkpoint in Rollout")
        self.resume_button = QPushButton("Resume")
        self.delete_button = QPushButton("Delete run")
        self.refresh_button = QPushButton("Refresh")
        for b, slot in [(self.open_button, self._on_open_clicked), (self.resume_button, self._on_resume_clicked),
                        (self.delete_button, self._on_delete_clicked), (self.refresh_button, self.refresh_history)]:
            b.clicked.connect(slot)
            hb.addWidget(b)
        hbox.addLayout(hb)
        right.addWidget(history)
        right.setSizes([450, 120, 200])
        self.splitter = right
        remember_splitter(self.ctx, right, "finetune.right")  # the person's pane sizes come back next launch
        root.addWidget(right, 1)
        self._on_preset_changed()
        self._on_history_selection_changed()

    # ------------------------------------------------------------------ form
    def _on_advanced_toggled(self, on: bool) -> None:
        self.advanced.setVisible(on)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

    def _on_browse_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Base model folder")
        if folder:
            self.model_edit.setCurrentText(folder)

    def _preset(self):
        name = self.preset_combo.currentData()
        return preset_for(self._gpu) if name == "auto" else PRESETS[name]

    def _on_preset_changed(self, *_):
        preset = self._preset()
        s = preset.settings
        self.rank_spin.setValue(int(s.get("lora_rank", 32)))
        self.alpha_spin.setValue(int(s.get("lora_alpha", 16)))
        self.lr_spin.setValue(float(s.get("lr", 5e-4)))
        self.batch_spin.setValue(int(s.get("batch_size", 8)))
        self.accum_spin.setValue(int(s.get("grad_accum", 1)))
        self.quant_check.setChecked(bool(s.get("quantize_4bit", False)))
        self.ckpt_check.setChecked(bool(s.get("activation_checkpointing", False)))
        if preset.model_hint == "tiny" and self.model_edit.currentText() != "tiny" and not Path(
                self.model_edit.currentText()).is_dir():
            self.model_edit.setCurrentText("tiny")
        self.estimate_label.setText(self._estimate_text())

    def _on_options_changed(self, *_):
        self.estimate_label.setText(self._estimate_text())

    def _estimate_text(self) -> str:
        from finetune.presets import shape_from_folder

        model = self.model_edit.currentText().strip()
        preset = self._preset()
        if model == "tiny":
            return f"{preset.title}. The tiny model needs well under 1 GiB."
        shape = shape_from_folder(Path(model)) if Path(model).is_dir() else None
        if shape is None:
            return f"{preset.title}. Memory estimate: shown when the run starts (model not local)."
        head = self.head_combo.currentText()
        est = self._estimate(shape)
        budget = f" of {self._gpu.total_gib:.0f} GiB" if self._gpu else ""
        return f"{preset.title}. Estimate ({head} head): {est.summary()}{budget}"

    def _estimate(self, shape):
        """The estimate for ``shape`` with the chosen action head (its LLM tokens and fully trained params)."""
        from finetune.presets import estimate_memory, head_shape

        shape = head_shape(shape, self.head_combo.currentText(), self.chunk_spin.value(), 7, base_action_tokens=7)
        layers = int(self._preset().settings.get("checkpoint_layers", 0) or 0)
        fraction = min(1.0, layers / shape.layers) if layers > 0 and shape.layers else 1.0
        return estimate_memory(shape, batch_size=self.batch_spin.value(), lora_rank=self.rank_spin.value(),
                               dtype="bf16" if self._gpu else "fp32", quantize_4bit=self.quant_check.isChecked(),
                               activation_checkpointing=self.ckpt_check.isChecked(), on_gpu=self._gpu is not None,
                               lean=not self.vision_lora_check.isChecked(), checkpointed_fraction=fraction)

    def _fits_or_says_why(self, cfg) -> bool:
        """A local GPU run whose estimate exceeds the card is refused here, with the number it would need."""
        from finetune.presets import check_fits, shape_from_folder

        if self._gpu is None or self.remote_check.isChecked() or not Path(cfg.model).is_dir():
            return True
        shape = shape_from_folder(Path(cfg.model))
        if shape is None:
            return True
        try:
            check_fits(self._estimate(shape), self._gpu.total_gib, f"GPU {self._gpu.name}")
        except KnownError as err:
            self.ctx.error_posted.emit(str(err))
            return False
        return True

    def refresh_datasets(self, datasets: list | None = None) -> None:
        """List every dataset (empty ones too, marked). The choice never moves on its own: a chosen dataset
        that emptied or vanished stays chosen and says so; the first non-empty one is chosen only when none was.
        ``datasets``: a list read already (the store's ``datasets()``), else it is read now."""
        current = self.dataset_combo.currentText()
        try:
            infos = datasets if datasets is not None else self.ctx.store.datasets()
            self._dataset_sizes = {d.name: int(d.num_episodes) for d in infos}
        except Exception as err:  # noqa: BLE001 - a broken store is shown, not raised into Qt
            self.ctx.error_posted.emit(str(err))
            self._dataset_sizes = {}
        names = list(self._dataset_sizes)
        if current and current not in names:
            names.append(current)
        with QSignalBlocker(self.dataset_combo):
            self.dataset_combo.clear()
            self.dataset_combo.addItems(names)
            if current:
                self.dataset_combo.setCurrentText(current)
            else:
                filled = [n for n in names if self._dataset_sizes.get(n)]
                self.dataset_combo.setCurrentText(filled[0] if filled else (names[0] if names else ""))
        self._on_dataset_changed()

    def dataset_problem(self, name: str) -> str | None:
        """Why ``name`` cannot be trained on (one line), or None."""
        sizes = getattr(self, "_dataset_sizes", {})
        if not name:
            return "no dataset to train on: record episodes in the Record tab first"
        if name not in sizes:
            return f"dataset '{name}' is not in the store: pick another one or record it in the Record tab"
        if not sizes[name]:
            return f"dataset '{name}' is empty (0 episodes): record episodes into it in the Record tab first"
        return None

    def _on_dataset_changed(self, *_) -> None:
        name = self.dataset_combo.currentText()
        problem = self.dataset_problem(name) if name else None
        if problem:
            self.dataset_info.setText(problem)
            self.dataset_info.setStyleSheet("color: #c0392b;")
        else:
            n = getattr(self, "_dataset_sizes", {}).get(name, 0)
            self.dataset_info.setText(f"{n} episode{'s' if n != 1 else ''}" if name else "")
            self.dataset_info.setStyleSheet("")

    def build_config(self) -> FinetuneConfig:
        """The FinetuneConfig the form describes (the child resolves the same values from its CLI args)."""
        cameras = [c.strip() for c in self.cameras_edit.text().split(",") if c.strip()]
        return FinetuneConfig(
            dataset=self.dataset_combo.currentText(), model=self.model_edit.currentText().strip() or "tiny",
            steps=self.steps_spin.value(), batch_size=self.batch_spin.value(), grad_accum=self.accum_spin.value(),
            lr=self.lr_spin.value(), lora_rank=self.rank_spin.value(), lora_alpha=self.alpha_spin.value(),
            quantize_4bit=self.quant_check.isChecked(), activation_checkpointing=self.ckpt_check.isChecked(),
            cameras=cameras, action_head=self.head_combo.currentText(), chunk_size=self.chunk_spin.value(),
            eval_every=self.eval_spin.value(), save_every=self.save_spin.value(), val_fraction=self.val_spin.value(),
            gpus=self.gpus_spin.value(), sharding=self.sharding_combo.currentText(),
            lora_include_vision=self.vision_lora_check.isChecked(), preset=self._preset().name)

    def build_args(self, cfg: FinetuneConfig, run_id: str) -> list[str]:
        args = ["--home", str(self.home), "finetune", "--dataset", cfg.dataset, "--model", cfg.model,
                "--preset", cfg.preset, "--steps", str(cfg.steps), "--batch", str(cfg.batch_size),
                "--grad-accum", str(cfg.grad_accum), "--lr", repr(cfg.lr), "--lora-rank", str(cfg.lora_rank),
                "--lora-alpha", str(cfg.lora_alpha), "--action-head", cfg.action_head, "--chunk", str(cfg.chunk_size),
                "--eval-every", str(cfg.eval_every), "--save-every", str(cfg.save_every),
                "--val-fraction", repr(cfg.val_fraction), "--run-id", run_id]
        args.append("--activation-checkpointing" if cfg.activation_checkpointing else "--no-activation-checkpointing")
        if cfg.quantize_4bit:
            args.append("--4bit")
        if cfg.cameras:
            args += ["--cameras", ",".join(cfg.cameras)]
        if cfg.gpus > 1:
            args += ["--gpus", str(cfg.gpus), "--sharding", cfg.sharding]
        if cfg.lora_include_vision:
            args.append("--lora-include-vision")
        if self.remote_check.isChecked():
            args += self._remote_args()
        return args

    def _remote_args(self) -> list[str]:
        host = self.remote_host_edit.text().strip()
        out = ["--remote", host, "--remote-home", self.remote_home_edit.text().strip() or "vla-studio",
               "--remote-cmd", self.remote_cmd_edit.text().strip() or "vla-studio"]
        if self.remote_key_edit.text().strip():
            out += ["--ssh-key", self.remote_key_edit.text().strip()]
        for opt in self.remote_opts_edit.text().split(","):
            if opt.strip():
                out += ["--ssh-option", opt.strip()]
        return out

    # ------------------------------------------------------------------ running
    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.is_running

    def _on_start_clicked(self) -> None:
        self.start_run()

    def start_run(self) -> str | None:
        if self.is_running:
            self.ctx.error_posted.emit("a fine-tune is already running here: cancel it or wait for it to finish")
            return None
        cfg = self.build_config()
        self.refresh_datasets()  # the store may have changed since the list was drawn
        problem = self.dataset_problem(cfg.dataset)
        if problem is None and not self.remote_check.isChecked():  # a remote run resolves its own model
            try:
                check_model_spec(cfg.model)
            except KnownError as err:
                problem = f"base model: {err}"
        if problem:
            self._refuse(problem)
            return None
        if self.remote_check.isChecked() and not self.remote_host_edit.text().strip():
            self.ctx.error_posted.emit("remote run: enter the SSH host (user@host[:port])")
            return None
        if not self._fits_or_says_why(cfg):
            return None
        run_id = make_run_id(cfg)
        self._launch(self.build_args(cfg, run_id), run_id, cfg.steps, fresh=True)
        return run_id

    def _refuse(self, message: str) -> None:
        """A run that cannot start: say why where the person looks, start nothing."""
        self.status_label.setText(f"Not started: {message}")
        self.status_label.setStyleSheet("color: #c0392b;")
        self.ctx.error_posted.emit(message)

    def resume_run(self, run_id: str) -> None:
        if self.is_running:
            self.ctx.error_posted.emit("a fine-tune is already running here: cancel it before resuming another")
            return
        args = ["--home", str(self.home), "finetune", "--resume", run_id]
        try:
            remote = (self.ctx.store.run(run_id).config or {}).get("remote")
        except Exception:  # noqa: BLE001 - an unknown run resumes locally and reports its own error
            remote = None
        if remote:
            if not self.remote_host_edit.text().strip():
                self.ctx.error_posted.emit(f"run {run_id} trained on {remote}: fill in the remote host to resume it")
                return
            args += self._remote_args()
        self._launch(args, run_id, 0, fresh=False)

    def _launch(self, args: list[str], run_id: str, steps: int, fresh: bool) -> None:
        self._begin_following(run_id, steps, clear=fresh)
        self.log_view.appendPlainText("$ vla-studio " + shlex.join(args))
        if not fresh:  # show where the resumed run stands
            from finetune.metrics import read_events

            for event in read_events(run_dir(self.home, run_id) / "metrics.jsonl"):
                self._apply_event(event, replay=True)
        self.process.start_local(args, run_dir(self.home, run_id), program=self.child_program, env=self.child_env)
        self._set_local_training("--remote" not in args)

    def _set_local_training(self, on: bool) -> None:
        self.ctx.set_local_training(on)
        self._update_load_note()

    def _update_load_note(self, *_) -> None:
        """Say why a local run may be slow: a connected rig renders and runs its loop on the same CPU."""
        from recorder.session import IDLE_YIELD_CAMERA_FPS

        rigs = self.ctx.rigs
        rig = rigs.rig
        if not (self.ctx.local_training and rig is not None):
            self.load_label.hide()
            return
        name = getattr(rig, "name", "rig")
        if rigs.holder == "Rollout":
            text = (f"The Rollout tab drives the rig ({name}) on this computer: its loop and cameras share the CPU "
                    "with this run, so training is slower until the rollout ends.")
        else:
            text = (f"A rig is connected ({name}): while this run trains, its idle cameras render at "
                    f"{IDLE_YIELD_CAMERA_FPS:g} fps so the training keeps the CPU. Recording meanwhile restores the "
                    "full rate and slows the training; disconnect the rig for the fastest run.")
        self.load_label.setText(text)
        self.load_label.show()

    def _begin_following(self, run_id: str, steps: int, clear: bool) -> None:
        if self.process is not None:
            self.process.deleteLater()
        self.process = FinetuneProcess(self)
        self.process.event_received.connect(self._on_event_received)
        self.process.log_received.connect(self._on_log_received)
        self.process.finished.connect(self._on_process_finished)
        self.run_id = run_id
        self.total_steps = steps
        self.last_error = ""
        self._started_at = time.time()
        if clear:
            self.curves.clear()
        self.learning_label.clear()
        self.learning_label.hide()
        self.progress.setMaximum(max(1, steps))
        self.progress.setValue(0)
        self.status_label.setText(f"Starting {run_id} …")
        self.status_label.setStyleSheet("")
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.run_started.emit(run_id)

    def reattach(self) -> str | None:
        """Follow a run that an earlier session left running (its pid file names a live process)."""
        if self.is_running:
            return None
        try:
            runs = [r for r in self.ctx.store.runs() if r.status == "running"]
        except Exception:  # noqa: BLE001
            return None
        for run in reversed(runs):
            pid = pid_alive(run.path)
            if pid is None:
                continue
            steps = int((run.config or {}).get("steps", 0))
            self._begin_following(run.run_id, steps, clear=True)
            self.log_view.appendPlainText(f"re-attached to {run.run_id} (pid {pid})")
            self.process.attach(run.path, pid=pid, from_start=True)
            self._set_local_training(not (run.config or {}).get("remote"))
            self.ctx.status_posted.emit(f"re-attached to the running fine-tune {run.run_id}")
            return run.run_id
        return None

    def _on_cancel_clicked(self) -> None:
        if self.process is not None and self.process.cancel():
            self.status_label.setText(f"Cancelling {self.run_id}: writing a checkpoint …")
            self.cancel_button.setEnabled(False)

    def _on_event_received(self, event: dict) -> None:
        self._apply_event(event)

    def _apply_event(self, event: dict, replay: bool = False) -> None:
        kind = event.get("event")
        step = int(event.get("step") or 0)
        if kind == "start":
            self.total_steps = int(event.get("steps") or self.total_steps or 1)
            self.progress.setMaximum(max(1, self.total_steps))
            self.progress.setValue(step)
            if not replay:
                where = f" (resumed from step {step})" if event.get("resumed_from") else ""
                self.status_label.setText(f"Training {event.get('run_id', self.run_id)} on {event.get('device')}{where}")
                self.log_view.appendPlainText(
                    f"{event.get('train_samples')} samples from {event.get('train_episodes')} episodes "
                    f"(+{event.get('val_episodes')} for validation); memory: {event.get('memory_summary', '?')}")
        elif kind == "train":
            self.curves.add_train(step, event.get("loss"))
            self.progress.setValue(min(step, self.progress.maximum()))
            if not replay:
                mem = event.get("gpu_mem_gb")
                mem_text = f"GPU {mem:.2f} GiB" if isinstance(mem, (int, float)) and mem > 0 else "GPU -"
                self.stats_label.setText(
                    f"step {step}/{self.total_steps}   loss {event.get('loss', float('nan')):.4f}   "
                    f"lr {event.get('lr', 0):.2e}   {event.get('samples_per_s', 0):.1f} samples/s   "
                    f"ETA {_fmt_duration(event.get('eta_s'))}   {mem_text}")
        elif kind == "rewound":  # a resume went back to its checkpoint: the steps after it are trained again
            self.curves.drop_after(step)
            self.progress.setValue(min(step, self.progress.maximum()))
        elif kind == "eval":
            self.curves.add_eval(step, event.get("val_loss"), event.get("action_accuracy"), event.get("l1"))
            if not replay:
                self.log_view.appendPlainText(
                    f"step {step}: val loss {event.get('val_loss'):.4f}, L1 {event.get('l1_real', float('nan')):.3f} "
                    "(real units)")
        elif kind == "checkpoint" and not replay:
            self.log_view.appendPlainText(f"checkpoint: {event.get('path')}")
            self.refresh_history()
        elif kind == "config_drift" and not replay:
            self.log_view.appendPlainText(f"config changed since the checkpoint: {event.get('fields')}")
        elif kind == "warning" and event.get("kind") == NOT_LEARNING:
            self.learning_label.setText(f"Step {step}: {event.get('message')}")
            self.learning_label.setToolTip("Likely causes:\n" + "\n".join(f"- {c}" for c in event.get("causes") or []))
            self.learning_label.show()
            if not replay:
                self.log_view.appendPlainText(f"warning: {event.get('message')}")
        elif kind in ("error", "warning") and not replay:
            self.log_view.appendPlainText(f"{kind}: {event.get('message')}")

    def _on_log_received(self, line: str) -> None:
        self.log_view.appendPlainText(line)

    def _on_process_finished(self, status: str, message: str) -> None:
        run_id = self.run_id or ""
        self._set_local_training(False)
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if status == "done":
            self.status_label.setText(f"Finished {run_id}.")
            self.progress.setValue(self.progress.maximum())
        elif status == "cancelled":
            self.status_label.setText(f"Cancelled {run_id}; a checkpoint was written: resume it from the runs list.")
        else:
            lines = "\n".join(list(self.process.last_lines)[-8:]) if self.process else ""
            self.last_error = message or "the training process failed"
            self.status_label.setText(f"Failed: {self.last_error}")
            self.status_label.setStyleSheet("color: #c0392b;")
            if lines:
                self.log_view.appendPlainText("--- last log lines ---\n" + lines)
            self.ctx.error_posted.emit(f"fine-tune {run_id} failed: {self.last_error}")
        self.refresh_history()
        self.ctx.store_changed.emit()
        self.run_finished.emit(run_id, status)

    # ------------------------------------------------------------------ history
    def _on_store_changed(self) -> None:
        self.refresh_datasets()

    def refresh_history(self) -> None:
        try:
            runs = list(reversed(self.ctx.store.runs()))
        except Exception as err:  # noqa: BLE001
            self.ctx.error_posted.emit(str(err))
            return
        self.history_table.setRowCount(len(runs))
        now = datetime.now(UTC)
        for row, run in enumerate(runs):
            end = run.finished_at or (now if run.status == "running" else None)
            duration = (end - run.created_at).total_seconds() if end and run.created_at else None
            status = effective_status(run.status, run.path)  # "running" with no live process: interrupted
            values = [run.run_id, status, run.dataset or "-", run.model, _fmt_duration(duration),
                      "-" if run.best_metric is None else f"{run.best_metric:.4f}", str(run.num_checkpoints)]
            for col, value in enumerate(values):
                item = QTableWidgetItem(value)
                if col == 0:
                    item.setData(Qt.ItemDataRole.UserRole, run.run_id)
                self.history_table.setItem(row, col, item)
        self._on_history_selection_changed()

    def history_rows(self) -> list[list[str]]:
        t = self.history_table
        return [[t.item(r, c).text() for c in range(t.columnCount())] for r in range(t.rowCount())]

    def selected_run(self) -> str | None:
        rows = self.history_table.selectionModel().selectedRows() if self.history_table.selectionModel() else []
        if not rows:
            return None
        return self.history_table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)

    def select_run(self, run_id: str) -> None:
        for r in range(self.history_table.rowCount()):
            if self.history_table.item(r, 0).data(Qt.ItemDataRole.UserRole) == run_id:
                self.history_table.selectRow(r)
                return

    def _on_history_selection_changed(self) -> None:
        run_id = self.selected_run()
        has = run_id is not None
        running_this = has and self.is_running and run_id == self.run_id
        self.open_button.setEnabled(has and last_checkpoint(run_dir(self.home, run_id)) is not None)
        self.resume_button.setEnabled(has and not self.is_running)
        self.delete_button.setEnabled(has and not running_this)

    def _on_open_clicked(self) -> None:
        run_id = self.selected_run()
        if run_id is None:
            return
        ckpt = last_checkpoint(run_dir(self.home, run_id))
        if ckpt is None:
            self.ctx.error_posted.emit(f"run {run_id} has no checkpoint yet")
            return
        self.ctx.checkpoint_opened.emit(str(ckpt))

    def _on_resume_clicked(self) -> None:
        run_id = self.selected_run()
        if run_id is not None:
            self.resume_run(run_id)

    def _confirm(self, text: str) -> bool:
        """Yes/no question (tests replace this)."""
        if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
            return True
        answer = QMessageBox.question(self, "vla-studio", text)
        return answer == QMessageBox.StandardButton.Yes

    def _on_delete_clicked(self) -> None:
        run_id = self.selected_run()
        if run_id is None:
            return
        if self.is_running and run_id == self.run_id:
            self.ctx.error_posted.emit(f"run {run_id} is still training: cancel it first")
            return
        if not self._confirm(f"Delete run {run_id} and its checkpoints?"):
            return
        try:
            self.ctx.store.delete_run(run_id)
        except Exception as err:  # noqa: BLE001
            self.ctx.error_posted.emit(str(err))
            return
        self.ctx.status_posted.emit(f"deleted run {run_id}")
        self.refresh_history()

    # ------------------------------------------------------------------ closing the studio
    def ask_close(self) -> str:
        """'stop', 'leave' or 'cancel' (tests replace this; offscreen answers 'leave')."""
        if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
            return "leave"
        box = QMessageBox(self)
        box.setWindowTitle("vla-studio")
        box.setText(f"The fine-tune {self.run_id} is still running.")
        box.setInformativeText("Stop it (a checkpoint is written) or leave it running? "
                               "A run left running is shown again when the studio next starts.")
        stop = box.addButton("Stop", QMessageBox.ButtonRole.DestructiveRole)
        leave = box.addButton("Leave running", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        clicked = box.clickedButton()
        return "stop" if clicked is stop else "leave" if clicked is leave else "cancel"

    def confirm_close(self) -> bool:
        if not self.is_running:
            self._close_choice = "none"
            return True
        choice = self.ask_close()
        if choice == "cancel":
            return False
        self._close_choice = choice
        return True

    def shutdown(self, wait_s: float = 120.0) -> None:
        if self.process is None or not self.process.is_running:
            return
        if self._close_choice == "stop":
            self.process.cancel()
            self.process.wait_finished(wait_s)
        else:
            self.process.detach()
