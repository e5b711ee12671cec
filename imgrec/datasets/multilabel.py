"""Multi-label datasets: every image carries a set of labels (multi-hot ``Split.labels`` of shape (images, classes)).

Sources
    * ``csv``: a CSV or TSV file with the columns ``image,labels`` (labels separated by spaces or ``|``, as
      in Kaggle's Planet set) beside a folder of images: paths are relative to an ``images/`` folder next
      to the file when there is one, else to the file's folder. A ``classes.txt`` beside it (one label a
      line) fixes the label set; without one the labels found are the classes;
    * ``coco``, ``voc``, ``yolo``: a detection dataset, each image labelled with the classes boxed in it
      (:func:`imgrec.datasets.detection.image_label_sets`);
    * the built-in ``cifar10-mosaic``: deterministic 2×2 mosaics of CIFAR-10 images (train mosaics from the
      train split, test mosaics from the test split) holding one to four distinct classes.

Every problem (missing files, unknown labels, duplicate rows, classes with too few images) is one line of
the :class:`~imgrec.datasets.loading.DatasetReport`, as for folder datasets.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from imgrec.core.settings import Settings
from imgrec.datasets import detection, loading
from imgrec.datasets.loading import Dataset, DatasetError, DatasetReport, Split

FORMATS = ("csv", "coco", "voc", "yolo")
MOSAIC = "cifar10-mosaic"
BUILTIN = {MOSAIC: "CIFAR-10 mosaics (2x2 CIFAR-10 images, 1-4 distinct classes; shared data dir)"}
MOSAIC_IMAGES = {"train": 40_000, "test": 4_000}  # mosaics per CIFAR-10 split
MOSAIC_SEED = 2021  # fixed: the built-in set is the same for every run; the run's seed only picks val
CLASSES_FILE = "classes.txt"
IMAGE_COLUMN, LABELS_COLUMN = "image", "labels"
MAX_ITEMS_LISTED = 20
CIFAR_CLASSES = 10


def load_multilabel_dataset(source: str | Path, settings: Settings, format: str = "csv", *,
                            val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 1337,
                            limit_per_class: int | None = None,
                            min_per_class: int = loading.MIN_IMAGES_PER_CLASS) -> Dataset:
    """A multi-label dataset by built-in name or path, split and validated. Raises ``DatasetError`` if unusable.

    ``limit_per_class`` caps each split at that many images per class (the first ones, a quick experiment)."""
    name = str(source)
    source = loading.dataset_location(source, settings)
    if name == MOSAIC:
        # A cap builds only the mosaics it keeps (train gives val its share first).
        cap = limit_per_class * CIFAR_CLASSES if limit_per_class else None
        counts = None if cap is None else {"train": math.ceil(cap / (1 - val_fraction)), "test": cap}
        dataset = load_mosaics(settings, val_fraction, seed, counts)
    elif format == "csv":
        dataset = _split(*read_label_csv(Path(source).expanduser()), val_fraction, test_fraction, seed)
    elif format in detection.FORMATS:
        dataset = _split(*read_detection_label_sets(Path(source).expanduser(), format), val_fraction,
                         test_fraction, seed)
    else:
        raise DatasetError(f"Unknown multi-label dataset format '{format}'. Expected one of: {', '.join(FORMATS)}.")
    if limit_per_class:
        cap = limit_per_class * dataset.num_classes
        dataset.splits = {k: v.subset(np.arange(min(cap, len(v)))) for k, v in dataset.splits.items()}
    loading.check_dataset(dataset, min_per_class)
    return dataset


def validate_label_csv(path: str | Path, *, min_per_class: int = loading.MIN_IMAGES_PER_CLASS) -> DatasetReport:
    """The validation report of a CSV/TSV label file without raising for its errors (for the app and CLI)."""
    try:
        dataset = _split(*read_label_csv(Path(path).expanduser()), 0.15, 0.15, 1337)
    except DatasetError as exc:
        report = DatasetReport(source=str(path), layout="csv")
        report.add("error", "unusable", str(exc))
        return report
    loading.analyse_dataset(dataset, min_per_class)
    return dataset.report


# -- CSV / TSV -------------------------------------------------------------------------------------


def read_label_csv(path: Path):
    """The rows of a label file whose image exists and decodes: (name, paths, label sets, classes, report,
    file digests)."""
    if not path.is_file():
        raise DatasetError(f"Label file '{path.name}' does not exist. Expected a CSV/TSV file with columns "
                           f"'{IMAGE_COLUMN},{LABELS_COLUMN}'.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"Label file '{path.name}' is not UTF-8 text. Expected a CSV/TSV file.") from None
    delimiter = "\t" if path.suffix.lower() == ".tsv" or "\t" in text.partition("\n")[0] else ","
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    if IMAGE_COLUMN not in header or LABELS_COLUMN not in header:
        raise DatasetError(f"Label file '{path.name}' has the header {rows[0] if rows else 'nothing'}. "
                           f"Expected the columns '{IMAGE_COLUMN}' and '{LABELS_COLUMN}'.")
    image_at, labels_at = header.index(IMAGE_COLUMN), header.index(LABELS_COLUMN)
    folder = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
    report = DatasetReport(source=str(path), layout="csv")
    known = _read_classes(path.parent / CLASSES_FILE)
    missing, unknown, duplicates, malformed, unlabelled = [], {}, [], [], []
    seen: set[str] = set()
    paths, sets, digests = [], [], []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(image_at, labels_at):
            malformed.append(f"line {line}")
            continue
        name = row[image_at].strip()
        labels = frozenset(label for label in row[labels_at].replace("|", " ").split() if label)
        if name in seen:
            duplicates.append(f"line {line}: {name}")
            continue
        seen.add(name)
        image = (folder / name).resolve()
        if not image.is_relative_to(folder.resolve()) or not image.is_file():
            missing.append(name)
            continue
        if known is not None:
            for label in labels - known:
                unknown.setdefault(label, []).append(name)
            labels = labels & known
        if not labels:
            unlabelled.append(name)
            continue
        digest = loading.check_image_file(image, report)
        if digest is None:
            continue
        paths.append(image)
        sets.append(labels)
        digests.append(digest)
    _line(report, "warning", "malformed", "row(s) without both columns were skipped", malformed)
    _line(report, "warning", "duplicate_rows", "image(s) listed more than once; the first row is kept", duplicates)
    _line(report, "warning", "missing", f"image(s) not found in '{folder.name}/' were skipped", missing)
    if unknown:
        report.add("warning", "unknown_labels",
                   f"{len(unknown)} label(s) not in {CLASSES_FILE} were dropped: {', '.join(sorted(unknown)[:MAX_ITEMS_LISTED])}.",
                   [{"label": label, "images": images[:MAX_ITEMS_LISTED]} for label, images in sorted(unknown.items())])
    _line(report, "warning", "unlabelled", "image(s) with no (known) label were skipped", unlabelled)
    classes = tuple(sorted(known if known is not None else set().union(*sets)))
    if not paths:
        raise DatasetError(f"Label file '{path.name}' lists no usable labelled image. " + " ".join(
            issue.message for issue in report.issues) + " Expected rows 'image,labels' naming existing images.")
    return path.stem, paths, sets, classes, report, digests


def _read_classes(path: Path) -> frozenset[str] | None:
    if not path.is_file():
        return None
    return frozenset(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _line(report: DatasetReport, severity: str, kind: str, text: str, items: list) -> None:
    if items:
        listed = ", ".join(str(item) for item in items[:MAX_ITEMS_LISTED]) + (" …" if len(items) > MAX_ITEMS_LISTED else "")
        report.add(severity, kind, f"{len(items)} {text}: {listed}.", items)


# -- Detection datasets ----------------------------------------------------------------------------


def read_detection_label_sets(path: Path, format: str):
    """A detection dataset's images, each labelled with the set of classes boxed in it."""
    found = detection.load_detection_dataset(path, format)
    pairs = [(image_path, labels) for image_path, labels in detection.image_label_sets(found) if labels]
    report = found.report
    report.layout = format
    empty = len(found.images) - len(pairs)
    if empty:
        report.add("warning", "unlabelled", f"{empty} image(s) hold only crowd/difficult boxes and were skipped.")
    paths = [image_path for image_path, _ in pairs]
    sets = [labels for _, labels in pairs]
    return path.stem or path.name, paths, sets, tuple(found.class_names), report, None


