"""Multi-label Keras losses on sigmoid probabilities: binary cross-entropy, focal and asymmetric (ASL).

One loss covers all three (Ridnik et al. 2021, "Asymmetric Loss for Multi-Label Classification"):
positives weigh ``(1 - p)^gamma_pos · log p``, negatives ``p_m^gamma_neg · log(1 - p_m)`` with the
probability shifted down by ``clip`` (``p_m = max(p - clip, 0)``), which discards easy negatives.
BCE is gammas 0 and clip 0; focal is equal gammas and clip 0. ``positive_weights`` (one per class, from
label frequencies) scale the positive term of each class.
"""

from __future__ import annotations

import keras
from keras import ops

EPSILON = 1e-7


@keras.saving.register_keras_serializable(package="imgrec")
class AsymmetricLoss(keras.losses.Loss):
    def __init__(self, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05,
                 positive_weights: list[float] | None = None, name: str = "asymmetric_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.gamma_pos = float(gamma_pos)
        self.gamma_neg = float(gamma_neg)
        self.clip = float(clip)
        self.positive_weights = None if positive_weights is None else [float(w) for w in positive_weights]

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        p = ops.clip(ops.cast(y_pred, "float32"), EPSILON, 1.0 - EPSILON)
        shifted = ops.maximum(p - self.clip, 0.0) if self.clip > 0 else p
        positive = ops.log(p)
        if self.gamma_pos:
            positive = positive * ops.power(1.0 - p, self.gamma_pos)
        if self.positive_weights is not None:
            positive = positive * ops.convert_to_tensor(self.positive_weights, "float32")
        negative = ops.log(ops.clip(1.0 - shifted, EPSILON, 1.0))
        if self.gamma_neg:
            negative = negative * ops.power(shifted, self.gamma_neg)
        return -ops.mean(y_true * positive + (1.0 - y_true) * negative, axis=-1)

    def get_config(self):
        return {**super().get_config(), "gamma_pos": self.gamma_pos, "gamma_neg": self.gamma_neg,
                "clip": self.clip, "positive_weights": self.positive_weights}


def binary_crossentropy(positive_weights=None) -> AsymmetricLoss:
    return AsymmetricLoss(0.0, 0.0, 0.0, positive_weights, name="binary_crossentropy")


def focal(gamma: float, positive_weights=None) -> AsymmetricLoss:
    return AsymmetricLoss(gamma, gamma, 0.0, positive_weights, name="focal")


def asymmetric(positive_weights=None, gamma_pos: float = 0.0, gamma_neg: float = 4.0,
               clip: float = 0.05) -> AsymmetricLoss:
    """ASL with the paper's defaults for multi-label sets (γ+ 0, γ− 4, margin 0.05)."""
    return AsymmetricLoss(gamma_pos, gamma_neg, clip, positive_weights, name="asymmetric")
