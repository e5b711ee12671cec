"""Datasets for training: sources, a validation report, tf.data pipelines and augmentation layers.

Sources
    * a folder of class folders, either already split (``train/``, ``val/`` or ``validation/``,
      ``test/``; missing val/test are carved out of train) or one folder split stratified with a
      fixed seed (default 70/15/15);
    * the built-in ``cifar10`` and ``fashion_mnist`` from ``settings.shared_data_dir``, unpacked
      once into ``settings.data_dir/datasets`` and reused;
    * any of these in a bucket (``s3://…``, ``gs://…``): :func:`dataset_location` syncs it once into
      ``settings.data_dir/datasets/buckets`` and it is loaded from there.

Folder images go through :func:`imgrec.core.images.decode_image` (the same rules as uploads), so a
file the app would refuse is skipped and listed in the report instead of crashing a run.
Nothing here imports TensorFlow or Keras at module level: the app can read reports cheaply.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import tarfile
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from imgrec.core.errors import ImageError, ImgrecError, first_line
from imgrec.core.files import write_atomically
from imgrec.core.images import decode_image, resize
from imgrec.core.settings import Settings
from imgrec.core.storage import Storage, StorageError, is_url


class DatasetError(ImgrecError):
    """A dataset is missing, unreadable or unusable for training; the message says which and why."""

SPLITS = ("train", "val", "test")
VAL_ALIASES = ("val", "validation", "valid")
BUILTIN = {
    "cifar10": "CIFAR-10 (32x32 colour, 10 classes; shared data dir)",
    "fashion_mnist": "Fashion-MNIST (28x28 grey, 10 classes; shared data dir)",
}
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CIFAR_ARCHIVE = "cifar10-images.tar.gz"
# Report thresholds.
MIN_IMAGES_PER_CLASS = 10
IMBALANCE_RATIO = 3.0


# -- Splits and datasets ---------------------------------------------------------------------------


@dataclass
class Split:
    """One split: either in-memory uint8 images (built-ins) or image file paths (folders)."""
    labels: np.ndarray  # int32 class indices, or (images, classes) multi-hot for a multi-label set
    paths: list[Path] | None = None
    images: np.ndarray | None = None  # (N, H, W, 3) uint8
    digests: list[str] | None = None  # sha256 of each file (folders), to find duplicates across splits

    def __len__(self) -> int:
        return int(len(self.labels))

    def subset(self, indices) -> Split:
        indices = np.asarray(indices, dtype=np.int64)
        return Split(
            labels=self.labels[indices],
            paths=None if self.paths is None else [self.paths[i] for i in indices],
            images=None if self.images is None else self.images[indices],
            digests=None if self.digests is None else [self.digests[i] for i in indices],
        )

    def counts(self, num_classes: int) -> list[int]:
        """Images per class (multi-hot labels of a multi-label set count an image once per label)."""
        if self.labels.ndim == 2:
            return self.labels.sum(axis=0).astype(int).tolist()
        return np.bincount(self.labels, minlength=num_classes).astype(int).tolist()

    def load_image(self, index: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """One image as (H, W, 3) uint8, resized to ``size`` if given (for previews and galleries)."""
        pixels = self.images[index] if self.images is not None else decode_image(self.paths[index]).pixels
        return resize(pixels, size) if size else pixels


@dataclass
class Dataset:
    name: str
    class_names: tuple[str, ...]
    splits: dict[str, Split]
    report: DatasetReport

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> str:
        sizes = ", ".join(f"{k} {len(v)}" for k, v in self.splits.items())
        return f"{self.name}: {self.num_classes} classes; {sizes}"


@dataclass
class Issue:
    severity: str  # "error" blocks training; "warning" does not
    kind: str  # empty_class, unreadable, too_few, imbalance, duplicates, no_classes, ...
    message: str
    items: list = field(default_factory=list)


@dataclass
class DatasetReport:
    source: str
    layout: str  # "presplit", "single-folder", "builtin"
    class_names: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)  # split -> list of per-class counts
    issues: list[Issue] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}

    @property
    def ok(self) -> bool:
        return not any(issue.severity == "error" for issue in self.issues)

    def kinds(self) -> set[str]:
        return {issue.kind for issue in self.issues}

    def add(self, severity: str, kind: str, message: str, items=None) -> None:
        self.issues.append(Issue(severity, kind, message, list(items or [])))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        return data

    @classmethod
    def from_dict(cls, data: dict) -> DatasetReport:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["issues"] = [Issue(**i) for i in values.get("issues", [])]
        return cls(**values)

    def summary(self) -> str:
        lines = [f"{self.source} ({self.layout}): {len(self.class_names)} classes"]
        for split, counts in self.counts.items():
            lines.append(f"  {split}: {sum(counts)} images")
        for issue in self.issues:
            lines.append(f"  {issue.severity}: {issue.message}")
        return "\n".join(lines)


# -- Entry point -----------------------------------------------------------------------------------


def dataset_choices(settings: Settings) -> list[str]:
    """Built-in names whose source files exist, then folders under ``data_dir/datasets/folders``."""
    found = [name for name in BUILTIN if _builtin_available(name, settings)]
    user_root = datasets_dir(settings) / "folders"
    if user_root.is_dir():
        found += sorted(str(p) for p in user_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return found


def _builtin_available(name: str, settings: Settings) -> bool:
    if (datasets_dir(settings) / name / ".complete").exists():
        return True
    if name == "cifar10":
        return (settings.shared_data_dir / CIFAR_ARCHIVE).exists()
    return all((settings.shared_data_dir / "fashion-mnist" / f).exists() for pair in _FASHION_FILES.values() for f in pair)


def load_dataset(
    source: str | Path,
    settings: Settings,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 1337,
    limit_per_class: int | None = None,
    min_per_class: int = MIN_IMAGES_PER_CLASS,
) -> Dataset:
    """A dataset by built-in name, folder path or bucket URL, split and validated. Raises ``DatasetError`` if unusable."""
    name = str(source)
    if name in BUILTIN:
        dataset = _load_builtin(name, settings, val_fraction, seed)
    else:
        dataset = _load_folder(Path(dataset_location(source, settings)).expanduser(), val_fraction, test_fraction, seed)
    if limit_per_class:
        dataset.splits = {k: _limit(v, limit_per_class, dataset.num_classes, seed) for k, v in dataset.splits.items()}
    check_dataset(dataset, min_per_class)
    return dataset


def validate_folder(root: str | Path, *, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 1337,
                    min_per_class: int = MIN_IMAGES_PER_CLASS) -> DatasetReport:
    """The validation report of a folder without raising for its errors (for the app and CLI)."""
    try:
        dataset = _load_folder(Path(root).expanduser(), val_fraction, test_fraction, seed)
    except DatasetError as exc:
        report = DatasetReport(source=str(root), layout="unknown")
        report.add("error", "unusable", str(exc))
        return report
    analyse_dataset(dataset, min_per_class)
    return dataset.report


def _limit(split: Split, limit: int, num_classes: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    keep = []
    for c in range(num_classes):
        idx = np.flatnonzero(split.labels == c)
        keep.extend(sorted(rng.permutation(idx)[:limit]))
    return split.subset(sorted(keep))


def check_dataset(dataset: Dataset, min_per_class: int) -> None:
    analyse_dataset(dataset, min_per_class)
    errors = [i.message for i in dataset.report.issues if i.severity == "error"]
    if errors:
        raise DatasetError(f"Dataset '{dataset.name}' cannot be used for training: " + " ".join(errors))


# -- Folders ---------------------------------------------------------------------------------------


def _load_folder(root: Path, val_fraction: float, test_fraction: float, seed: int) -> Dataset:
    if not root.is_dir():
        raise DatasetError(f"Dataset folder '{root.name}' does not exist. Expected a folder of class folders.")
    sub = {p.name.lower(): p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if "train" in sub:
        layout = "presplit"
        val_dir = next((sub[a] for a in VAL_ALIASES if a in sub), None)
        parts = {"train": sub["train"], "val": val_dir, "test": sub.get("test")}
        class_names = sorted({c.name for d in parts.values() if d is not None for c in _class_dirs(d)})
    else:
        layout = "single-folder"
        parts = {"all": root}
        class_names = sorted(c.name for c in _class_dirs(root))
    report = DatasetReport(source=str(root), layout=layout, class_names=class_names)
    if not class_names:
        raise DatasetError(
            f"'{root.name}' holds no class folders. Expected <class>/<image> or train/<class>/<image> folders."
        )
    index = {name: i for i, name in enumerate(class_names)}
    scanned: dict[str, Split] = {}
    for split_name, folder in parts.items():
        if folder is None:
            continue
        paths, labels, digests = [], [], []
        for class_dir in _class_dirs(folder):
            for path in sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
                digest = check_image_file(path, report)
                if digest is None:
                    continue
                paths.append(path)
                labels.append(index[class_dir.name])
                digests.append(digest)
        scanned[split_name] = Split(np.asarray(labels, np.int32), paths=paths, digests=digests)
    if layout == "single-folder":
        parts_idx = stratified_split(scanned["all"].labels, val_fraction, test_fraction, seed)
        splits = {name: scanned["all"].subset(idx) for name, idx in zip(SPLITS, parts_idx)}
    else:
        train = scanned["train"]
        carve_val = "val" not in scanned
        carve_test = "test" not in scanned
        if carve_val or carve_test:
            train_idx, val_idx, test_idx = stratified_split(
                train.labels, val_fraction if carve_val else 0.0, test_fraction if carve_test else 0.0, seed
            )
            if carve_val:
                scanned["val"] = train.subset(val_idx)
            if carve_test:
                scanned["test"] = train.subset(test_idx)
            scanned["train"] = train.subset(train_idx)
        splits = {name: scanned[name] for name in SPLITS}
    return Dataset(root.name, tuple(class_names), splits, report)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def check_image_file(path: Path, report: DatasetReport) -> str | None:
    """The file's sha256 if it decodes under the upload rules, else ``None`` (recorded as skipped)."""
    try:
        decoded = decode_image(path)
    except ImageError as exc:
        report.skipped.append({"path": str(path), "reason": str(exc)})
        return None
    return decoded.sha256


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int):
    """Per-class shuffled (train, val, test) index arrays; every class keeps at least one training image."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise DatasetError(
            f"Split fractions val={val_fraction}, test={test_fraction}. Expected each in [0, 1) and a sum below 1."
        )
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = len(idx)
        n_val = int(round(n * val_fraction))
        n_test = int(round(n * test_fraction))
        if n >= 3:
            n_val = max(n_val, 1 if val_fraction > 0 else 0)
            n_test = max(n_test, 1 if test_fraction > 0 else 0)
        while n_val + n_test >= n and (n_val or n_test):
            if n_test >= n_val and n_test:
                n_test -= 1
            else:
                n_val -= 1
        val.extend(idx[:n_val])
        test.extend(idx[n_val : n_val + n_test])
        train.extend(idx[n_val + n_test :])
    return (np.sort(np.asarray(train, np.int64)), np.sort(np.asarray(val, np.int64)), np.sort(np.asarray(test, np.int64)))


# -- Report ----------------------------------------------------------------------------------------


ANALYSED_KINDS = frozenset({"unreadable", "empty_class", "too_few_classes", "no_training_images", "too_few",
                            "imbalance", "duplicates"})


def analyse_dataset(dataset: Dataset, min_per_class: int) -> None:
    report = dataset.report
    # Lines of this analysis are redone; the source's own (a label file's, a detection set's) stay.
    report.issues = [i for i in report.issues if i.kind not in ANALYSED_KINDS]
    report.counts = {name: s.counts(dataset.num_classes) for name, s in dataset.splits.items()}
    names = dataset.class_names
    totals = np.sum([report.counts[s] for s in report.counts], axis=0)
    if report.skipped:
        report.add("warning", "unreadable",
                   f"{len(report.skipped)} file(s) are not images we can read and were skipped.",
                   report.skipped)
    empty = [names[i] for i, n in enumerate(totals) if n == 0]
    if empty:
        report.add("error", "empty_class", f"Class folder(s) with no usable images: {', '.join(empty)}.", empty)
    non_empty = [i for i, n in enumerate(totals) if n > 0]
    if len(non_empty) < 2:
        report.add("error", "too_few_classes", f"{len(non_empty)} class(es) with images. Expected at least 2.")
    train_counts = report.counts.get("train", [])
    no_train = [names[i] for i, n in enumerate(train_counts) if n == 0 and totals[i] > 0]
    if no_train:
        report.add("error", "no_training_images", f"No training images for: {', '.join(no_train)}.", no_train)
    few = [names[i] for i, n in enumerate(totals) if 0 < n < min_per_class]
    if few:
        report.add("warning", "too_few",
                   f"Fewer than {min_per_class} images in: {', '.join(few)}. Expect unreliable results.", few)
    present = [n for n in train_counts if n > 0]
    if present and max(present) / min(present) > IMBALANCE_RATIO:
        ratio = max(present) / min(present)
        report.add("warning", "imbalance",
                   f"Classes are imbalanced: the largest has {ratio:.1f}x the images of the smallest "
                   "in train. Consider class weights or focal loss.",
                   [{"class": names[i], "train": int(n)} for i, n in enumerate(train_counts)])
    duplicates = _duplicates_across_splits(dataset)
    if duplicates:
        report.add("warning", "duplicates",
                   f"{len(duplicates)} image(s) appear in more than one split (same content): "
                   "evaluation will be optimistic.", duplicates[:200])


def _duplicates_across_splits(dataset: Dataset) -> list[dict]:
    hashes = {}
    for name, split in dataset.splits.items():
        if split.digests is not None:
            hashes[name] = split.digests
        elif split.images is not None:  # in-memory images: hash the pixels
            hashes[name] = [hashlib.sha1(img.tobytes()).hexdigest() for img in split.images]
    seen: dict[str, tuple[str, int]] = {}
    found = []
    for name in SPLITS:
        for i, digest in enumerate(hashes.get(name, [])):
            if digest in seen and seen[digest][0] != name:
                first_split, first_i = seen[digest]
                found.append({
                    "sha": digest[:16], "splits": [first_split, name],
                    "items": [_item_name(dataset, first_split, first_i), _item_name(dataset, name, i)],
                })
            else:
                seen.setdefault(digest, (name, i))
    return found


def _item_name(dataset: Dataset, split: str, index: int) -> str:
    paths = dataset.splits[split].paths
    return str(paths[index]) if paths is not None else f"{split}[{index}]"


# -- Buckets ---------------------------------------------------------------------------------------

BUCKET_CACHE = "buckets"  # under datasets_dir: one folder per bucket URL synced
SYNC_MANIFEST = ".imgrec-sync"  # what a synced copy holds, written last; hidden (and no .json) so loaders skip it


def dataset_location(source: str | Path, settings: Settings) -> str | Path:
    """Where a dataset is on this machine: a bucket URL (a folder, or a file such as a COCO .json or a label
    CSV, whose folder comes with it) is synced into ``datasets_dir/buckets`` first; anything else is returned as is."""
    if not is_url(str(source)):
        return source
    url = str(source).rstrip("/")
    storage = _bucket(url)
    try:
        is_folder = storage.fs.isdir(storage.root)
        if not is_folder and not storage.fs.isfile(storage.root):
            raise FileNotFoundError(url)
    except FileNotFoundError:
        raise DatasetError(f"'{url}' does not exist. Expected a dataset folder in a bucket or a dataset file in "
                           "one, e.g. s3://bucket/datasets/flowers or s3://bucket/coco/annotations.json.") from None
    except OSError as exc:
        raise DatasetError(f"Could not read '{url}': {first_line(exc)}.") from None
    if is_folder:
        return _sync_folder(storage, settings)
    folder_url, file_name = url.rsplit("/", 1)
    return _sync_folder(_bucket(folder_url), settings) / file_name


def _bucket(url: str) -> Storage:
    try:
        return Storage(url)
    except StorageError as exc:
        raise DatasetError(str(exc)) from None


def _sync_folder(storage: Storage, settings: Settings) -> Path:
    """The local copy of everything under ``storage``: downloaded whole into a hidden folder, checked, and renamed
    into place; reused without a download while the bucket's listing (ETags) is unchanged."""
    remote = _listing(storage)
    manifest = {key: _fingerprint(info) for key, info in sorted(remote.items())}
    # Named by the URL (two buckets may hold folders of one name), ending in the bucket folder's own name so
    # the dataset is called what its local copy would be.
    cache = datasets_dir(settings) / BUCKET_CACHE / hashlib.sha256(storage.url.encode()).hexdigest()[:16]
    target = cache / storage.url.rsplit("/", 1)[-1]
    if _synced_manifest(target) == manifest:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs starting together download once
        if _synced_manifest(target) == manifest:
            return target
        staging = Path(tempfile.mkdtemp(dir=cache, prefix=".sync-"))
        try:
            for key, info in remote.items():
                _download(storage, key, info, staging)
            (staging / SYNC_MANIFEST).write_text(json.dumps(manifest))
            staging.chmod(0o755)
            if target.exists():  # an older copy: moved aside whole, so the target is never a mix of both
                stale = Path(tempfile.mkdtemp(dir=cache, prefix=".stale-"))
                target.rename(stale / "old")
                shutil.rmtree(stale)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def _listing(storage: Storage) -> dict[str, dict]:
    """Every object under ``storage`` by key relative to it, with the details the listing gives."""
    try:
        storage.fs.invalidate_cache(storage.root)  # a listing cached by an earlier use would hide changes
        found = storage.fs.find(storage.root, detail=True)
    except OSError as exc:
        raise DatasetError(f"Could not list '{storage.url}': {first_line(exc)}.") from None
    prefix = storage.root.rstrip("/") + "/"
    files = {path[len(prefix):]: info for path, info in found.items()
             if info.get("type") != "directory" and path.startswith(prefix)}
    unsafe = sorted(key for key in files if ".." in key.split("/") or key.startswith("/"))
    if unsafe:
        raise DatasetError(f"'{storage.url}' holds keys that would land outside the dataset folder "
                           f"({', '.join(unsafe[:3])}). Expected plain relative keys.")
    if not files:
        raise DatasetError(f"'{storage.url}' holds no files. Expected the dataset's files under it.")
    return files


