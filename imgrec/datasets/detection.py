"""Detection datasets: COCO JSON, Pascal VOC XML and YOLO txt layouts loaded into one form, with validation lines.

Every layout becomes a list of :class:`imgrec.tasks.detection_metrics.GroundTruthImage` (the image's
path, width and height, and its boxes as x1, y1, x2, y2 pixels with COCO-spelled labels). Evaluation
scores those boxes; the multi-label task reads each image's set of labels (:func:`image_label_sets`).

Layouts
    * ``coco``: a COCO JSON file (or a folder holding one); ``file_name`` relative to the file's folder
      or its ``images/`` folder; ``bbox`` is x, y, width, height;
    * ``voc``: a folder with ``Annotations/*.xml`` and the images in ``JPEGImages/`` (or the folder
      itself); ``difficult`` objects count as COCO crowd regions (neither required nor penalised);
    * ``yolo``: a folder with ``images/``, ``labels/<stem>.txt`` (``class cx cy w h``, fractions of the
      image) and a names file (``*.names``, ``classes.txt`` or ``names.txt``; line ``i`` is class ``i``).

Labels are renamed by the user's mapping file (a JSON object ``{"their name": "COCO name"}``, ``null``
to leave a class out), then Darknet/VOC spellings become COCO's (``tvmonitor`` → ``tv``).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from imgrec.core.class_names import coco_name
from imgrec.datasets.loading import DatasetError, DatasetReport
from imgrec.tasks.detection_metrics import GroundTruthBox, GroundTruthImage

FORMATS = ("coco", "voc", "yolo")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
YOLO_NAMES_FILES = ("classes.txt", "names.txt")
MAX_ITEMS_LISTED = 20  # per validation line; the count says how many there were


@dataclass
class DetectionDataset:
    source: Path
    format: str
    images: list[GroundTruthImage]
    report: DatasetReport  # counts["boxes"]: boxes per class, in ``class_names`` order

    @property
    def class_names(self) -> list[str]:
        return sorted({box.label for image in self.images for box in image.boxes})


def load_detection_dataset(path: Path, format: str | None = None, *, class_map: Path | None = None,
                           known_classes: Iterable[str] | None = None) -> DetectionDataset:
    """Load a dataset of any layout (``format`` None: detected from what is there).

    ``known_classes`` (e.g. a model's, COCO-spelled): boxes of other classes are left out with a line in the
    report. Missing images, unknown class ids, boxes outside the image are lines too; an empty set is an error.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path} does not exist. Expected a COCO JSON file or a VOC/YOLO dataset folder.")
    format = format or detect_format(path)
    if format not in FORMATS:
        raise DatasetError(f"Unknown dataset format '{format}'. Expected one of: {', '.join(FORMATS)}.")
    report = DatasetReport(source=str(path), layout=format)
    collector = _Collector(report, _read_class_map(class_map), None if known_classes is None else set(known_classes))
    reader = {"coco": _read_coco, "voc": _read_voc, "yolo": _read_yolo}[format]
    reader(path, collector)
    images = collector.finish()
    if not images:
        raise DatasetError(f"{path} holds no usable labelled image (as {format}). " + " ".join(
            issue.message for issue in report.issues) + " Expected images with boxes.")
    dataset = DetectionDataset(source=path, format=format, images=images, report=report)
    counts = Counter(box.label for image in images for box in image.boxes if not box.crowd)
    report.class_names = dataset.class_names
    report.counts = {"boxes": [counts[label] for label in dataset.class_names]}
    return dataset


def image_label_sets(dataset: DetectionDataset) -> list[tuple[Path, frozenset[str]]]:
    """Each image's path and the set of (COCO-spelled) labels boxed in it: multi-label ground truth."""
    return [(image.path, image.labels) for image in dataset.images]


def detect_format(path: Path) -> str:
    if path.is_file() and path.suffix.lower() == ".json":
        return "coco"
    if path.is_dir():
        if (path / "Annotations").is_dir():
            return "voc"
        if (path / "labels").is_dir() and (path / "images").is_dir():
            return "yolo"
        if len(list(path.glob("*.json"))) == 1:
            return "coco"
    raise DatasetError(f"Cannot tell the layout of {path}. Expected a COCO .json file (or a folder with one), a "
                       "VOC folder with Annotations/, or a YOLO folder with images/ and labels/.")


