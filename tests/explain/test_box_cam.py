"""Grad-CAM of one detection (a BoxTarget), batches of images, and boxes from a classifier's map.

The contract runs over both methods × a tiny classifier and a tiny detector built here (conv layers →
a decoded (batch, boxes, 4 + classes) output) × batch sizes 1 and 3.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from imgrec.core.errors import ImgrecError, ModelError
from imgrec.explain import cam, faithfulness, localisation
from imgrec.tasks.base import BoxTarget, ClassTarget
from tests.helpers.models import build_tiny_model

DETECTOR_CLASSES = ("person", "dog")
DETECTOR_SIZE = (24, 24)
GRID = 6  # the head's cells per side: GRID × GRID output rows


def build_tiny_detector(seed: int = 3):
    """uint8 RGB in → (batch, 36, 4 + 2) out: sigmoid box fractions and class scores per cell. The head
    is a 1×1 convolution on ``features``, so a row's score depends on that one cell of ``features``."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((*DETECTOR_SIZE, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(keras.ops.cast(inputs, "float32"))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="features")(x)
    x = keras.layers.Conv2D(4 + len(DETECTOR_CLASSES), 1, activation="sigmoid", name="head")(x)
    outputs = keras.layers.Reshape((GRID * GRID, 4 + len(DETECTOR_CLASSES)), name="decoded")(x)
    return keras.Model(inputs, outputs, name="tiny-detector")


@pytest.fixture(scope="module")
def detector():
    return build_tiny_detector()


@pytest.fixture(scope="module")
def classifier():
    return build_tiny_model()


def images(rng, count):
    return [rng.integers(0, 256, (30 + 7 * i, 40, 3), dtype=np.uint8) for i in range(count)]


def targets_for(kind, count):
    if kind == "classifier":
        return [ClassTarget(i % 3, str(i % 3)) for i in range(count)]
    return [BoxTarget(output_index=5 + 7 * i, class_index=i % 2, label=DETECTOR_CLASSES[i % 2]) for i in range(count)]


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("kind", ["classifier", "detector"])
@pytest.mark.parametrize("method", cam.METHODS)
def test_contract_over_methods_models_and_batch_sizes(request, rng, method, kind, batch_size):
    model = request.getfixturevalue(kind)
    explainer = cam.explainer(model, method=method)
    pictures, targets = images(rng, batch_size), targets_for(kind, batch_size)
    heatmaps = explainer.batch(pictures, targets)
    assert len(heatmaps) == batch_size
    for picture, target, heatmap in zip(pictures, targets, heatmaps):
        assert heatmap.values.shape == picture.shape[:2] and heatmap.values.dtype == np.float32
        assert np.isfinite(heatmap.values).all() and 0.0 <= heatmap.values.min() <= heatmap.values.max() <= 1.0
        assert heatmap.method == method
        # The score the map explains is the model's own output at that position.
        output = np.asarray(model(explainer._prepare([picture]), training=False))[0]
        if kind == "detector":
            assert (heatmap.output_index, heatmap.target_class) == (target.output_index, target.class_index)
            assert heatmap.probability == pytest.approx(output[target.output_index, 4 + target.class_index], abs=1e-5)
        else:
            assert heatmap.output_index is None and heatmap.target_class == target.index
            assert heatmap.probability == pytest.approx(output[target.index], abs=1e-5)
        # A batch gives each image the map it gets alone.
        alone = explainer(picture, target)
        np.testing.assert_allclose(heatmap.raw, alone.raw, atol=1e-4)


def test_a_detection_map_is_keras_io_grad_cam_of_that_boxs_score(detector, rng):
    """The reference written out: the gradient of ``output[0, row, 4 + class]`` w.r.t. the layer, averaged."""
    import tensorflow as tf

    picture = rng.integers(0, 256, (*DETECTOR_SIZE, 3), dtype=np.uint8)
    probe = keras.Model(detector.inputs, [detector.get_layer("conv2").output, detector.output])
    maps = []
    for target in (BoxTarget(7, 1, "dog"), BoxTarget(29, 0, "person")):
        with tf.GradientTape() as tape:
            features, output = probe(picture[None], training=False)
            score = output[0, target.output_index, 4 + target.class_index]
        weights = tf.reduce_mean(tape.gradient(score, features), axis=(1, 2))
        expected = tf.nn.relu(tf.einsum("bhwc,bc->bhw", features, weights))[0].numpy()
        heatmap = cam.gradcam(detector, picture, layer="conv2", target_class=target)
        assert expected.max() > 0
        np.testing.assert_allclose(heatmap.raw, expected / expected.max(), atol=1e-4)
        maps.append(heatmap.raw)
    assert not np.allclose(*maps, atol=1e-3)  # another box, another map


