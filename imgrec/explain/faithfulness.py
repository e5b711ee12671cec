"""Faithfulness of a heatmap: deletion and insertion curves against random maps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgrec.core.errors import ImgrecError
from imgrec.explain.cam import Heatmap, OutputLayout, check_image, model_parts
from imgrec.explain.render import heat_values
from imgrec.inference.runtimes import MAX_BATCH

BASELINES = ("blur", "black", "gray")
MAX_STEPS = MAX_BATCH - 1  # deletion/insertion: steps + 1 images fit one Predictor batch


@dataclass(frozen=True, eq=False)
class Faithfulness:
    """Deletion and insertion curves (Petsiuk et al., RISE, 2018) of a heatmap and of random maps.

    Deletion: the most salient pixels are replaced by the baseline first; a faithful map makes
    the target probability fall fast, so a LOW area under the curve is good. Insertion: the most
    salient pixels are put back into the baseline first; a HIGH area is good.
    """

    target_class: int
    output_index: int | None  # a detector's output row scored (None for a classifier)
    baseline: str
    fractions: np.ndarray  # (steps + 1,) fraction of pixels deleted / inserted, 0 .. 1
    deletion: np.ndarray  # target-class probability along the deletion curve
    insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float
    random_deletion: np.ndarray  # the same for random maps (mean over ``random_maps`` maps)
    random_insertion: np.ndarray
    random_deletion_auc: float
    random_insertion_auc: float

    @property
    def better_than_random(self) -> bool:
        return self.deletion_auc < self.random_deletion_auc and self.insertion_auc > self.random_insertion_auc


def deletion_insertion(
    model,
    image,
    heatmap,
    target_class: int | str | None = None,
    steps: int = 16,
    baseline: str = "blur",
    random_maps: int = 3,
    seed: int = 0,
) -> Faithfulness:
    """Deletion and insertion AUCs of ``heatmap`` for ``target_class``, and of random maps for reference.

    ``target_class`` is anything ``CAM`` explains (a class, a ``ClassTarget``, a detector's
    ``BoxTarget``); for a detection the curve is the score of the same output row, as the model
    sees less or more of the image.
    Works at the model's input size. Each curve is ONE batched inference of ``steps + 1`` images
    (0 %, 1/steps, ... 100 % of the pixels changed, most salient first); ``steps`` is at most 31
    so that a Predictor, which splits batches above 32, still makes one call. ``target_class`` None
    means the heatmap's target (or the top prediction for a bare array). The random maps are
    smooth, at the heatmap's own resolution, so the comparison is about *where*, not *how blobby*.
    """
    import cv2

    keras_model, prepare, class_names = model_parts(model, None)
    predict = batch_predictor(model)
    if baseline not in BASELINES:
        raise ImgrecError(f"Unknown baseline '{baseline}'. Expected one of: {', '.join(BASELINES)}.")
    if not 2 <= steps <= MAX_STEPS:
        raise ImgrecError(f"steps={steps}. Expected 2 to {MAX_STEPS}.")
    pixels = prepare([check_image(image)])[0]
    height, width = pixels.shape[:2]
    values = heat_values(heatmap)
    if values.shape != (height, width):
        values = cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
    layout = OutputLayout.of(keras_model)
    if target_class is None and isinstance(heatmap, Heatmap):
        target = layout.flat(heatmap.output_index, heatmap.target_class)
    else:
        target = layout.flat_index(target_class, class_names)
    filler = _baseline(pixels, baseline)
    rng = np.random.default_rng(seed)
    fractions = np.linspace(0.0, 1.0, steps + 1)

    def curves(saliency: np.ndarray, target: int):
        # Rank pixels by saliency (ties in random order), then mask the top k for every step at once.
        order = np.lexsort((rng.random(saliency.size), -saliency.ravel()))
        rank = np.empty(saliency.size, np.int64)
        rank[order] = np.arange(saliency.size)
        counts = np.round(fractions * saliency.size).astype(np.int64)
        masks = (rank.reshape(height, width)[None] < counts[:, None, None])[..., None]
        deleted = predict(np.where(masks, filler, pixels))
        if target < 0:
            target = int(np.asarray(layout.best(deleted[:1].reshape(1, -1)))[0])  # step 0 is the untouched image
        inserted = predict(np.where(masks, pixels, filler))
        return layout.scores(deleted, target), layout.scores(inserted, target), target

    deletion, insertion, target = curves(values, target)
    grid = heatmap.raw.shape if isinstance(heatmap, Heatmap) else (7, 7)
    random_curves = [
        curves(cv2.resize(rng.random(grid).astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR), target)
        for _ in range(max(1, random_maps))
    ]
    random_deletion = np.mean([c[0] for c in random_curves], axis=0)
    random_insertion = np.mean([c[1] for c in random_curves], axis=0)
    output_index, target_class = layout.position(target)
    return Faithfulness(
        target_class=target_class,
        output_index=output_index,
        baseline=baseline,
        fractions=fractions,
        deletion=deletion,
        insertion=insertion,
        deletion_auc=_auc(fractions, deletion),
        insertion_auc=_auc(fractions, insertion),
        random_deletion=random_deletion,
        random_insertion=random_insertion,
        random_deletion_auc=_auc(fractions, random_deletion),
        random_insertion_auc=_auc(fractions, random_insertion),
    )


def _auc(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def _baseline(pixels: np.ndarray, kind: str) -> np.ndarray:
    import cv2

    if kind == "blur":
        # Strong enough to remove object detail (sigma ~ 1/20 of the image side) but keep colours.
        sigma = max(pixels.shape[:2]) / 20.0
        return cv2.GaussianBlur(pixels, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    if kind == "black":
        return np.zeros_like(pixels)
    return np.full_like(pixels, 128)


def batch_predictor(model):
    """predict(uint8 batch) -> probabilities: a Predictor's compiled function, or a plain Keras model
    called as it is (the app always passes a Predictor; a plain model serves notebooks and tests)."""
    if hasattr(model, "predict_batch") and hasattr(model, "card"):
        return model.predict_batch
    return lambda batch: np.asarray(model(np.asarray(batch, np.float32), training=False), np.float32)
