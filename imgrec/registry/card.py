"""The model card: everything a model needs to be used correctly travels with it as JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from imgrec.core.errors import ModelError
from imgrec.core.files import sha256_file, utc_timestamp, write_atomically

CARD_FILE = "card.json"
MODEL_FILE = "model.keras"
TRAINING_REPORT = "report.json"  # written by imgrec.training.trainer beside a trained model; its config names the dataset


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    backbone: str
    input_size: tuple[int, int]  # (height, width) the model takes
    preprocessing: str  # mode of the Preprocess layer inside the model; inputs are raw 0-255 RGB
    class_names: tuple[str, ...]
    dataset: str
    task: str = "image-classification"
    description: str = ""
    metrics: dict = field(default_factory=dict)
    created: str = field(default_factory=utc_timestamp)
    files: dict = field(default_factory=dict)  # file name -> sha256
    decoding: dict = field(default_factory=dict)  # the task's decoding facts (a detector's head spec and thresholds)
    source: str = ""  # where pretrained weights came from
    licence: str = ""

    def __post_init__(self):
        # JSON gives lists; keep the dataclass hashable-looking and comparable after a round trip.
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ModelError(f"Model card input_size {self.input_size} is invalid. Expected (height, width).")
        if not self.class_names:
            raise ModelError(f"Model card of '{self.name}' has no class names. Expected at least one.")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def identity(self) -> dict:
        """Which model this is, as every JSON answer names it."""
        return {"name": self.name, "version": self.version, "task": self.task}

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["input_size"] = list(self.input_size)
        data["class_names"] = list(self.class_names)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ModelCard:
        known = {f.name for f in dataclasses.fields(cls)}
        missing = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING} - set(data)
        if missing:
            raise ModelError(f"Model card is missing {', '.join(sorted(missing))}.")
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_updates(self, **changes) -> ModelCard:
        return dataclasses.replace(self, **changes)

    def save(self, directory: Path) -> Path:
        path = Path(directory) / CARD_FILE
        write_atomically(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False).encode())
        return path

    @classmethod
    def load(cls, directory: Path) -> ModelCard:
        path = Path(directory) / CARD_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelError(f"No model card at {path.parent.name}/{CARD_FILE}.") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"Model card {path.parent.name}/{CARD_FILE} is not valid JSON ({exc}).") from None
        return cls.from_dict(data)

    def verify_files(self, directory: Path) -> None:
        """Refuse a model whose files changed since the card was written (truncated copy, tampering)."""
        for name, expected in self.files.items():
            path = Path(directory) / name
            if not path.exists():
                raise ModelError(f"Model {self.ref} is missing its file '{name}'.")
            actual = sha256_file(path)
            if actual != expected:
                raise ModelError(
                    f"Model {self.ref}: file '{name}' has checksum {actual[:12]}…, "
                    f"expected {expected[:12]}… from its model card. The file is corrupt or was replaced."
                )
