"""Datasets: folder layouts and splits, the validation report's cases, built-ins, pipeline, augmentation."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgrec.datasets import loading
from imgrec.datasets.augment import AugmentConfig, augmentation_layers, preview_augmentations
from imgrec.datasets.loading import DatasetError
from tests.helpers.datasets import make_image_folder
from tests.helpers.settings import make_settings


def test_single_folder_is_split_stratified_and_deterministic(tmp_path):
    make_image_folder(tmp_path / "ds", per_class=20)
    first = loading.load_dataset(tmp_path / "ds", make_settings(tmp_path))
    second = loading.load_dataset(tmp_path / "ds", make_settings(tmp_path))
    assert first.class_names == ("blue", "green", "red")
    assert first.report.layout == "single-folder"
    assert {k: len(v) for k, v in first.splits.items()} == {"train": 42, "val": 9, "test": 9}
    assert first.report.counts["test"] == [3, 3, 3]
    assert first.splits["test"].paths == second.splits["test"].paths
    assert first.report.ok and not first.report.issues


def test_presplit_folder_keeps_its_splits_and_carves_val_from_train(tmp_path):
    make_image_folder(tmp_path / "ds" / "train", per_class=10)
    make_image_folder(tmp_path / "ds" / "test", per_class=3, seed=1)
    dataset = loading.load_dataset(tmp_path / "ds", make_settings(tmp_path), val_fraction=0.2)
    assert dataset.report.layout == "presplit"
    assert dataset.report.counts == {"train": [8, 8, 8], "val": [2, 2, 2], "test": [3, 3, 3]}
    assert all("test" in str(p) for p in dataset.splits["test"].paths)


def test_stratified_split_keeps_a_training_image_for_tiny_classes():
    labels = np.array([0] * 10 + [1] * 2 + [2])
    train, val, test = loading.stratified_split(labels, 0.15, 0.15, seed=3)
    assert len(train) + len(val) + len(test) == 13
    assert set(labels[train]) == {0, 1, 2}
    assert not set(train) & set(val) | set(train) & set(test)
    with pytest.raises(DatasetError, match="fractions"):
        loading.stratified_split(labels, 0.6, 0.5, 0)


def test_unreadable_and_non_image_files_are_skipped_and_listed(tmp_path):
    root = make_image_folder(tmp_path / "ds")
    (root / "red" / "notes.txt").write_text("not an image")
    (root / "green" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    report = loading.validate_folder(root)
    assert report.ok
    assert "unreadable" in report.kinds()
    assert sorted(Path(s["path"]).name for s in report.skipped) == ["broken.jpg", "notes.txt"]
    assert sum(sum(c) for c in report.counts.values()) == 36


def test_empty_class_is_an_error_and_load_refuses(tmp_path):
    root = make_image_folder(tmp_path / "ds")
    (root / "empty").mkdir()
    (root / "empty" / "readme.md").write_text("nothing here")
    report = loading.validate_folder(root)
    assert not report.ok and "empty_class" in report.kinds()
    with pytest.raises(DatasetError, match="empty"):
        loading.load_dataset(root, make_settings(tmp_path))


def test_too_few_images_and_imbalance_are_warnings(tmp_path):
    root = make_image_folder(tmp_path / "ds", per_class=40, classes=("red", "green"))
    make_image_folder(root, per_class=4, classes=("blue",))
    report = loading.validate_folder(root)
    assert report.ok
    assert {"too_few", "imbalance"} <= report.kinds()
    too_few = next(i for i in report.issues if i.kind == "too_few")
    assert too_few.items == ["blue"]


def test_duplicates_across_splits_are_reported(tmp_path):
    root = tmp_path / "ds"
    make_image_folder(root / "train", per_class=6)
    make_image_folder(root / "val", per_class=2, seed=5)
    make_image_folder(root / "test", per_class=2, seed=6)
    leaked = root / "train" / "red" / "000.png"
    (root / "test" / "red" / "copy.png").write_bytes(leaked.read_bytes())
    report = loading.validate_folder(root)
    duplicates = next(i for i in report.issues if i.kind == "duplicates")
    assert len(duplicates.items) == 1 and duplicates.items[0]["splits"] == ["train", "test"]
    # A per-class limit keeps each image's hash with it (it used to index the full splits: IndexError).
    limited = loading.load_dataset(root, make_settings(tmp_path), limit_per_class=3, min_per_class=1)
    kept = {str(path) for split in limited.splits.values() for path in split.paths}
    found = next((i for i in limited.report.issues if i.kind == "duplicates"), None)
    assert found is None or set(found.items[0]["items"]) <= kept
    assert (str(leaked) in kept) == (found is not None)


def test_folder_without_class_folders_and_missing_folder(tmp_path):
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.png")
    assert "unusable" in loading.validate_folder(tmp_path / "flat").kinds()
    with pytest.raises(DatasetError, match="does not exist"):
        loading.load_dataset(tmp_path / "missing", make_settings(tmp_path))


def _idx(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_is_unpacked_once_and_reused(tmp_path):
    shared = tmp_path / "shared"
    folder = shared / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 20)):
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(_idx(rng.integers(0, 255, (n, 28, 28)), 2051))
        (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(_idx(np.arange(n) % 10, 2049))
    settings = make_settings(tmp_path, shared_data_dir=shared)
    assert "fashion_mnist" in loading.dataset_choices(settings)
    dataset = loading.load_dataset("fashion_mnist", settings, min_per_class=1)
    assert dataset.class_names[0] == "T-shirt/top"
    assert len(dataset.splits["test"]) == 20 and dataset.splits["train"].images.shape[1:] == (28, 28, 3)
    unpacked = settings.data_dir / "datasets" / "fashion_mnist" / "arrays.npz"
    stamp = unpacked.stat().st_mtime_ns
    for f in folder.iterdir():  # the second load must not need the source files
        f.unlink()
    loading.load_dataset("fashion_mnist", settings, min_per_class=1)
    assert unpacked.stat().st_mtime_ns == stamp


def test_cifar10_archive_is_unpacked_to_arrays(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    with tarfile.open(shared / loading.CIFAR_ARCHIVE, "w:gz") as tar:
        for split, n in (("train", 6), ("test", 2)):
            for cls in ("airplane", "cat"):
                for i in range(n):
                    buffer = io.BytesIO()
                    Image.new("RGB", (32, 32), (i * 20, 0, 0)).save(buffer, "JPEG")
                    info = tarfile.TarInfo(f"cifar10/{split}/{cls}/{i:04d}.jpg")
                    info.size = len(buffer.getvalue())
                    tar.addfile(info, io.BytesIO(buffer.getvalue()))
    settings = make_settings(tmp_path, shared_data_dir=shared)
    dataset = loading.load_dataset("cifar10", settings, val_fraction=0.34, min_per_class=1)
    assert dataset.class_names == ("airplane", "cat")
    assert dataset.report.counts == {"train": [4, 4], "val": [2, 2], "test": [2, 2]}
    # Same pixels in several splits (the generated images repeat): reported, not fatal.
    assert "duplicates" in dataset.report.kinds()


def test_pipeline_from_paths_and_arrays(tmp_path):
    dataset = loading.load_dataset(make_image_folder(tmp_path / "ds"), make_settings(tmp_path))
    images, labels = next(iter(loading.make_tf_dataset(dataset.splits["train"], (16, 20), 3, batch_size=4)))
    assert images.shape == (4, 16, 20, 3) and images.dtype.name == "uint8"
    assert labels.shape == (4, 3)
    arrays = loading.Split(np.array([0, 1], np.int32), images=np.zeros((2, 28, 28, 3), np.uint8))
    images, labels = next(iter(loading.make_tf_dataset(arrays, (32, 32), 2, batch_size=2, one_hot=False, cache=False)))
    assert images.shape == (2, 32, 32, 3) and labels.numpy().tolist() == [0, 1]


def test_augmentation_is_off_by_default_and_each_layer_changes_images():
    assert augmentation_layers(AugmentConfig()) is None
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (2, 24, 24, 3)).astype(np.uint8)
    strengths = dict(rotation=0.2, zoom=0.3, brightness=0.4, contrast=0.5, saturation=0.8, hue=0.3, cutout=0.5)
    for name, value in [("flip", True), *strengths.items()]:
        config = AugmentConfig(**{name: value})
        out = preview_augmentations(images, config, copies=4, seed=1)
        assert out.shape == (2, 4, 24, 24, 3) and out.dtype == np.uint8
        assert np.any(out != images[:, None]), name
    with pytest.raises(DatasetError, match="Unknown augmentation"):
        AugmentConfig.from_dict({"mixup": 1})
