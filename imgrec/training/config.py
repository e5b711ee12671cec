"""The run configuration: what to train, validated before any work starts (no TensorFlow here)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path

from imgrec.core.errors import ImgrecError
from imgrec.core.storage import is_url
from imgrec.datasets import multilabel
from imgrec.datasets.augment import AugmentConfig
from imgrec.datasets.loading import BUILTIN
from imgrec.modeling.backbones import BACKBONES
from imgrec.tasks.registry import DEFAULT_TASK, TASKS

SCHEDULES = ("cosine", "constant")
FOLDERS = "folders"  # class folders, one label per image
DATASET_FORMATS = (FOLDERS, *multilabel.FORMATS)


class ConfigError(ImgrecError):
    """A run configuration has a missing or invalid value."""


@dataclass
class RunConfig:
    name: str = "my-model"  # the registry name the trained model is saved under
    task: str = DEFAULT_TASK
    dataset: str = "cifar10"  # built-in name or a folder path
    dataset_format: str = FOLDERS  # or a label-set layout (multi-label): csv, coco, voc, yolo
    backbone: str = "mobilenet_v2"
    image_size: tuple[int, int] = (96, 96)
    weights: str | None = "imagenet"
    epochs: int = 10  # head phase
    fine_tune_epochs: int = 0
    fine_tune_layers: int = 30  # top backbone layers to unfreeze
    batch_size: int = 64
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    lr_schedule: str = "cosine"
    loss: str = ""  # one of the task's losses; empty: the task's default (its first)
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    class_weights: bool = False
    dropout: float = 0.2
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cache_embeddings: bool = True
    early_stopping_patience: int = 5  # epochs without a better val accuracy; 0 turns it off
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 1337
    limit_per_class: int | None = None  # cap images per class and split (quick experiments)
    tensorboard: bool = False
    set_active: bool = False
    description: str = ""
    throttle_seconds: float = 0.0  # sleep after each batch: demos and tests of cancel/kill only

    def __post_init__(self):
        if isinstance(self.image_size, (int, float)):
            self.image_size = (int(self.image_size), int(self.image_size))
        self.image_size = tuple(int(v) for v in self.image_size)
        if (self.dataset and self.dataset not in BUILTIN and self.dataset not in multilabel.BUILTIN
                and not is_url(self.dataset)):  # a folder: absolute, so any worker finds it (a bucket URL already is)
            self.dataset = str(Path(self.dataset).expanduser().resolve())
        if not self.loss and self.task in TASKS:
            self.loss = TASKS[self.task].losses[0]
        if isinstance(self.augment, dict) or self.augment is None:
            self.augment = AugmentConfig.from_dict(self.augment)
        self.validate()

    def validate(self) -> None:
        problems = []
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            problems.append(f"name '{self.name}' must be letters, digits, '-', '_' or '.'")
        if self.backbone not in BACKBONES:
            problems.append(f"backbone '{self.backbone}' is not one of {', '.join(BACKBONES)}")
        if len(self.image_size) != 2 or min(self.image_size) < 8 or max(self.image_size) > 1024:
            problems.append(f"image_size {self.image_size} must be two numbers from 8 to 1024")
        if self.epochs < 0 or self.fine_tune_epochs < 0 or self.epochs + self.fine_tune_epochs < 1:
            problems.append("epochs + fine_tune_epochs must be at least 1")
        if self.batch_size < 1:
            problems.append("batch_size must be at least 1")
        task = TASKS.get(self.task)
        if task is None:
            problems.append(f"task '{self.task}' is not one of {', '.join(TASKS)}")
        elif self.loss not in task.losses:
            problems.append(f"loss '{self.loss}' is not one of {', '.join(task.losses)}")
        if self.dataset_format not in DATASET_FORMATS:
            problems.append(f"dataset_format '{self.dataset_format}' is not one of {', '.join(DATASET_FORMATS)}")
        elif task is not None and task.label_sets != (self.dataset_format != FOLDERS or self.dataset in multilabel.BUILTIN):
            problems.append(f"task '{self.task}' trains on " + (
                f"label sets (dataset_format {', '.join(multilabel.FORMATS)} or {', '.join(multilabel.BUILTIN)})"
                if task.label_sets else f"class folders or {', '.join(BUILTIN)} (dataset_format '{FOLDERS}')"))
        if self.lr_schedule not in SCHEDULES:
            problems.append(f"lr_schedule '{self.lr_schedule}' is not one of {', '.join(SCHEDULES)}")
        if not 0 <= self.label_smoothing < 1:
            problems.append("label_smoothing must be in [0, 1)")
        if self.learning_rate <= 0 or self.fine_tune_learning_rate <= 0:
            problems.append("learning rates must be positive")
        if self.weights not in (None, "imagenet"):
            problems.append("weights must be 'imagenet' or null")
        if problems:
            raise ConfigError("Invalid run config: " + "; ".join(problems) + ".")

    @property
    def total_epochs(self) -> int:
        return self.epochs + (self.fine_tune_epochs if self.backbone != "small_cnn" else 0)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["image_size"] = list(self.image_size)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data or {}) - known
        if unknown:
            raise ConfigError(f"Unknown run config key(s): {', '.join(sorted(unknown))}.")
        return cls(**(data or {}))

    @classmethod
    def from_yaml(cls, path: str | Path) -> RunConfig:
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"Run config '{path}' not found.") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"Run config '{Path(path).name}' is not valid YAML ({exc}).") from None
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"Run config '{Path(path).name}' must be a mapping of keys to values.")
        return cls.from_dict(data or {})