def _read_class_map(path: Path | None) -> dict[str, str | None]:
    if path is None:
        return {}
    try:
        mapping = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"Cannot read the class mapping {path} ({exc}). "
                           'Expected a JSON object like {"tvmonitor": "tv"}.') from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str | None) for v in mapping.values()):
        raise DatasetError(f"The class mapping {path} is not a JSON object of names to names (or null). "
                           'Expected e.g. {"tvmonitor": "tv", "background": null}.')
    return mapping


class _Collector:
    """Gathers images and boxes from a layout reader, renaming labels and noting every problem once."""

    def __init__(self, report: DatasetReport, class_map: dict, known_classes: set[str] | None):
        self.report, self.class_map, self.known_classes = report, class_map, known_classes
        self.images: list[GroundTruthImage] = []
        self.missing: list[str] = []
        self.unreadable: list[str] = []
        self.unknown_ids: Counter = Counter()
        self.unmodelled: Counter = Counter()
        self.mapped_out: Counter = Counter()
        self.clipped: list[str] = []
        self.degenerate: list[str] = []

    def label(self, name: str) -> str | None:
        if name in self.class_map:
            mapped = self.class_map[name]
            if mapped is None:
                self.mapped_out[name] += 1
                return None
            name = mapped
        name = coco_name(name)
        if self.known_classes is not None and name not in self.known_classes:
            self.unmodelled[name] += 1
            return None
        return name

    def add(self, path: Path, width: int | None, height: int | None,
            boxes: list[tuple[str, tuple[float, float, float, float], bool]]) -> None:
        if not path.is_file():
            self.missing.append(path.name)
            return
        if not width or not height:
            try:
                with Image.open(path) as image:
                    width, height = image.size
            except OSError:
                self.unreadable.append(path.name)
                return
        kept = []
        for name, (x1, y1, x2, y2), crowd in boxes:
            label = self.label(name)
            if label is None:
                continue
            inside = (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
            # Beyond float noise (YOLO fractions times the size); a box ending on the last pixel edge is inside.
            if max(abs(a - b) for a, b in zip(inside, (x1, y1, x2, y2))) > 1e-6 * max(width, height):
                self.clipped.append(f"{path.name} {name} [{x1:g}, {y1:g}, {x2:g}, {y2:g}]")
            if inside[2] <= inside[0] or inside[3] <= inside[1]:
                self.degenerate.append(f"{path.name} {name} [{x1:g}, {y1:g}, {x2:g}, {y2:g}]")
                continue
            kept.append(GroundTruthBox(label=label, box=inside, crowd=crowd))
        self.images.append(GroundTruthImage(path=path, width=int(width), height=int(height), boxes=tuple(kept)))

    def finish(self) -> list[GroundTruthImage]:
        add = self.report.add
        if self.missing:
            add("warning", "missing_images", f"{len(self.missing)} annotated images are missing and were left out.",
                self.missing[:MAX_ITEMS_LISTED])
        if self.unreadable:
            add("warning", "unreadable", f"{len(self.unreadable)} images could not be read and were left out.",
                self.unreadable[:MAX_ITEMS_LISTED])
        if self.unknown_ids:
            add("warning", "unknown_classes", f"{sum(self.unknown_ids.values())} boxes have a class id the dataset "
                f"does not name ({', '.join(map(str, sorted(self.unknown_ids)))}) and were left out.",
                sorted(map(str, self.unknown_ids)))
        if self.unmodelled:
            add("warning", "unknown_classes", f"{sum(self.unmodelled.values())} boxes of classes the model does not "
                f"have were left out: {_counted(self.unmodelled)}.", sorted(self.unmodelled))
        if self.mapped_out:
            add("warning", "mapped_out", f"{sum(self.mapped_out.values())} boxes left out by the class mapping: "
                f"{_counted(self.mapped_out)}.", sorted(self.mapped_out))
        if self.clipped:
            add("warning", "outside_image", f"{len(self.clipped)} boxes reach outside their image and were clipped "
                "to it.", self.clipped[:MAX_ITEMS_LISTED])
        if self.degenerate:
            add("warning", "empty_boxes", f"{len(self.degenerate)} boxes have no area inside their image and were "
                "left out.", self.degenerate[:MAX_ITEMS_LISTED])
        if not any(image.boxes for image in self.images):
            add("error", "empty", "No boxes left to evaluate.")
            return []
        return self.images


def _counted(counter: Counter) -> str:
    return ", ".join(f"{name} ({count})" for name, count in sorted(counter.items()))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"Cannot read {path.name} as JSON ({exc}). Expected a COCO annotation file.") from None
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= data.keys():
        raise DatasetError(f"{path.name} is not a COCO annotation file. Expected a JSON object with 'images', "
                           "'annotations' and 'categories'.")
    return data


