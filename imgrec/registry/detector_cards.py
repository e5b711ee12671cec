"""Detector model cards and the shipped pretrained detectors (``settings.shared_detection_dir``), checked by sha256."""

from __future__ import annotations

from dataclasses import dataclass

from imgrec.core.class_names import coco_name
from imgrec.core.errors import ModelError, first_line
from imgrec.core.files import sha256_file
from imgrec.core.settings import Settings
from imgrec.modeling.darknet import UPSTREAM_COMMIT, UPSTREAM_FOLDER, UPSTREAM_REPOSITORY, fetch_instructions
from imgrec.modeling.yolo_spec import YoloHeadSpec
from imgrec.registry.card import ModelCard
from imgrec.tasks.detection import DetectionTask

# Every detector card states these; callers may override them per request.
DEFAULT_SCORE_THRESHOLD = 0.3
DEFAULT_IOU_THRESHOLD = 0.45
DEFAULT_MAX_DETECTIONS = 100
DARKNET_LICENCE = "Darknet YOLO licence (public domain): \"Do whatever you want with it.\""
# Yolo-Fastest 1.1's two heads (from its .cfg; the same for XL and regular).
YOLO_FASTEST_SPEC = YoloHeadSpec(
    input_size=(320, 320),
    anchors=((12, 18), (37, 49), (52, 132), (115, 73), (119, 199), (242, 238)),
    masks=((3, 4, 5), (0, 1, 2)),
    num_classes=80,
)


@dataclass(frozen=True)
class StockDetector:
    folder: str  # <shared_detection_dir>/<folder>/<folder>.keras, beside its coco.names
    sha256: str  # of the .keras file
    description: str


STOCK_DETECTORS = {
    "coco-yolo-fastest-xl": StockDetector(
        "yolo-fastest-1.1-xl", "a8d463582213b613be19f84e5d8e70ade62e98c60bbfbc073c0374c424a334a8",
        "Yolo-Fastest 1.1 XL (923k parameters, 320x320), pretrained on COCO 2017; stated mAP@0.5 34.3 %."),
    "coco-yolo-fastest": StockDetector(
        "yolo-fastest-1.1", "a920dbbea07f342704bdcabfe050653ff78cd8d31654855e6c2de90bcc7d5659",
        "Yolo-Fastest 1.1 (346k parameters, 320x320), pretrained on COCO 2017; stated mAP@0.5 24.4 %."),
}
DEFAULT_DETECTOR = "coco-yolo-fastest-xl"


def detector_card(spec: YoloHeadSpec, class_names: list[str], name: str, *, source: str, licence: str,
                  dataset: str = "", description: str = "") -> ModelCard:
    """The card of a YOLO detector (version left for ``catalog.save_model`` to number); class names in COCO spelling."""
    names = tuple(coco_name(c.strip()) for c in class_names)
    if len(names) != spec.num_classes:
        raise ModelError(f"{len(names)} class names given for a detector of {spec.num_classes} classes. "
                         "Expected one name per class.")
    return ModelCard(
        name=name, version="", backbone="yolo", input_size=spec.input_size, preprocessing="unit",
        class_names=names, dataset=dataset, task=DetectionTask.name, description=description,
        decoding={"yolo": spec.to_dict(), "score_threshold": DEFAULT_SCORE_THRESHOLD,
                  "iou_threshold": DEFAULT_IOU_THRESHOLD, "max_detections": DEFAULT_MAX_DETECTIONS},
        source=source, licence=licence,
    )


def load_stock_detector(name: str, settings: Settings):
    """A shipped detector, wrapped for imgrec, with its card: ``(model, card)``."""
    import keras  # Keras loads only to register a detector

    from imgrec.modeling.yolo import detector_from_raw

    stock = STOCK_DETECTORS[name]
    folder = settings.shared_detection_dir / stock.folder
    path, names_file = folder / f"{stock.folder}.keras", folder / "coco.names"
    if not path.is_file() or not names_file.is_file():
        raise ModelError(
            f"Detector '{name}' needs {stock.folder}/{stock.folder}.keras and coco.names in the shared detection "
            f"folder (IMGREC_SHARED_DETECTION_DIR, now {settings.shared_detection_dir.name}/), which are missing. "
            f"Import the Darknet originals instead: {fetch_instructions(stock.folder)}.")
    actual = sha256_file(path)
    if actual != stock.sha256:
        raise ModelError(f"{path.name} has checksum {actual[:12]}…, expected {stock.sha256[:12]}… "
                         "(the shipped file is corrupt or was replaced).")
    try:
        raw = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - any failure to deserialise is the file's fault
        raise ModelError(f"Could not load {path.name}: {first_line(exc)}") from None
    card = detector_card(
        YOLO_FASTEST_SPEC, names_file.read_text().splitlines(), name, dataset="COCO 2017 (80 classes)",
        description=stock.description, licence=DARKNET_LICENCE,
        source=f"{UPSTREAM_REPOSITORY}@{UPSTREAM_COMMIT}:{UPSTREAM_FOLDER}/{stock.folder}.cfg+.weights")
    return detector_from_raw(raw, YOLO_FASTEST_SPEC), card
