"""What a YOLO-style detector's raw heads mean: input size, anchors and which anchors each head uses."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class YoloHeadSpec:
    """Read from a Darknet ``.cfg`` (its ``[net]`` and ``[yolo]`` sections) or from a detector's model card.

    ``masks[i]`` lists the anchors of the raw model's output ``i``, in the model's output order.
    """

    input_size: tuple[int, int]  # (height, width) the network takes
    anchors: tuple[tuple[int, int], ...]  # (width, height) in input pixels
    masks: tuple[tuple[int, ...], ...]
    num_classes: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> YoloHeadSpec:
        return cls(
            input_size=tuple(data["input_size"]),
            anchors=tuple(tuple(anchor) for anchor in data["anchors"]),
            masks=tuple(tuple(mask) for mask in data["masks"]),
            num_classes=int(data["num_classes"]),
        )