def _read_coco(path: Path, collector: _Collector) -> None:
    if path.is_dir():
        path = next(path.glob("*.json"))
    data = _read_json(path)
    try:
        categories = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        boxes_of: dict[int, list] = {}
        for annotation in data["annotations"]:
            category = int(annotation["category_id"])
            if category not in categories:
                collector.unknown_ids[category] += 1
                continue
            x, y, w, h = (float(v) for v in annotation["bbox"])
            boxes_of.setdefault(int(annotation["image_id"]), []).append(
                (categories[category], (x, y, x + w, y + h), bool(annotation.get("iscrowd", 0))))
        for image in data["images"]:
            collector.add(_coco_image_path(path.parent, str(image["file_name"])), image.get("width"),
                          image.get("height"), boxes_of.get(int(image["id"]), []))
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path.name} has a malformed entry ({type(exc).__name__}: {exc}). Expected COCO's "
                           "fields: images (id, file_name), annotations (image_id, category_id, bbox), "
                           "categories (id, name).") from None


def _coco_image_path(folder: Path, file_name: str) -> Path:
    beside = folder / file_name
    return beside if beside.is_file() or not (folder / "images" / file_name).is_file() else folder / "images" / file_name


def _read_voc(path: Path, collector: _Collector) -> None:
    image_folder = path / "JPEGImages" if (path / "JPEGImages").is_dir() else path
    for xml_path in sorted((path / "Annotations").glob("*.xml")):
        try:
            root = ElementTree.parse(xml_path).getroot()
            file_name = root.findtext("filename") or f"{xml_path.stem}.jpg"
            width, height = int(root.findtext("size/width") or 0), int(root.findtext("size/height") or 0)
            boxes = []
            for item in root.iter("object"):
                box = item.find("bndbox")
                corners = tuple(float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax"))
                boxes.append((item.findtext("name").strip(), corners, item.findtext("difficult", "0").strip() == "1"))
        except (ElementTree.ParseError, AttributeError, TypeError, ValueError) as exc:
            raise DatasetError(f"{xml_path.name} is not a readable Pascal VOC annotation ({exc}). Expected "
                               "<annotation> with <filename>, <size> and <object><name>/<bndbox> entries.") from None
        collector.add(image_folder / file_name, width, height, boxes)


def _read_yolo(path: Path, collector: _Collector) -> None:
    names = _yolo_names(path)
    for image_path in sorted(p for p in (path / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        label_path = path / "labels" / f"{image_path.stem}.txt"
        rows = label_path.read_text(encoding="utf-8").splitlines() if label_path.is_file() else []
        try:
            with Image.open(image_path) as image:
                width, height = image.size
        except OSError:
            collector.unreadable.append(image_path.name)
            continue
        boxes = []
        for number, row in enumerate(rows, start=1):
            if not row.strip():
                continue
            try:
                class_id, cx, cy, w, h = row.split()
                index, (cx, cy, w, h) = int(class_id), (float(cx), float(cy), float(w), float(h))
            except ValueError:
                raise DatasetError(f"{label_path.name} line {number} is {row!r}. Expected 'class cx cy w h' "
                                   "(a class index, then fractions of the image).") from None
            if not 0 <= index < len(names):
                collector.unknown_ids[index] += 1
                continue
            boxes.append((names[index], ((cx - w / 2) * width, (cy - h / 2) * height,
                                         (cx + w / 2) * width, (cy + h / 2) * height), False))
        collector.add(image_path, width, height, boxes)
    images = {p.stem for p in (path / "images").iterdir()}
    collector.missing.extend(f"{p.stem} (labels/{p.name})" for p in sorted((path / "labels").glob("*.txt"))
                             if p.stem not in images)


def _yolo_names(path: Path) -> list[str]:
    candidates = sorted(path.glob("*.names")) + [path / name for name in YOLO_NAMES_FILES if (path / name).is_file()]
    if not candidates:
        raise DatasetError(f"{path} has no names file. Expected a *.names, classes.txt or names.txt file with one "
                           "class name a line (line i is class i).")
    return [line.strip() for line in candidates[0].read_text(encoding="utf-8").splitlines() if line.strip()]
