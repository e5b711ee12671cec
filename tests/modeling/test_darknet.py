"""The Darknet importer: the shipped Yolo-Fastest files give the shipped Keras models; tiny .cfg files check the rest."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from imgrec.core.settings import Settings
from imgrec.modeling.darknet import (
    DarknetError,
    build_model,
    import_darknet,
    parse_cfg,
    shipped_detector_files,
)
from imgrec.modeling.yolo_spec import YoloHeadSpec
from tests.helpers.darknet import WEIGHTS_HEADER, weights_file


def shipped(stem: str):
    try:
        return shipped_detector_files(stem, Settings())
    except DarknetError:
        pytest.skip(f"the shipped detectors are not in {Settings().shared_detection_dir.name}/ (../shared)")


@pytest.mark.slow
@pytest.mark.parametrize("stem", ["yolo-fastest-1.1-xl", "yolo-fastest-1.1"])
def test_importing_the_shipped_darknet_files_gives_the_shipped_keras_model(stem, photos_dir):
    import keras
    from PIL import Image

    from imgrec.core.images import resize

    cfg, weights, _names = shipped(stem)
    imported = import_darknet(cfg, weights)
    reference = keras.saving.load_model(cfg.with_suffix(".keras"))

    assert imported.spec == YoloHeadSpec(
        input_size=(320, 320),
        anchors=((12, 18), (37, 49), (52, 132), (115, 73), (119, 199), (242, 238)),
        masks=((3, 4, 5), (0, 1, 2)),
        num_classes=80,
    )
    assert imported.model.count_params() == reference.count_params()
    ours, theirs = imported.model.weights, reference.weights
    assert [w.shape for w in ours] == [w.shape for w in theirs]
    for mine, shipped_weight in zip(ours, theirs):
        np.testing.assert_allclose(mine.numpy(), shipped_weight.numpy(), atol=1e-6)

    photos = [np.asarray(Image.open(photos_dir / name).convert("RGB")) for name in ("parrot.jpg", "pets.jpg")]
    batch = np.stack([resize(photo, (320, 320)) for photo in photos]).astype(np.float32) / 255.0
    for mine, shipped_output in zip(imported.model.predict(batch, verbose=0), reference.predict(batch, verbose=0)):
        assert mine.shape == shipped_output.shape
        np.testing.assert_allclose(mine, shipped_output, atol=1e-4)


def test_a_renamed_or_altered_shipped_file_is_refused_by_its_checksum(tmp_path):
    cfg, weights, _names = shipped("yolo-fastest-1.1")
    altered = tmp_path / weights.name
    altered.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    shutil.copy(cfg, tmp_path / cfg.name)
    with pytest.raises(DarknetError, match="sha256.*Expected 1c445c42.*96a2900d"):
        import_darknet(tmp_path / cfg.name, altered)


def test_without_the_shared_folder_the_error_says_what_to_fetch_and_how_to_import(tmp_path):
    settings = Settings(shared_detection_dir=tmp_path / "detection")
    with pytest.raises(DarknetError) as caught:
        shipped_detector_files("yolo-fastest-1.1-xl", settings)
    message = str(caught.value)
    assert "Nothing is downloaded" in message
    assert "dog-qiuqiu/Yolo-Fastest" in message and "96a2900d163196c396e73f3fdab04ca4dd9a2f70" in message
    assert "python -m imgrec import darknet yolo-fastest-1.1-xl.cfg yolo-fastest-1.1-xl.weights" in message
    assert "--names coco.names --name coco-yolo-fastest-xl" in message


ONE_HEAD_CFG = """
[net]
width=8
height=8
channels=3

