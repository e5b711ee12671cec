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
