"""Known contents for the app's pages, shared by the AppTest and the browser tests of a page."""

from __future__ import annotations

from datetime import datetime, timedelta

from imgrec.export import exporter
from imgrec.predlog.store import open_store
from imgrec.registry import catalog
from tests.helpers.models import build_tiny_model, tiny_card
from tests.helpers.settings import make_settings
from tests.helpers.store_fixtures import make_record

ANALYTICS_START = datetime(2026, 11, 1, 9, 0)


def seed_analytics_log(settings) -> None:
    """The Analytics page's log: 40 predictions over 20 days, cats (confident, app) then dogs (unsure, api);
    3 cat rows flagged."""
    with open_store(settings) as store:
        ids = []
        for i in range(40):
            cat = i < 20
            ids.append(store.log_prediction(make_record(
                i, label="cat" if cat else "dog", score=0.9 if cat else 0.4, source="app" if cat else "api",
                latency_ms=10 + i, created_at=ANALYTICS_START + timedelta(days=i // 2),
            )))
        for prediction_id in ids[:3]:
            store.add_feedback(prediction_id, corrected_label="lynx", wrong=True, note="ears")


SEEDED_FORMATS = ["tflite-fp32", "tflite-int8", "onnx"]  # the quick ones; the rest show as not exported


def seed_models(root, exported: bool = True):
    """The Models page's registry: tiny-cnn@1 (active, exported to three formats) and tiny-cnn@2 (better metrics,
    not exported)."""
    settings = make_settings(root)
    model = build_tiny_model()
    catalog.save_model(model, tiny_card().with_updates(metrics={"val_accuracy": 0.8, "val_loss": 0.6}), settings)
    catalog.save_model(model, tiny_card().with_updates(
        metrics={"val_accuracy": 0.85, "val_loss": 0.5, "test": {"accuracy": 0.83}},
        description="Fine-tuned for two more epochs."), settings)
    catalog.set_active_model("tiny-cnn", "1", settings)
    if exported:
        exporter.export_model("tiny-cnn", "1", SEEDED_FORMATS, settings)
    return settings


def seed_task_analytics_log(settings) -> dict[str, int]:
    """The Analytics page's per-task sections: two detector photos (a street, a garden with an unsure person),
    a multi-label street photo whose bicycle is unsure, and three frames of one video; returns their ids."""
    def boxes(*found):
        return [(label, score, 10.0 * i, 10.0 * i, 10.0 * i + 40, 10.0 * i + 60) for i, (label, score) in
                enumerate(found)]

    with open_store(settings) as store:
        street = boxes(("person", 0.92), ("car", 0.81), ("person", 0.66))
        garden = boxes(("dog", 0.88), ("person", 0.31))
        found = [("person", 0.9, 0.5), ("car", 0.8, 0.5), ("bicycle", 0.42, 0.4)]
        ids = {
            "street": store.log_prediction(make_record(
                "street", model_name="coco-yolo-fastest", top_k=[b[:2] for b in street], detections=street,
                filename="street.jpg", created_at=ANALYTICS_START)),
            "garden": store.log_prediction(make_record(
                "garden", model_name="coco-yolo-fastest", top_k=[b[:2] for b in garden], detections=garden,
                filename="garden.jpg", created_at=ANALYTICS_START + timedelta(days=1))),
            "tags": store.log_prediction(make_record(
                "tags", model_name="street-tags", top_k=[item[:2] for item in found] + [("dog", 0.05)],
                label_set=found, filename="tags.jpg", created_at=ANALYTICS_START + timedelta(days=1))),
        }
        for index in (0, 10, 20):
            store.log_prediction(make_record(
                "bikes.mp4", label="bicycle", score=0.8, source="video", filename="bikes.mp4",
                created_at=ANALYTICS_START + timedelta(days=1, seconds=index),
                metadata={"video": {"frame": index, "time_s": index / 25, "fps": 25.0}}))
    return ids
