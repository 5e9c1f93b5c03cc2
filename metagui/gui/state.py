"""What the pages share: the one run config being edited, the loaded dataset, the project.

Pages edit ``state.config`` in place and call ``state.changed(section)``; everybody else
listens to ``config_changed``; a page's widgets do both through their bindings
(widgets/binding.py). The store connection here belongs to the GUI thread; the training
worker opens its own.
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from metagui.core.config import DatasetConfig, RunConfig, source_modality
from metagui.core.data.base import TextDataset
from metagui.core.encoder_source import USER_CHOICE, default_text_encoder
from metagui.core.errors import MetaGUIError
from metagui.core.presets import default_hyperparams
from metagui.core.store import RunStore

STEPS = ("data", "tasks", "algorithm", "train", "chat", "runs", "export")
DEMO_NAME = "Demo: voice intents with ProtoNet"


def dataset_key(cfg: DatasetConfig) -> str:
    """Which dataset a config describes: only the fields its source reads count."""
    return json.dumps(cfg.to_dict(), sort_keys=True)


class AppState(QObject):
    config_changed = Signal(str)  # "dataset" | "task" | "algorithm" | "training" | "all"
    dataset_changed = Signal()
    project_changed = Signal()
    steps_changed = Signal()
    training_changed = Signal()

    def __init__(self, db_path: str | Path | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = RunStore(db_path)
        self.store.reap_stale_runs()  # runs whose process died while training
        self.db_path = self.store.path
        self.config = RunConfig()
        self.dataset = None
        self._loaded_key: str | None = None
        self.project_id: int | None = None
        self.project_name = ""
        self.done: dict[str, bool] = dict.fromkeys(STEPS, False)
        self.closed = False
        self.training_run_id: int | None = None
        self.training_active = False
        self._autosave = QTimer(self)
        self._autosave.setSingleShot(True)
        self._autosave.setInterval(800)
        self._autosave.timeout.connect(self.save_project)

    # --- config ------------------------------------------------------------------------------
    def changed(self, section: str) -> None:
        self.config_changed.emit(section)
        self._autosave.start()

    def set_config(self, cfg: RunConfig) -> None:
        self.config = cfg
        self.config_changed.emit("all")
        self._autosave.start()

    # --- dataset -----------------------------------------------------------------------------
    def set_dataset(self, ds, cfg: DatasetConfig) -> None:
        self.dataset = ds
        a = self.config.algorithm
        chosen = a.text_encoder_why == USER_CHOICE or (a.text_encoder and not a.text_encoder_why)  # older configs
        if isinstance(ds, TextDataset) and not chosen:
            # a text project starts on the best encoder this computer has for its language
            choice = default_text_encoder(ds.texts, cfg.languages if cfg.source == "intents" else None)
            if (choice.spec, choice.why) != (a.text_encoder, a.text_encoder_why):
                if a.hyperparams == default_hyperparams(a.name, "text", bool(a.text_encoder)):
                    a.hyperparams = default_hyperparams(a.name, "text", bool(choice.spec))  # untouched: follow
                a.text_encoder, a.text_encoder_why = choice.spec, choice.why
                self.changed("algorithm")
        self._loaded_key = dataset_key(cfg) if ds is not None or cfg.source == "sinusoid" else None
        self.dataset_changed.emit()
        self.mark("data", self.dataset_ready)

    @property
    def dataset_ready(self) -> bool:
        """The loaded dataset is the one the config describes (always true for sinusoid)."""
        if self.config.dataset.source == "sinusoid":
            return True
        return self.dataset is not None and self._loaded_key == dataset_key(self.config.dataset)

    @property
    def modality(self) -> str:
        if self.dataset_ready and self.dataset is not None:
            return str(self.dataset.modality.value)
        return source_modality(self.config.dataset)

    # --- flow marks ----------------------------------------------------------------------------
    def mark(self, step: str, done: bool) -> None:
        if self.done.get(step) != done:
            self.done[step] = done
            self.steps_changed.emit()

    # --- projects ----------------------------------------------------------------------------
    def save_project(self) -> None:
        self._autosave.stop()
        if self.project_id is None or self.closed:
            return
        self.store.save_project(self.project_name, self.config.to_toml(), self.project_id)

    def new_project(self, name: str, cfg: RunConfig) -> int:
        self.save_project()
        self.project_id = self.store.save_project(name, cfg.to_toml())
        self.project_name = name
        self.set_config(cfg)
        self.project_changed.emit()
        return self.project_id

    def open_project(self, project_id: int) -> None:
        rows = {p["id"]: p for p in self.store.projects()}
        if project_id not in rows:
            raise MetaGUIError(f"project {project_id} is not in {self.db_path}")
        self.save_project()
        row = rows[project_id]
        cfg = RunConfig.from_toml(row["config"])
        self.project_id = project_id
        self.project_name = row["name"]
        self.set_config(cfg)
        self.project_changed.emit()

    def rename_project(self, name: str) -> None:
        self.project_name = name
        self.save_project()
        self.project_changed.emit()

    def projects(self) -> list[dict]:
        return self.store.projects()

    def close(self) -> None:
        if self.closed:
            return
        self.save_project()
        self.closed = True
        self.store.close()
