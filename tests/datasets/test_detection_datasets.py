"""Detection dataset loaders: the same known boxes from COCO JSON, VOC XML and YOLO txt, and clear validation lines."""

from __future__ import annotations

import json

import pytest

from imgrec.datasets.detection import detect_format, image_label_sets, load_detection_dataset
from imgrec.datasets.loading import DatasetError
from tests.helpers.detection_data import COCO_LABELS, KNOWN_IMAGES, WRITERS, write_coco, write_voc, write_yolo


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_every_layout_loads_the_known_boxes_in_coco_spelling(layout, tmp_path):
    path = WRITERS[layout](tmp_path / layout)
    assert detect_format(path) == layout
    dataset = load_detection_dataset(path)

    assert dataset.format == layout and dataset.class_names == list(COCO_LABELS)
    assert dataset.report.issues == []
    by_name = {image.path.name: image for image in dataset.images}
    assert sorted(by_name) == sorted(name for name, _size, _boxes in KNOWN_IMAGES)
    for name, (width, height), boxes in KNOWN_IMAGES:
        image = by_name[name]
        assert (image.width, image.height) == (width, height)
        expected = sorted((label.replace("tvmonitor", "tv"), (x1, y1, x2, y2)) for label, x1, y1, x2, y2 in boxes)
        loaded = sorted((box.label, box.box) for box in image.boxes)
        assert [label for label, _ in loaded] == [label for label, _ in expected]
        for (_, got), (_, want) in zip(loaded, expected):
            assert got == pytest.approx(want, abs=1e-9)
    assert dataset.report.counts == {"boxes": [3, 3, 1]}  # dog, person, tv


def test_image_label_sets_give_each_images_labels(tmp_path):
    sets = dict(image_label_sets(load_detection_dataset(write_voc(tmp_path / "voc"))))
    assert {path.name: labels for path, labels in sets.items()} == {
        "street.png": {"person", "dog"}, "living.png": {"tv", "person"}, "garden.png": {"dog", "person"}}


def test_a_class_mapping_file_renames_and_leaves_out_classes(tmp_path):
    path = write_coco(tmp_path / "coco")
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"dog": "cat", "tvmonitor": None}))
    dataset = load_detection_dataset(path, "coco", class_map=mapping)
    assert dataset.class_names == ["cat", "person"]
    [line] = [issue.message for issue in dataset.report.issues]
    assert line == "1 boxes left out by the class mapping: tvmonitor (1)."

    mapping.write_text('["tvmonitor", "tv"]')
    with pytest.raises(DatasetError, match="not a JSON object of names to names"):
        load_detection_dataset(path, "coco", class_map=mapping)


def test_classes_the_model_lacks_are_left_out_with_a_line(tmp_path):
    dataset = load_detection_dataset(write_yolo(tmp_path / "yolo"), known_classes=("person", "dog"))
    assert dataset.class_names == ["dog", "person"]
    assert [i.message for i in dataset.report.issues] == [
        "1 boxes of classes the model does not have were left out: tv (1)."]


def test_missing_images_unknown_ids_and_boxes_outside_the_image_are_each_a_line(tmp_path):
    root = write_yolo(tmp_path / "yolo")
    (root / "images" / "living.png").unlink()
    (root / "labels" / "street.txt").write_text("7 0.5 0.5 0.1 0.1\n0 0.5 0.5 1.5 0.5\n1 1.5 1.5 0.1 0.1\n")
    dataset = load_detection_dataset(root)
    lines = {issue.kind: issue for issue in dataset.report.issues}
    assert lines["missing_images"].message == "1 annotated images are missing and were left out."
    assert lines["missing_images"].items == ["living (labels/living.txt)"]
    assert lines["unknown_classes"].message.startswith("1 boxes have a class id the dataset does not name (7)")
    assert lines["outside_image"].items == ["street.png person [-30, 20, 150, 60]", "street.png dog [174, 116, 186, 124]"]
    assert lines["empty_boxes"].items == ["street.png dog [174, 116, 186, 124]"]
    street = next(image for image in dataset.images if image.path.name == "street.png")
    assert [(box.label, box.box) for box in street.boxes] == [("person", (0.0, 20.0, 120.0, 60.0))]


def test_an_empty_set_an_unknown_layout_and_a_broken_file_are_clear_errors(tmp_path):
    root = write_voc(tmp_path / "voc")
    for image in (root / "JPEGImages").iterdir():
        image.unlink()
    with pytest.raises(DatasetError, match="holds no usable labelled image.*3 annotated images are missing"):
        load_detection_dataset(root)

    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match="Cannot tell the layout.*Expected a COCO .json file"):
        load_detection_dataset(tmp_path / "plain")
    with pytest.raises(DatasetError, match="Unknown dataset format 'kitti'. Expected one of: coco, voc, yolo"):
        load_detection_dataset(root, "kitti")

    broken = tmp_path / "broken.json"
    broken.write_text('{"images": []')
    with pytest.raises(DatasetError, match="Cannot read broken.json as JSON"):
        load_detection_dataset(broken)
    broken.write_text('{"images": [{"id": 1}], "annotations": [], "categories": []}')
    with pytest.raises(DatasetError, match="malformed entry.*file_name"):
        load_detection_dataset(broken)
