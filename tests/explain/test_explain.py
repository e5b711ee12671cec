"""Grad-CAM and Grad-CAM++ on real models: contract, nested backbones, layer choice, no side effects, faithfulness."""

from __future__ import annotations

import io

import keras
import numpy as np
import pytest
from PIL import Image

from imgrec.core.errors import ImageError, ImgrecError, ModelError
from imgrec.core.images import decode_image
from imgrec.explain import cam, faithfulness, layers, render
from imgrec.modeling.build import build_model
from tests.helpers.models import CLASSIFICATION, TINY_CLASSES, build_tiny_model

# Where the (main) cat is in cat.jpg, 512x341, as (x0, y0, x1, y1): read off the photo by eye.
# It sits left of centre, from its ear tips (y ~ 35) down to the bottom edge; left of x ~ 50 is
# a red curtain and carpet, right of x ~ 365 is floor, a wall and the edge of a second animal.
CAT_BOX = (50, 35, 365, 341)


def assert_valid_map(heatmap, shape):
    assert heatmap.values.shape == shape
    assert heatmap.values.dtype == np.float32
    assert np.isfinite(heatmap.values).all()
    assert heatmap.values.min() >= 0.0 and heatmap.values.max() <= 1.0
    assert heatmap.raw.ndim == 2 and heatmap.raw.max() <= 1.0


@pytest.fixture(scope="module")
def nested_model():
    keras.utils.set_random_seed(1)
    return build_model("mobilenet_v2", 3, (64, 64), weights=None, head=CLASSIFICATION.head)


@pytest.mark.parametrize("method", cam.METHODS)
def test_contract_on_a_non_square_image(tiny_predictor, rng, method):
    image = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)  # resized to 32x32 and the map back
    heatmap = cam.gradcam(tiny_predictor, image, method=method)
    assert_valid_map(heatmap, (45, 70))
    assert heatmap.method == method
    assert heatmap.layer == "relu3"
    assert heatmap.raw.shape == (8, 8)
    probabilities = tiny_predictor.predict_outputs([image])[0]
    assert heatmap.target_class == int(np.argmax(probabilities))
    assert heatmap.label == TINY_CLASSES[heatmap.target_class]
    assert heatmap.probability == pytest.approx(float(probabilities[heatmap.target_class]), abs=1e-5)


def test_matches_plain_keras_io_grad_cam_on_the_logit(rng):
    # Independent reference on a flat model: keras-io's recipe, eager, with the pre-softmax score.
    import tensorflow as tf

    model = build_tiny_model(seed=5)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    head = model.get_layer("predictions")
    reference = keras.Model(model.input, [model.get_layer("relu3").output, head.input])
    with tf.GradientTape() as tape:
        features, pooled = reference(image[None].astype("float32"), training=False)
        logit = (tf.matmul(pooled, head.kernel) + head.bias)[0, 2]
    grads = tape.gradient(logit, features)
    expected = tf.nn.relu(tf.reduce_sum(features * tf.reduce_mean(grads, axis=(1, 2), keepdims=True), axis=-1))[0].numpy()
    heatmap = cam.gradcam(model, image, target_class=2)
    assert cam.explainer(model).uses_logits
    np.testing.assert_allclose(heatmap.raw, expected / expected.max(), atol=1e-4)


def test_the_model_is_left_exactly_as_it_was(tmp_path, rng):
    model = build_tiny_model(seed=3)
    model.get_layer("conv1").trainable = False
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    weights = [w.copy() for w in model.get_weights()]
    flags = [(layer.name, layer.trainable) for layer in model.layers]
    before = model(images.astype("float32"), training=False).numpy()

    for method in cam.METHODS:
        heatmap = cam.gradcam(model, images[0], method=method, target_class=2)
        faithfulness.deletion_insertion(model, images[0], heatmap, steps=4, random_maps=1)

    for old, new in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert [(layer.name, layer.trainable) for layer in model.layers] == flags
    np.testing.assert_array_equal(model(images.astype("float32"), training=False).numpy(), before)
    # It still saves and loads (the re-wiring adds call nodes to shared layers, never to the model).
    model.save(tmp_path / "after.keras")
    reloaded = keras.saving.load_model(tmp_path / "after.keras", compile=False)
    np.testing.assert_allclose(reloaded(images.astype("float32"), training=False).numpy(), before, atol=1e-6)