def _fingerprint(info: dict) -> str:
    """What changes when an object does: its ETag (S3) or hash (GCS), else its size and time."""
    tag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("crc32c")
    return str(tag) if tag else f"{info.get('size')}:{info.get('LastModified') or info.get('mtime') or info.get('updated')}"


def _md5_of_etag(info: dict) -> str | None:
    """The MD5 an S3 ETag states for an object uploaded in one part; None for other ETags (multipart, KMS)."""
    tag = str(info.get("ETag") or "").strip('"').lower()
    return tag if len(tag) == 32 and all(c in "0123456789abcdef" for c in tag) else None


def _download(storage: Storage, key: str, info: dict, staging: Path) -> None:
    target = staging / key
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        storage.fs.get_file(storage.path(key), str(target))
    except OSError as exc:
        raise DatasetError(f"Could not download '{storage.url_of(key)}': {first_line(exc)}.") from None
    expected = _md5_of_etag(info)
    if expected is not None:
        actual = hashlib.md5(target.read_bytes(), usedforsecurity=False).hexdigest()
        if actual != expected:
            raise DatasetError(f"'{storage.url_of(key)}' arrived with MD5 {actual[:12]}…, but the bucket states "
                               f"{expected[:12]}…. The download was damaged; try again.")


def _synced_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / SYNC_MANIFEST).read_text())
    except (OSError, ValueError):
        return None