def test_no_target_explains_the_best_detection(detector, rng):
    picture = rng.integers(0, 256, (*DETECTOR_SIZE, 3), dtype=np.uint8)
    heatmap = cam.gradcam(detector, picture)
    scores = np.asarray(detector(picture[None], training=False))[0, :, 4:]
    assert (heatmap.output_index, heatmap.target_class) == np.unravel_index(np.argmax(scores), scores.shape)
    assert heatmap.label == str(heatmap.target_class)


def test_wrong_targets_are_clear_errors(detector, classifier, rng):
    picture = rng.integers(0, 256, (*DETECTOR_SIZE, 3), dtype=np.uint8)
    with pytest.raises(ModelError, match="names a class only. Expected a BoxTarget"):
        cam.gradcam(detector, picture, target_class=ClassTarget(0, "person"))
    with pytest.raises(ModelError, match="output_index=36. Expected 0 to 35"):
        cam.gradcam(detector, picture, target_class=BoxTarget(36, 0, "person"))
    with pytest.raises(ModelError, match="target_class=2. Expected 0 to 1"):
        cam.gradcam(detector, picture, target_class=BoxTarget(3, 2, "cat"))
    with pytest.raises(ModelError, match="names a detection, but the model is a classifier"):
        cam.gradcam(classifier, picture, target_class=BoxTarget(0, 0, "cat"))
    with pytest.raises(ModelError, match="2 targets for 1 images"):
        cam.explainer(classifier).batch([picture], [0, 1])


def test_faithfulness_of_a_detection_follows_that_row(detector, rng):
    picture = rng.integers(0, 256, (*DETECTOR_SIZE, 3), dtype=np.uint8)
    target = BoxTarget(14, 0, "person")
    heatmap = cam.gradcam(detector, picture, layer="conv2", target_class=target)
    score = faithfulness.deletion_insertion(detector, picture, heatmap, steps=4, random_maps=1)
    assert (score.output_index, score.target_class) == (14, 0)
    untouched = float(np.asarray(detector(picture[None], training=False))[0, 14, 4])
    assert score.deletion[0] == pytest.approx(untouched, abs=1e-5)  # step 0 deletes nothing
    assert score.insertion[-1] == pytest.approx(untouched, abs=1e-5)  # the last step restores everything
    assert score.deletion.shape == score.insertion.shape == (5,)


def test_box_from_a_map_is_the_largest_region():
    values = np.zeros((40, 60), np.float32)
    values[5:10, 5:10] = 1.0  # the peak, but small
    values[20:35, 30:55] = 0.5  # larger, above 15 % of the peak
    values[0, 59] = 0.1  # below the threshold
    assert localisation.box_from_heatmap(values) == (30, 20, 55, 35)
    assert localisation.box_from_heatmap(values, threshold=0.6) == (5, 5, 10, 10)
    assert localisation.box_from_heatmap(np.zeros((8, 8), np.float32)) is None
    with pytest.raises(ImgrecError, match="threshold=1.5. Expected a fraction"):
        localisation.box_from_heatmap(values, threshold=1.5)


def test_box_from_a_classifier_heatmap_is_inside_the_image(classifier, rng):
    picture = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    heatmap = cam.gradcam(classifier, picture)
    x1, y1, x2, y2 = localisation.box_from_heatmap(heatmap)
    assert 0 <= x1 < x2 <= 70 and 0 <= y1 < y2 <= 45
    assert heatmap.values[y1:y2, x1:x2].max() == pytest.approx(heatmap.values.max())  # the peak's region