def test_a_fully_frozen_model_is_explained_too(rng):
    model = build_tiny_model(seed=4)
    model.trainable = False  # no watched variables: the tape must watch the input itself
    heatmap = cam.gradcam(model, rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    assert_valid_map(heatmap, (32, 32))
    assert heatmap.raw.max() == pytest.approx(1.0)  # not all zero: gradients did flow


def test_other_target_class_gives_another_map(tiny_predictor, rng):
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    maps = [cam.gradcam(tiny_predictor, image, target_class=c) for c in range(3)]
    assert [m.target_class for m in maps] == [0, 1, 2]
    assert cam.gradcam(tiny_predictor, image, target_class="dog").target_class == 1
    assert not np.allclose(maps[0].values, maps[1].values, atol=1e-3)
    # Another target reuses the compiled function: same explainer object from the cache.
    assert cam.explainer(tiny_predictor) is cam.explainer(tiny_predictor)


@pytest.mark.parametrize("method", cam.METHODS)
def test_layer_inside_a_nested_backbone(nested_model, rng, method):
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    heatmap = cam.gradcam(nested_model, image, method=method)
    assert heatmap.layer == "backbone/out_relu"
    assert_valid_map(heatmap, (64, 64))
    other = cam.gradcam(nested_model, image, method=method, target_class=(heatmap.target_class + 1) % 3)
    assert not np.allclose(heatmap.values, other.values, atol=1e-3)
    expected = nested_model(image[None].astype("float32"), training=False).numpy()[0]
    assert heatmap.probability == pytest.approx(float(expected[heatmap.target_class]), abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backbone", "last"), [("efficientnet_b0", "top_activation"), ("resnet50", "conv5_block3_out")]
)
def test_other_nested_backbones(backbone, last, rng):
    keras.utils.set_random_seed(2)
    model = build_model(backbone, 3, (64, 64), weights=None, head=CLASSIFICATION.head)
    image = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    heatmap = cam.gradcam(model, image)
    assert heatmap.layer == f"backbone/{last}"
    assert_valid_map(heatmap, (64, 48))
    assert heatmap.values.max() > 0


def test_candidate_layers_flat_and_nested(nested_model):
    flat = layers.candidate_layers(build_tiny_model())
    assert flat[0] == "conv1" and flat[-1] == "relu3"
    assert "preprocess" not in flat and "pool" not in flat and "predictions" not in flat
    nested = layers.candidate_layers(nested_model)
    assert nested[0] == "backbone/Conv1" and nested[-1] == "backbone/out_relu"
    assert all(name.startswith("backbone/") for name in nested)
    assert layers.default_layer(nested_model) == "backbone/out_relu"


def test_layer_chosen_by_name(tiny_predictor, nested_model, rng):
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert cam.gradcam(tiny_predictor, image, layer="relu2").raw.shape == (16, 16)
    big = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    qualified = cam.gradcam(nested_model, big, layer="backbone/block_13_expand_relu")
    bare = cam.gradcam(nested_model, big, layer="block_13_expand_relu")
    assert qualified.layer == bare.layer == "backbone/block_13_expand_relu"
    assert qualified.raw.shape == (4, 4)  # stride 16 at 64x64, where out_relu is 2x2
    np.testing.assert_allclose(qualified.values, bare.values)


@pytest.mark.parametrize(
    ("layer", "says"),
    [
        ("no_such_layer", "has no layer 'no_such_layer'"),
        ("pool", "not a 4-D feature map"),
        ("predictions", "not a 4-D feature map"),
        ("preprocess", "before the first convolution"),
    ],
)
def test_unusable_layer_is_a_clear_error(tiny_predictor, layer, says):
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ModelError) as caught:
        cam.gradcam(tiny_predictor, image, layer=layer)
    message = str(caught.value)
    assert isinstance(caught.value, ImgrecError)
    assert says in message and f"'{layer}'" in message
    assert "Expected one of: conv1" in message and "relu3" in message


def test_nested_error_lists_qualified_choices(nested_model):
    with pytest.raises(ModelError, match=r"backbone/out_relu \(the last 12 of \d+; see candidate_layers\(\)\)"):
        layers.resolve_layer(nested_model, "out_relu_typo")


def test_other_bad_arguments(tiny_predictor):
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ModelError, match="Unknown explanation method 'cam'. Expected one of: gradcam, gradcam\\+\\+"):
        cam.gradcam(tiny_predictor, image, method="cam")
    with pytest.raises(ModelError, match="target_class=3. Expected 0 to 2"):
        cam.gradcam(tiny_predictor, image, target_class=3)
    with pytest.raises(ModelError, match="Unknown target class 'horse'"):
        cam.gradcam(tiny_predictor, image, target_class="horse")
    with pytest.raises(ImageError, match="dtype float32"):
        cam.gradcam(tiny_predictor, image.astype(np.float32))
    with pytest.raises(ImageError, match=r"shape \(32, 32\)"):
        cam.gradcam(tiny_predictor, image[..., 0])


