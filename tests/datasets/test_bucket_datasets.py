"""Datasets in an S3 bucket (a real S3 API: moto's server on localhost): synced once into the data dir, then
loaded the same as a local copy; a changed object syncs again, an unfinished copy is never used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import s3fs

from imgrec.datasets.detection import load_detection_dataset
from imgrec.datasets.loading import SYNC_MANIFEST, DatasetError, dataset_location, load_dataset
from tests.helpers.buckets import make_bucket, moto_s3
from tests.helpers.cli import run_cli
from tests.helpers.darknet import write_tiny_detector
from tests.helpers.datasets import make_image_folder
from tests.helpers.detection_data import write_coco
from tests.helpers.settings import make_settings


@pytest.fixture(scope="module")
def bucket():
    with moto_s3():
        yield make_bucket("imgrec-datasets")


def upload(folder: Path, url: str) -> None:
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        fs.pipe_file(f"{url.removeprefix('s3://')}/{path.relative_to(folder).as_posix()}", path.read_bytes())


def split_files(dataset) -> dict[str, list[tuple[str, int, str]]]:
    """Each split as (path inside the dataset folder, label, sha256): what must not depend on where it lives."""
    return {name: [(path.relative_to(path.parents[1]).as_posix(), int(label), digest)
                   for path, label, digest in zip(split.paths, split.labels, split.digests, strict=True)]
            for name, split in dataset.splits.items()}


def test_a_folder_dataset_in_a_bucket_loads_like_its_local_copy_and_syncs_once(bucket, tmp_path):
    settings = make_settings(tmp_path)
    local = make_image_folder(tmp_path / "colours", per_class=12)
    url = f"{bucket}/datasets/colours"
    upload(local, url)

    from_bucket = load_dataset(url, settings)
    from_disk = load_dataset(local, settings)
    assert from_bucket.name == from_disk.name == "colours"
    assert from_bucket.class_names == from_disk.class_names
    assert split_files(from_bucket) == split_files(from_disk)
    copy = Path(dataset_location(url, settings))
    assert copy.is_relative_to(settings.data_dir / "datasets" / "buckets")

    # A second use lists the bucket but downloads nothing: the synced files are the same files.
    synced = {p: p.stat().st_mtime_ns for p in copy.rglob("*.png")}
    assert Path(dataset_location(url, settings)) == copy
    assert {p: p.stat().st_mtime_ns for p in copy.rglob("*.png")} == synced

    # A changed object (its ETag) syncs the folder again.
    first = sorted(local.glob("red/*.png"))[0]
    changed = make_image_folder(tmp_path / "other", per_class=1, seed=7)
    s3fs.S3FileSystem(skip_instance_cache=True).pipe_file(
        f"{url.removeprefix('s3://')}/red/{first.name}", next(changed.glob("red/*.png")).read_bytes())
    assert Path(dataset_location(url, settings)) == copy
    assert (copy / "red" / first.name).read_bytes() != first.read_bytes()
    assert not any(p.name.startswith((".sync-", ".stale-")) for p in copy.parent.iterdir())


def test_an_unfinished_copy_is_never_used(bucket, tmp_path):
    settings = make_settings(tmp_path)
    local = make_image_folder(tmp_path / "colours", per_class=12)
    url = f"{bucket}/unfinished/colours"
    upload(local, url)
    copy = Path(dataset_location(url, settings))
    # As if a sync had stopped half-way: files missing, a stray one there, the manifest gone with them.
    (copy / SYNC_MANIFEST).unlink()
    for path in sorted(copy.glob("green/*.png"))[:5]:
        path.unlink()
    (copy / "green" / "half-written.png").write_bytes(b"\x89PNG half")

    dataset = load_dataset(url, settings)
    assert split_files(dataset) == split_files(load_dataset(local, settings))
    assert not (copy / "green" / "half-written.png").exists()


@pytest.mark.parametrize("pointing_at", ["annotations.json", ""])
def test_a_coco_dataset_in_a_bucket_loads_like_its_local_copy(bucket, tmp_path, pointing_at):
    settings = make_settings(tmp_path)
    annotations = write_coco(tmp_path / "coco")
    url = f"{bucket}/detection/coco"
    upload(annotations.parent, url)

    from_bucket = load_detection_dataset(Path(dataset_location(f"{url}/{pointing_at}".rstrip("/"), settings)))
    from_disk = load_detection_dataset(annotations)
    assert from_bucket.format == from_disk.format == "coco"
    assert from_bucket.class_names == from_disk.class_names
    assert from_bucket.report.issues == from_disk.report.issues == []

    def boxes(dataset):
        return sorted((image.path.name, image.width, image.height, sorted((b.label, b.box) for b in image.boxes))
                      for image in dataset.images)

    assert boxes(from_bucket) == boxes(from_disk)


def test_a_missing_bucket_path_is_a_clear_error(bucket, tmp_path):
    settings = make_settings(tmp_path)
    for url in (f"{bucket}/no/such/dataset", "s3://no-such-imgrec-bucket/flowers"):
        with pytest.raises(DatasetError, match=f"'{url}' does not exist. Expected a dataset folder in a bucket"):
            load_dataset(url, settings)
    with pytest.raises(DatasetError, match="Cannot use 'nosuchscheme://b/d'.*Expected a folder or a URL"):
        load_dataset("nosuchscheme://b/d", settings)
    assert not (settings.data_dir / "datasets" / "buckets").exists()


def test_imgrec_evaluate_scores_a_detector_on_a_bucket_dataset_as_on_its_local_copy(bucket, tmp_path):
    settings = make_settings(tmp_path)
    cfg, weights, names = write_tiny_detector(tmp_path / "darknet")
    assert run_cli(["import", "darknet", cfg, weights, "--names", names, "--name", "tiny-yolo"],
                   settings).returncode == 0
    annotations = write_coco(tmp_path / "coco")
    url = f"{bucket}/evaluate/coco"
    upload(annotations.parent, url)

    reports = []
    for dataset in (f"{url}/annotations.json", annotations):
        done = run_cli(["evaluate", "tiny-yolo", "--dataset", dataset, "--score-threshold", "0.05",
                        "--output", tmp_path / "report.json", "--json"], settings)
        assert done.returncode == 0, done.stderr
        reports.append(json.loads(done.stdout))
    from_bucket, from_disk = ({k: v for k, v in r.items() if k not in ("created", "dataset")} for r in reports)
    assert from_bucket == from_disk and from_bucket["images"] == 3
    assert reports[0]["dataset"] == f"{url}/annotations.json"

    missing = run_cli(["evaluate", "tiny-yolo", "--dataset", f"{url}/gone.json"], settings)
    assert missing.returncode == 2
    assert f"error: '{url}/gone.json' does not exist. Expected a dataset folder in a bucket" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_run_trains_on_a_bucket_dataset_and_its_report_names_the_url(bucket, tmp_path):
    from imgrec.registry import catalog
    from imgrec.training import trainer
    from tests.helpers.training import tiny_config

    settings = make_settings(tmp_path)
    url = f"{bucket}/training/colours"
    upload(make_image_folder(tmp_path / "colours", per_class=12), url)
    config = tiny_config(url, name="from-bucket", epochs=1)
    assert config.dataset == url  # a URL is not made into a local path
    trainer.train(config, settings)
    assert catalog.load_card("from-bucket", "1", settings).class_names == ("blue", "green", "red")
    assert catalog.training_config("from-bucket", "1", settings)["dataset"] == url
