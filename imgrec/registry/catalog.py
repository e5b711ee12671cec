"""Models on disk: ``models/<name>/<version>/{model.keras, card.json}``, and which one is active.

Writes are atomic (build in a hidden temp folder, then rename), so a crash never
leaves a half-written model where a reader would find it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from imgrec.core.errors import ImgrecError, ModelError, first_line
from imgrec.core.files import sha256_file, write_atomically
from imgrec.core.settings import IMAGENET_MODEL_NAME, Settings
from imgrec.registry import detector_cards
from imgrec.registry.card import CARD_FILE, MODEL_FILE, TRAINING_REPORT, ModelCard
from imgrec.tasks.registry import task_for


def versions(name: str, settings: Settings) -> list[str]:
    folder = settings.models_dir / name
    if not folder.is_dir():
        return []
    found = [p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / CARD_FILE).exists()]
    return sorted(found, key=_version_key)


def _version_key(version: str):
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


def model_names(settings: Settings) -> list[str]:
    root = settings.models_dir
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and versions(p.name, settings))


def model_dir(name: str, version: str, settings: Settings) -> Path:
    return settings.models_dir / name / version


def list_cards(settings: Settings) -> list[ModelCard]:
    cards = []
    for name in model_names(settings):
        for version in versions(name, settings):
            cards.append(ModelCard.load(model_dir(name, version, settings)))
    return cards


def resolve(name: str | None, version: str | None, settings: Settings) -> tuple[str, str]:
    """Name and version to use: the active model when ``name`` is None, the latest version when ``version`` is."""
    if name is None:
        name, active_version = active_model(settings)
        version = version or active_version
    available = versions(name, settings)
    if not available and name == IMAGENET_MODEL_NAME:
        # The stock default registers itself on first use, whichever face (app, API, CLI) asks first.
        available = [ensure_default_model(settings).version]
    elif not available and name in detector_cards.STOCK_DETECTORS:
        available = [ensure_stock_detector(name, settings).version]
    if not available:
        known = ", ".join(model_names(settings)) or "none"
        raise ModelError(f"No model named '{name}'. Available models: {known}.")
    if version is None:
        return name, available[-1]
    if version not in available:
        raise ModelError(f"Model '{name}' has no version '{version}'. Available versions: {', '.join(available)}.")
    return name, version


def active_ref(settings: Settings) -> str | None:
    """The model the faces use by default as ``name@version`` (registering the stock default on first
    use), or None when the active model is gone."""
    try:
        return "@".join(resolve(None, None, settings))
    except ImgrecError:
        return None


def load_card(name: str | None, version: str | None, settings: Settings) -> ModelCard:
    name, version = resolve(name, version, settings)
    return ModelCard.load(model_dir(name, version, settings))


def save_model(model, card: ModelCard, settings: Settings) -> ModelCard:
    """Save a Keras model with its card as a new version; ``card.version`` empty means "next number"."""
    check_model_matches_card(model, card)
    parent = settings.models_dir / card.name
    parent.mkdir(parents=True, exist_ok=True)
    version = card.version or _next_version(card.name, settings)
    final = parent / version
    taken = ModelError(f"Model {card.name}@{version} already exists. Expected a new version.")
    if final.exists():
        raise taken
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{version}-"))
    try:
        model.save(staging / MODEL_FILE)
        card = card.with_updates(version=version, files={MODEL_FILE: sha256_file(staging / MODEL_FILE)})
        card.save(staging)
        staging.chmod(0o755)  # mkdtemp makes an owner-only folder
        try:
            staging.rename(final)
        except OSError:
            if final.exists():  # another process saved this version since the check above
                raise taken from None
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return card


def _next_version(name: str, settings: Settings) -> str:
    numbers = [int(v) for v in versions(name, settings) if v.isdigit()]
    return str(max(numbers, default=0) + 1)


def load_model(name: str | None, version: str | None, settings: Settings):
    """Load a model with Keras safe mode after checking its files against its card. Returns (model, card)."""
    import keras

    from imgrec.modeling import build, yolo  # noqa: F401 - register the Preprocess and YoloDecode layers for loading

    name, version = resolve(name, version, settings)
    folder = model_dir(name, version, settings)
    card = ModelCard.load(folder)
    card.verify_files(folder)
    try:
        model = keras.saving.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - any failure to deserialise is the model's fault, not ours
        raise ModelError(f"Could not load model {card.ref}: {first_line(exc)}") from None
    check_model_matches_card(model, card)
    return model, card


def check_model_matches_card(model, card: ModelCard) -> None:
    input_shape = tuple(model.inputs[0].shape[1:])
    expected_input = (*card.input_size, 3)
    if input_shape != expected_input:
        raise ModelError(
            f"Model {card.ref} takes input {input_shape}, but its card says {expected_input}."
        )
    problem = task_for(card).check_outputs(tuple(model.outputs[0].shape), card)
    if problem:
        raise ModelError(problem)


def active_model(settings: Settings) -> tuple[str, str | None]:
    """(name, version) marked active, else the default model with its latest version."""
    try:
        marker = json.loads(settings.active_model_file.read_text())
        name, version = marker["name"], marker.get("version")
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
        return settings.default_model, None
    if version not in versions(name, settings):
        return settings.default_model, None
    return name, version


def set_active_model(name: str, version: str | None, settings: Settings) -> tuple[str, str]:
    name, version = resolve(name, version, settings)
    write_atomically(settings.active_model_file, json.dumps({"name": name, "version": version}).encode())
    return name, version


def delete_version(name: str, version: str, settings: Settings) -> None:
    name, version = resolve(name, version, settings)
    if active_model(settings) == (name, version):
        raise ModelError(f"Model {name}@{version} is the active model. Make another model active first.")
    shutil.rmtree(model_dir(name, version, settings))


def ensure_default_model(settings: Settings) -> ModelCard:
    """Register the stock ImageNet MobileNetV2 the first time it is needed (no training involved)."""
    from imgrec.modeling import build  # Keras loads only to build the stock model

    if versions(IMAGENET_MODEL_NAME, settings):
        return load_card(IMAGENET_MODEL_NAME, None, settings)
    model, class_names = build.build_imagenet_mobilenet_v2()
    card = ModelCard(
        name=IMAGENET_MODEL_NAME,
        version="1",
        backbone="mobilenet_v2",
        input_size=build.IMAGENET_INPUT_SIZE,
        preprocessing="mobilenet_v2",
        class_names=tuple(class_names),
        dataset="ImageNet-1k (ILSVRC 2012)",
        description="Stock Keras MobileNetV2 (alpha 1.0, 224x224) with ImageNet weights; no training here.",
        metrics={},
    )
    return _save_stock(model, card, settings)


def ensure_stock_detector(name: str, settings: Settings) -> ModelCard:
    """Register a shipped pretrained detector (``detector_cards.STOCK_DETECTORS``) the first time it is needed."""
    if versions(name, settings):
        return load_card(name, None, settings)
    model, card = detector_cards.load_stock_detector(name, settings)
    return _save_stock(model, card.with_updates(version="1"), settings)


def _save_stock(model, card: ModelCard, settings: Settings) -> ModelCard:
    try:
        return save_model(model, card, settings)
    except ModelError:
        # Another process registered it first; theirs is as good as ours.
        if versions(card.name, settings):
            return load_card(card.name, None, settings)
        raise


def training_config(name: str, version: str, settings: Settings) -> dict:
    """The run config saved in a trained model's report; ``{}`` for a model not trained here."""
    try:
        return json.loads((model_dir(name, version, settings) / TRAINING_REPORT).read_text()).get("config") or {}
    except (OSError, ValueError, AttributeError):
        return {}
