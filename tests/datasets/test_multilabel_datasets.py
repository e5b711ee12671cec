"""Multi-label datasets: CSV/TSV label files with their validation lines, detection label sets in every layout,
and the deterministic cifar10-mosaic built from a (small, generated) CIFAR-10 archive."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgrec.datasets import loading, multilabel
from imgrec.datasets.loading import DatasetError
from tests.helpers import detection_data
from tests.helpers.multilabel_data import COLOURS, write_colour_cifar, write_colour_csv
from tests.helpers.settings import make_settings


def test_csv_labels_become_multi_hot_rows_split_without_overlap(tmp_path):
    path = write_colour_csv(tmp_path / "set", images=40)
    dataset = multilabel.load_multilabel_dataset(path, make_settings(tmp_path), "csv", min_per_class=1)
    assert dataset.class_names == tuple(sorted(COLOURS))
    rows = dict(line.split(",") for line in path.read_text().splitlines()[1:])
    seen = []
    for split in dataset.splits.values():
        assert split.labels.shape == (len(split), 4) and split.labels.dtype == np.int8
        for image, labels in zip(split.paths, split.labels):
            assert {dataset.class_names[i] for i in np.flatnonzero(labels)} == set(rows[image.name].split())
            seen.append(image.name)
    assert sorted(seen) == sorted(rows) and len(dataset.splits["test"]) == 6
    assert dataset.report.counts["train"] == dataset.splits["train"].labels.sum(0).tolist()
    assert dataset.report.ok


def test_tsv_with_pipe_separated_labels_reads_the_same(tmp_path):
    comma = multilabel.read_label_csv(write_colour_csv(tmp_path / "a", images=12))
    tab = multilabel.read_label_csv(write_colour_csv(tmp_path / "b", images=12, delimiter="\t", separator="|"))
    assert comma[2] == tab[2] and comma[3] == tab[3]


def test_every_problem_of_a_label_file_is_a_clear_report_line(tmp_path):
    root = tmp_path / "set"
    path = write_colour_csv(root, images=12)
    (root / "classes.txt").write_text("\n".join(COLOURS) + "\n")
    (root / "images" / "broken.png").write_bytes(b"not an image")
    Image.new("RGB", (8, 8)).save(root / "images" / "extra.png")
    rows = path.read_text().splitlines()
    rows += [rows[1], "gone.png,red", "broken.png,red", "extra.png,purple", "extra.png,red", "lonely.png",
             "../outside.png,red"]
    path.write_text("\n".join(rows) + "\n")
    report = multilabel.validate_label_csv(path, min_per_class=20)
    lines = {issue.kind: issue.message for issue in report.issues}
    assert lines["duplicate_rows"].startswith("2 image(s) listed more than once") and "000.png" in lines["duplicate_rows"]
    assert lines["missing"].startswith("2 image(s) not found in 'images/'") and "gone.png" in lines["missing"]
    assert "outside.png" in lines["missing"]
    assert lines["unknown_labels"] == "1 label(s) not in classes.txt were dropped: purple."
    assert lines["malformed"].startswith("1 row(s) without both columns") and "line" in lines["malformed"]
    assert "broken.png" in str(report.skipped) and lines["unreadable"].startswith("1 file(s)")
    assert lines["too_few"].startswith("Fewer than 20 images in:")
    assert report.ok  # warnings only: the usable rows still train


def test_an_unusable_label_file_says_what_was_expected(tmp_path):
    (tmp_path / "labels.csv").write_text("file,tags\nx.png,red\n")
    with pytest.raises(DatasetError, match="has the header \\['file', 'tags'\\]. Expected the columns 'image' and"):
        multilabel.load_multilabel_dataset(tmp_path / "labels.csv", make_settings(tmp_path), "csv")
    with pytest.raises(DatasetError, match="'nothing.csv' does not exist"):
        multilabel.load_multilabel_dataset(tmp_path / "nothing.csv", make_settings(tmp_path), "csv")
    with pytest.raises(DatasetError, match="Expected one of: csv, coco, voc, yolo"):
        multilabel.load_multilabel_dataset(tmp_path / "labels.csv", make_settings(tmp_path), "parquet")
    report = multilabel.validate_label_csv(tmp_path / "labels.csv")
    assert not report.ok and "Expected the columns" in report.issues[0].message


@pytest.mark.parametrize("layout", sorted(detection_data.WRITERS))
def test_detection_datasets_give_each_image_the_set_of_classes_boxed_in_it(tmp_path, layout):
    source = detection_data.WRITERS[layout](tmp_path / layout)
    dataset = multilabel.load_multilabel_dataset(source, make_settings(tmp_path), layout, val_fraction=0.0,
                                                 test_fraction=0.0, min_per_class=1)
    assert dataset.class_names == detection_data.COCO_LABELS
    split = dataset.splits["train"]
    got = {path.name: {dataset.class_names[i] for i in np.flatnonzero(row)} for path, row in zip(split.paths, split.labels)}
    assert got == {"street.png": {"person", "dog"}, "living.png": {"tv", "person"}, "garden.png": {"dog", "person"}}


def test_mosaics_are_deterministic_with_one_to_four_distinct_classes_from_their_own_split(tmp_path):
    settings = make_settings(tmp_path, shared_data_dir=write_colour_cifar(tmp_path / "shared"))
    first = multilabel.load_mosaics(settings, counts={"train": 300, "test": 100})
    again = multilabel.load_mosaics(settings, counts={"train": 300, "test": 100})
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(first.splits[name].images, again.splits[name].images)
        np.testing.assert_array_equal(first.splits[name].labels, again.splits[name].labels)
    assert len(first.splits["train"]) + len(first.splits["val"]) == 300 and len(first.splits["test"]) == 100
    arrays = np.load(loading.ensure_builtin("cifar10", settings) / "arrays.npz")
    for name, source in (("train", "train"), ("val", "train"), ("test", "test")):
        split = first.splits[name]
        assert split.images.shape[1:] == (64, 64, 3)
        assert set(split.labels.sum(1)) <= {1, 2, 3, 4} and split.labels.sum(1).max() == 4
        tiles = {arrays[f"{source}_images"][i].tobytes(): arrays[f"{source}_labels"][i]
                 for i in range(len(arrays[f"{source}_images"]))}
        for mosaic, labels in zip(split.images[:20], split.labels[:20]):
            cells = [mosaic[r:r + 32, c:c + 32].tobytes() for r in (0, 32) for c in (0, 32)]
            assert all(cell in tiles for cell in cells)  # every cell is an image of that CIFAR split
            assert {int(tiles[cell]) for cell in cells} == set(np.flatnonzero(labels))
    capped = multilabel.load_multilabel_dataset(multilabel.MOSAIC, settings, limit_per_class=3, min_per_class=1)
    assert {name: len(split) for name, split in capped.splits.items()} == {"train": 12, "val": 5, "test": 12}