# -- Built-ins -------------------------------------------------------------------------------------


def datasets_dir(settings: Settings) -> Path:
    return settings.data_dir / "datasets"


def _load_builtin(name: str, settings: Settings, val_fraction: float, seed: int) -> Dataset:
    folder = ensure_builtin(name, settings)
    arrays = np.load(folder / "arrays.npz")
    class_names = builtin_class_names(folder)
    train = Split(arrays["train_labels"].astype(np.int32), images=arrays["train_images"])
    test = Split(arrays["test_labels"].astype(np.int32), images=arrays["test_images"])
    train_idx, val_idx, _ = stratified_split(train.labels, val_fraction, 0.0, seed)
    splits = {"train": train.subset(train_idx), "val": train.subset(val_idx), "test": test}
    report = DatasetReport(source=name, layout="builtin", class_names=list(class_names))
    return Dataset(name, class_names, splits, report)


def builtin_class_names(folder: Path) -> tuple[str, ...]:
    """The class names of a built-in set unpacked by :func:`ensure_builtin`."""
    return tuple(json.loads((folder / "classes.json").read_text()))


def ensure_builtin(name: str, settings: Settings) -> Path:
    """Unpack a built-in dataset once into ``data_dir/datasets/<name>`` (arrays.npz + classes.json)."""
    target = datasets_dir(settings) / name
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs starting together unpack once
        if (target / ".complete").exists():
            return target
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
        try:
            if name == "cifar10":
                class_names, arrays = _unpack_cifar10(settings.shared_data_dir, staging)
            elif name == "fashion_mnist":
                class_names, arrays = _read_fashion_mnist(settings.shared_data_dir)
            else:
                raise DatasetError(f"Unknown built-in dataset '{name}'. Expected one of: {', '.join(BUILTIN)}.")
            np.savez(staging / "arrays.npz", **arrays)
            (staging / "classes.json").write_text(json.dumps(list(class_names)))
            (staging / ".complete").write_text("")
            staging.chmod(0o755)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def _unpack_cifar10(shared: Path, staging: Path):
    archive = shared / CIFAR_ARCHIVE
    if not archive.exists():
        raise DatasetError(f"CIFAR-10 archive '{CIFAR_ARCHIVE}' not found in the shared data dir "
                           "(set IMGREC_SHARED_DATA_DIR).")
    images: dict[str, list] = {"train": [], "test": []}
    labels: dict[str, list] = {"train": [], "test": []}
    names: set[str] = set()
    entries = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 4 or parts[1] not in images:
                continue
            data = tar.extractfile(member).read()
            entries.append((parts[1], parts[2], parts[3], data))
            names.add(parts[2])
    class_names = sorted(names)
    index = {n: i for i, n in enumerate(class_names)}
    for split, cls, _, data in sorted(entries, key=lambda e: (e[0], e[1], e[2])):
        images[split].append(decode_image(data).pixels)
        labels[split].append(index[cls])
    arrays = {}
    for split in images:
        arrays[f"{split}_images"] = np.stack(images[split]).astype(np.uint8)
        arrays[f"{split}_labels"] = np.asarray(labels[split], np.int16)
    return class_names, arrays