def test_colorize_overlay_and_png(rng):
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    ramp = np.tile(np.linspace(0, 1, 30, dtype=np.float32), (20, 1))
    for colormap in render.COLORMAPS:
        colors = render.colorize(ramp, colormap)
        assert colors.shape == (20, 30, 3) and colors.dtype == np.uint8
    jet = render.colorize(ramp, "jet")
    assert jet[0, 0, 2] > 100 and jet[0, 0, 0] < 50  # cold end is blue
    assert jet[0, -1, 0] > 100 and jet[0, -1, 2] < 50  # hot end is red
    np.testing.assert_array_equal(render.overlay(image, ramp, alpha=0.0), image)
    np.testing.assert_array_equal(render.overlay(image, ramp, alpha=1.0), jet)
    small = render.overlay(image, ramp[::2, ::3])  # a map of another size is resized to the image
    assert small.shape == image.shape and small.dtype == np.uint8
    with pytest.raises(ImgrecError, match="Unknown colormap 'rainbow'"):
        render.overlay(image, ramp, colormap="rainbow")
    decoded = np.asarray(Image.open(io.BytesIO(render.to_png_bytes(image))))
    np.testing.assert_array_equal(decoded, image)
    grey = np.asarray(Image.open(io.BytesIO(render.to_png_bytes(ramp))))
    assert grey.shape == (20, 30) and grey[0, 0] == 0 and grey[0, -1] == 255


def test_deletion_insertion_shapes_and_ends(tiny_predictor, rng):
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    heatmap = cam.gradcam(tiny_predictor, image)
    result = faithfulness.deletion_insertion(tiny_predictor, image, heatmap, steps=8, random_maps=2)
    assert result.target_class == heatmap.target_class
    assert result.fractions.shape == result.deletion.shape == result.insertion.shape == (9,)
    assert result.random_deletion.shape == result.random_insertion.shape == (9,)
    # Nothing deleted / everything inserted is the untouched image, for the map and for random maps.
    for curve in (result.deletion[0], result.insertion[-1], result.random_deletion[0], result.random_insertion[-1]):
        assert curve == pytest.approx(heatmap.probability, abs=1e-5)
    assert result.deletion[-1] == pytest.approx(result.insertion[0], abs=1e-5)  # both: all baseline
    for auc in (result.deletion_auc, result.insertion_auc, result.random_deletion_auc, result.random_insertion_auc):
        assert 0.0 <= auc <= 1.0
    with pytest.raises(ImgrecError, match="Unknown baseline 'noise'"):
        faithfulness.deletion_insertion(tiny_predictor, image, heatmap, baseline="noise")


# ---- the real ImageNet model on a real photo ------------------------------------------------


@pytest.fixture(scope="module")
def cat(photos_dir):
    return decode_image(photos_dir / "cat.jpg").pixels


@pytest.mark.slow
@pytest.mark.parametrize("method", cam.METHODS)
def test_heatmap_is_on_the_cat(imagenet_predictor, cat, method):
    heatmap = cam.gradcam(imagenet_predictor, cat, method=method)
    assert cam.explainer(imagenet_predictor, method=method).uses_logits  # the head inside the backbone
    assert "cat" in heatmap.label and heatmap.probability > 0.5
    assert heatmap.layer == "backbone/out_relu"
    assert_valid_map(heatmap, cat.shape[:2])
    x0, y0, x1, y1 = CAT_BOX
    y, x = np.unravel_index(np.argmax(heatmap.values), heatmap.values.shape)
    assert x0 <= x < x1 and y0 <= y < y1, (x, y)
    # Most of the hottest tenth lies on the cat (the box is 55 % of the photo; we see ~95 %).
    hot = heatmap.values >= np.quantile(heatmap.values, 0.9)
    assert hot[y0:y1, x0:x1].sum() / hot.sum() > 0.8


@pytest.mark.slow
def test_gradcam_beats_random_maps_on_deletion_and_insertion(imagenet_predictor, cat):
    heatmap = cam.gradcam(imagenet_predictor, cat)
    result = faithfulness.deletion_insertion(imagenet_predictor, cat, heatmap, random_maps=2)
    assert result.fractions.shape == (17,)
    assert result.deletion[0] == pytest.approx(heatmap.probability, abs=1e-4)
    # Measured: deletion 0.08 vs ~0.3 random, insertion 0.66 vs ~0.3 random; wide margins.
    assert result.deletion_auc < result.random_deletion_auc - 0.1
    assert result.insertion_auc > result.random_insertion_auc + 0.1
    assert result.better_than_random