# -- Splits ----------------------------------------------------------------------------------------


def multi_hot(sets, class_names) -> np.ndarray:
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.zeros((len(sets), len(class_names)), np.int8)
    for row, names in enumerate(sets):
        labels[row, [index[name] for name in names]] = 1
    return labels


def _split(name: str, paths: list[Path], sets, class_names, report: DatasetReport, digests: list[str] | None,
           val_fraction: float, test_fraction: float, seed: int) -> Dataset:
    """A seeded random split (label sets cannot be stratified class by class)."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise DatasetError(f"Split fractions val={val_fraction}, test={test_fraction}. "
                           "Expected each in [0, 1) and a sum below 1.")
    report.class_names = list(class_names)
    everything = Split(multi_hot(sets, class_names), paths=list(paths), digests=digests)
    order = np.random.default_rng(seed).permutation(len(paths))
    n_val, n_test = int(round(len(paths) * val_fraction)), int(round(len(paths) * test_fraction))
    parts = {"train": order[n_val + n_test:], "val": order[:n_val], "test": order[n_val:n_val + n_test]}
    splits = {split: everything.subset(np.sort(indices)) for split, indices in parts.items()}
    return Dataset(name, tuple(class_names), splits, report)


# -- The built-in mosaics --------------------------------------------------------------------------


def make_mosaics(images: np.ndarray, labels: np.ndarray, count: int, num_classes: int,
                 seed: int = MOSAIC_SEED) -> tuple[np.ndarray, np.ndarray]:
    """``count`` 2×2 mosaics of ``images`` (N, H, W, 3): each picks 1–4 distinct classes, gives every one a
    cell (the rest go to picked classes again), and fills each cell with a random image of its class."""
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    if any(len(members) == 0 for members in by_class):
        raise DatasetError("A CIFAR-10 split lacks images of some class. Expected all 10 classes.")
    height, width = images.shape[1:3]
    mosaics = np.empty((count, 2 * height, 2 * width, 3), np.uint8)
    targets = np.zeros((count, num_classes), np.int8)
    for row in range(count):
        picked = rng.choice(num_classes, size=int(rng.integers(1, 5)), replace=False)
        cells = rng.permutation(np.concatenate([picked, rng.choice(picked, size=4 - len(picked))]))
        for cell, cls in enumerate(cells):
            top, left = (cell // 2) * height, (cell % 2) * width
            mosaics[row, top:top + height, left:left + width] = images[rng.choice(by_class[cls])]
        targets[row, picked] = 1
    return mosaics, targets


def load_mosaics(settings: Settings, val_fraction: float = 0.15, seed: int = 1337,
                 counts: dict[str, int] | None = None) -> Dataset:
    """The built-in ``cifar10-mosaic``: train (and val) mosaics from CIFAR-10's train split, test from its test split."""
    counts = {split: min(MOSAIC_IMAGES[split], (counts or MOSAIC_IMAGES)[split]) for split in MOSAIC_IMAGES}
    folder = loading.ensure_builtin("cifar10", settings)
    class_names = tuple(loading.builtin_class_names(folder))
    with np.load(folder / "arrays.npz") as arrays:
        built = {split: make_mosaics(arrays[f"{split}_images"], arrays[f"{split}_labels"], counts[split],
                                     len(class_names), MOSAIC_SEED + offset)
                 for offset, split in enumerate(("train", "test"))}
    train = Split(built["train"][1], images=built["train"][0])
    order = np.random.default_rng(seed).permutation(len(train))
    n_val = int(round(len(train) * val_fraction))
    splits = {"train": train.subset(np.sort(order[n_val:])), "val": train.subset(np.sort(order[:n_val])),
              "test": Split(built["test"][1], images=built["test"][0])}
    report = DatasetReport(source=MOSAIC, layout="builtin", class_names=list(class_names))
    return Dataset(MOSAIC, class_names, splits, report)