def _read_fashion_mnist(shared: Path):
    folder = shared / "fashion-mnist"
    arrays = {}
    for split, (image_file, label_file) in _FASHION_FILES.items():
        try:
            with gzip.open(folder / image_file, "rb") as handle:
                raw = handle.read()
            with gzip.open(folder / label_file, "rb") as handle:
                label_raw = handle.read()
        except FileNotFoundError as exc:
            raise DatasetError(f"Fashion-MNIST file '{Path(exc.filename).name}' not found in the shared data dir "
                               "(set IMGREC_SHARED_DATA_DIR).") from None
        if int.from_bytes(raw[:4], "big") != 2051 or int.from_bytes(label_raw[:4], "big") != 2049:
            raise DatasetError(f"Fashion-MNIST file '{image_file}' is not an IDX file.")
        count, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
        grey = np.frombuffer(raw, np.uint8, offset=16).reshape(count, rows, cols)
        arrays[f"{split}_images"] = np.repeat(grey[..., None], 3, axis=-1)
        arrays[f"{split}_labels"] = np.frombuffer(label_raw, np.uint8, offset=8).astype(np.int16)
    return FASHION_CLASSES, arrays


# -- tf.data pipeline ------------------------------------------------------------------------------


def make_tf_dataset(
    split: Split,
    image_size: tuple[int, int],
    num_classes: int,
    *,
    batch_size: int = 32,
    shuffle: bool = False,
    augment=None,
    seed: int = 1337,
    cache: bool | str = True,
    one_hot: bool = True,
):
    """Batches of (uint8 images at ``image_size``, labels): resize once, cache, then shuffle/augment/prefetch."""
    import tensorflow as tf

    height, width = image_size
    labels = split.labels.astype(np.int32)
    if split.images is not None:
        ds = tf.data.Dataset.from_tensor_slices((split.images, labels))

        def _resize(image, label):
            image = tf.image.resize(tf.cast(image, tf.float32), (height, width), method="bilinear", antialias=True)
            return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), label

        ds = ds.map(_resize, num_parallel_calls=tf.data.AUTOTUNE) if split.images.shape[1:3] != (height, width) else ds
    else:
        paths = [str(p) for p in split.paths]

        def _load(path):
            return resize(decode_image(path.numpy().decode()).pixels, (height, width))

        def _decode(path, label):
            image = tf.py_function(_load, [path], tf.uint8)
            image.set_shape((height, width, 3))
            return image, label

        ds = tf.data.Dataset.from_tensor_slices((paths, labels)).map(_decode, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if shuffle:
        ds = ds.shuffle(min(len(split), 20_000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment is not None:
        ds = ds.map(lambda x, y: (tf.cast(tf.clip_by_value(augment(tf.cast(x, tf.float32), training=True), 0, 255),
                                          tf.uint8), y), num_parallel_calls=tf.data.AUTOTUNE)
    if one_hot and labels.ndim == 1:  # multi-hot labels already are one row per class
        ds = ds.map(lambda x, y: (x, tf.one_hot(y, num_classes)))
    return ds.prefetch(tf.data.AUTOTUNE)


# -- Augmentation ----------------------------------------------------------------------------------


def write_report(report: DatasetReport, path: Path) -> None:
    write_atomically(path, json.dumps(report.to_dict(), indent=2, default=str).encode())


def dataset_split_args(config: dict) -> dict:
    """``data.load_dataset`` arguments that rebuild a training run's splits, so the indices in its
    report point at the same images."""
    keys = ("val_fraction", "test_fraction", "seed", "limit_per_class")
    return {k: config[k] for k in keys if config.get(k) is not None}
