"""``imgrec batch`` on a real local Ray: folders with good and hostile files, path lists, an S3 bucket on a
local moto server; every row compared with ``imgrec predict --json`` on the same files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import s3fs

from imgrec.batch.job import BatchError, existing_sources, read_results, run_batch
from imgrec.batch.sources import SourceError
from imgrec.core.errors import ModelError
from imgrec.core.storage import Storage
from imgrec.registry import catalog
from tests.helpers.buckets import make_bucket
from tests.helpers.cli import run_cli
from tests.helpers.hostile_inputs import CASES, UPLOAD_LIMIT
from tests.helpers.models import build_tiny_model, tiny_card
from tests.helpers.settings import make_settings

PHOTOS = ("cat.jpg", "dog_test_0.jpg", "owl.jpg", "sunflower.jpg")


@pytest.fixture(scope="module")
def batch_settings(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("batch"), max_upload_bytes=UPLOAD_LIMIT)
    catalog.save_model(build_tiny_model(), tiny_card(), settings)
    return settings


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, photos_dir) -> Path:
    """Real photos and every case of the hostile-input catalogue, named by case (the content decides)."""
    folder = tmp_path_factory.mktemp("images")
    for name in PHOTOS:
        shutil.copy(photos_dir / name, folder / name)
    for case in CASES:
        (folder / f"{case.name}{Path(case.filename).suffix}").write_bytes(case.make())
    (folder / ".hidden.jpg").write_bytes((photos_dir / "cat.jpg").read_bytes())  # left out: hidden
    return folder


@pytest.fixture(scope="module")
def predicted(image_folder, batch_settings) -> dict[str, dict]:
    """``imgrec predict --json`` on every file of the folder, by file name."""
    files = sorted(p for p in image_folder.iterdir() if not p.name.startswith("."))
    result = run_cli(["predict", *map(str, files), "--model", "tiny-cnn", "--json", "--no-log", "--top-k", "3"],
                     batch_settings, IMGREC_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT))
    assert result.returncode == 1, result.stderr  # the hostile files fail
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    return {Path(answer["filename"]).name: answer for answer in answers}


def assert_same_as_predict(rows: pd.DataFrame, predicted: dict[str, dict]) -> None:
    assert sorted(Path(p).name for p in rows["source_path"]) == sorted(predicted)
    for row in rows.itertuples():
        expected = predicted[Path(row.source_path).name]
        assert row.model == "tiny-cnn@1"
        if "error" in expected:
            assert (row.error, row.detail) == (expected["error"], expected["detail"]), row.source_path
            assert pd.isna(row.label) and pd.isna(row.result)
            continue
        assert pd.isna(row.error), (row.source_path, row.detail)
        got = json.loads(row.result)["predictions"]
        want = expected["predictions"]
        assert [p["label"] for p in got] == [p["label"] for p in want], row.source_path
        assert [p["score"] for p in got] == pytest.approx([p["score"] for p in want], abs=2e-6)
        assert row.label == want[0]["label"] and row.score == pytest.approx(want[0]["score"], abs=2e-6)


def test_folder_with_good_and_hostile_files_matches_predict(ray_cluster, batch_settings, image_folder, predicted,
                                                            tmp_path):
    output = tmp_path / "results.parquet"
    seen = []
    summary = run_batch(str(image_folder), "tiny-cnn@1", str(output), batch_settings, top_k=3, on_progress=seen.append)
    rows = read_results(str(output))
    assert_same_as_predict(rows, predicted)
    refused = {name for name, answer in predicted.items() if "error" in answer}
    assert refused and summary.failures == len(refused)
    assert summary.images == len(predicted) and summary.skipped == 0
    assert seen and seen[-1].images == len(predicted)
    for case in CASES:  # the catalogue's own verdict too (stored under the case's name, so none is too long)
        [row] = rows[rows.source_path.str.endswith(f"/{case.name}{Path(case.filename).suffix}")].itertuples()
        if case.expected.accepted:
            assert pd.isna(row.error), case.name
        else:
            assert case.expected.fragment in row.detail, case.name
    # The parts are plain Parquet: pandas reads the folder without imgrec.
    assert len(pd.read_parquet(output)) == len(rows)


def test_path_list_with_a_missing_file_and_skip_existing(ray_cluster, batch_settings, image_folder, predicted,
                                                         tmp_path):
    output = str(tmp_path / "out")
    names = sorted(predicted)
    first_half = names[: len(names) // 2]
    listing = tmp_path / "list.csv"
    pd.DataFrame({"path": [str(image_folder / n) for n in first_half] + ["gone.jpg"]}).to_csv(listing, index=False)
    summary = run_batch(str(listing), "tiny-cnn", output, batch_settings, top_k=3)
    rows = read_results(output)
    [gone] = rows[rows.source_path.str.endswith("gone.jpg")].itertuples()
    assert gone.source_path == str(tmp_path / "gone.jpg")
    assert "File not found: 'gone.jpg'" in gone.detail
    assert summary.images == len(first_half) + 1

    with pytest.raises(BatchError, match="already holds results"):
        run_batch(str(image_folder), "tiny-cnn", output, batch_settings)
    # An interrupted job run again with skip_existing does only the rest.
    rest = run_batch(str(image_folder / "*"), "tiny-cnn", output, batch_settings, top_k=3, skip_existing=True)
    assert (rest.images, rest.skipped) == (len(names) - len(first_half), len(first_half))
    rows = read_results(output)
    assert_same_as_predict(rows[~rows.source_path.str.endswith("gone.jpg")], predicted)
    assert len(existing_sources(Storage(output))) == len(names) + 1


def test_bucket_source_and_output_on_s3(ray_cluster, batch_settings, image_folder, predicted):
    bucket = make_bucket("batch-images")
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    for path in image_folder.iterdir():
        fs.pipe_file(f"batch-images/in/{path.name}", path.read_bytes())
    summary = run_batch(f"{bucket}/in", "tiny-cnn@1", f"{bucket}/out.parquet", batch_settings, top_k=3)
    rows = read_results(f"{bucket}/out.parquet")
    assert all(p.startswith(f"{bucket}/in/") for p in rows.source_path)
    assert_same_as_predict(rows, predicted)
    assert summary.images == len(predicted)


def test_cli_joins_the_running_cluster_and_logs(ray_cluster, batch_settings, image_folder, tmp_path):
    from imgrec.predlog.store import open_store

    output = tmp_path / "cli.parquet"
    result = run_cli(["batch", str(image_folder), "--model", "tiny-cnn@1", "--output", str(output),
                      "--ray-address", ray_cluster, "--log"], batch_settings,
                     IMGREC_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT))
    rows = read_results(str(output))
    good = rows[rows.error.isna()]
    assert result.returncode == 1, result.stderr  # some files were refused
    assert f"{len(rows)} images ({len(rows) - len(good)} failed, 0 already done) with tiny-cnn@1" in result.stdout
    assert good.prediction_id.notna().all()
    with open_store(batch_settings) as store:
        logged = [store.get_prediction(int(i)) for i in good.prediction_id]
    assert {p["source"] for p in logged} == {"batch"}
    assert [p["top1_label"] for p in logged] == list(good.label)


def test_refusals_name_what_was_given(batch_settings, tmp_path):
    with pytest.raises(SourceError, match="does not exist. Expected a folder, a glob"):
        run_batch(str(tmp_path / "nowhere"), "tiny-cnn", str(tmp_path / "o"), batch_settings)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="holds no files"):
        run_batch(str(tmp_path / "empty"), "tiny-cnn", str(tmp_path / "o"), batch_settings)
    listing = tmp_path / "two.csv"
    listing.write_text("a,b\n1,2\n")
    with pytest.raises(SourceError, match="has columns a, b. Expected one column, or one named 'path'"):
        run_batch(str(listing), "tiny-cnn", str(tmp_path / "o"), batch_settings)
    result = run_cli(["batch", str(tmp_path / "empty"), "--model", "no-such", "--output", str(tmp_path / "o")],
                     batch_settings)
    assert result.returncode == 2 and "No model named 'no-such'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_corrupt_model_is_refused_before_any_actor_starts(tmp_path, image_folder):
    settings = make_settings(tmp_path)
    catalog.save_model(build_tiny_model(), tiny_card(), settings)
    with open(settings.models_dir / "tiny-cnn" / "1" / "model.keras", "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelError, match="file 'model.keras' has checksum .* The file is corrupt or was replaced"):
        run_batch(str(image_folder), "tiny-cnn", str(tmp_path / "o"), settings)
    assert not (tmp_path / "o").exists()