[convolutional]   # 0: a plain 1x1 head, no batch norm: output = x @ kernel + bias
filters=12
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1
anchors=2,3, 4,5
classes=1
"""


def test_a_convolution_reads_its_biases_then_its_kernel_in_darknet_order():
    rng = np.random.default_rng(0)
    bias, kernel = rng.normal(size=12), rng.normal(size=(12, 3, 1, 1))  # Darknet: (out, in, h, w)
    imported = build_model(parse_cfg(ONE_HEAD_CFG), weights_file(np.concatenate([bias, kernel.ravel()])))

    image = rng.random((1, 8, 8, 3)).astype(np.float32)
    expected = image @ kernel[:, :, 0, 0].T + bias
    np.testing.assert_allclose(imported.model.predict(image, verbose=0), expected, atol=1e-5)
    assert imported.spec == YoloHeadSpec(input_size=(8, 8), anchors=((2, 3), (4, 5)), masks=((0, 1),),
                                         num_classes=1)
    assert imported.weights_read == 48


def test_too_short_or_too_long_a_weights_file_is_refused_naming_the_counts():
    sections = parse_cfg(ONE_HEAD_CFG)
    with pytest.raises(DarknetError, match=r"ends too early.*needs 36 values at value 12.*holds 40 values"):
        build_model(sections, weights_file(np.zeros(40)))
    with pytest.raises(DarknetError, match=r"holds 50 float32 values but the .cfg uses 48 \(2 left over\)"):
        build_model(sections, weights_file(np.zeros(50)))
    with pytest.raises(DarknetError, match="not a whole number of float32 values"):
        build_model(sections, WEIGHTS_HEADER + b"\0" * 6)


TINY_V4_CFG = """
[net]
width=16
height=16
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[route]
layers=-1
groups=2
group_id=1

[convolutional]
groups=4
filters=4
size=3
stride=1
pad=1
batch_normalize=1
activation=leaky

[shortcut]
from=-2
activation=linear

[dropout]
probability=.1

[maxpool]
size=2
stride=2

[convolutional]
filters=12
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=1,2
anchors=2,3, 4,5, 6,7
classes=1
num=3

[route]
layers=-3

[upsample]
stride=2

[route]
layers=-1,0

[convolutional]
filters=6
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0
anchors=2,3, 4,5, 6,7
classes=1
num=3
"""


def tiny_v4_weight_count() -> int:
    conv0 = 8 * 4 + 8 * 3 * 9  # BN beta, gamma, mean, variance + kernel
    depthwise = 4 * 4 + 4 * 1 * 9
    head0 = 12 + 12 * 4
    head1 = 6 + 6 * (4 + 8)
    return conv0 + depthwise + head0 + head1


def test_route_groups_depthwise_shortcut_maxpool_and_upsample_build_and_survive_saving(tmp_path):
    import keras

    values = np.random.default_rng(1).normal(size=tiny_v4_weight_count())
    imported = build_model(parse_cfg(TINY_V4_CFG), weights_file(values))

    assert [tuple(output.shape[1:]) for output in imported.model.outputs] == [(4, 4, 12), (8, 8, 6)]
    assert imported.spec.masks == ((1, 2), (0,))
    assert any(isinstance(layer, keras.layers.DepthwiseConv2D) for layer in imported.model.layers)

    path = tmp_path / "tiny.keras"
    imported.model.save(path)
    image = np.random.default_rng(2).random((1, 16, 16, 3)).astype(np.float32)
    for before, after in zip(imported.model.predict(image, verbose=0),
                             keras.saving.load_model(path).predict(image, verbose=0)):
        np.testing.assert_allclose(before, after, atol=1e-6)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ("[net]\nwidth=8\nheight=8\n[local]\nsize=1\n", r"Unsupported section \[local\] at line 4"),
        ("[convolutional]\nfilters=1\n", r"does not start with a \[net\] section"),
        ("[net]\nwidth=8\nheight=8\n[convolutional]\nfilters=18\nactivation=mish\n[yolo]\nclasses=1\nanchors=1,1\n",
         "activation=mish. Expected one of: leaky, linear"),
        ("[net]\nwidth=8\nheight=8\n[route]\nlayers=-3\n[yolo]\nclasses=1\nanchors=1,1\n",
         "refers to layer -3, which is not an earlier layer"),
        ("[net]\nwidth=8\nheight=8\n", r"no \[yolo\] section"),
    ],
)
def test_unsupported_or_broken_cfg_files_are_refused_clearly(cfg, message):
    with pytest.raises(DarknetError, match=message):
        build_model(parse_cfg(cfg), weights_file(np.zeros(64)))
