"""The API's Prometheus metrics: one ``Metrics`` (a registry of its own) per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class Metrics:
    """The app's Prometheus metrics, in a registry of its own (several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "imgrec_http_requests", "HTTP requests by route, method and status.", ["route", "method", "status"],
            registry=r,
        )
        self.request_latency = Histogram(
            "imgrec_http_request_duration_seconds", "Time from request to response, by route.", ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r,
        )
        self.inference_latency = Histogram(
            "imgrec_inference_duration_seconds", "Time of one inference call (one whole batch), by model and runtime.",
            ["model", "runtime"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.queue_wait = Histogram(
            "imgrec_batch_queue_wait_seconds", "Time a request's images waited in the queue before their batch ran.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=r,
        )
        self.batch_size = Histogram(
            "imgrec_batch_size", "Images per inference call.", buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r
        )
        self.predictions = Counter("imgrec_predictions", "Predictions by top-1 label.", ["label"], registry=r)
        self.overloaded = Counter(
            "imgrec_overloaded_requests", "Requests refused with 503 because the queue was full.", registry=r
        )
        self.client_disconnects = Counter(
            "imgrec_client_disconnects", "Requests whose client hung up before the body was read (status 499).",
            registry=r,
        )
        self.model_load = Gauge(
            "imgrec_model_load_seconds", "Seconds the served model took to load and warm up.", registry=r
        )
        self.model_info = Info("imgrec_model", "The model being served.", registry=r)
        self.model_loads = Counter(
            "imgrec_model_query_loads", "Models loaded for ?model= (one load per model, however many asked).",
            ["model"], registry=r,
        )
        self.reloads = Counter("imgrec_model_reloads", "Model reloads by outcome.", ["outcome"], registry=r)
        self.queue_depth = Gauge("imgrec_batch_queue_depth", "Requests waiting for a batch.", registry=r)
        self.model_ready = Gauge("imgrec_model_ready", "1 while a model is loaded and serving, else 0.", registry=r)
        self.log_failures = Counter(
            "imgrec_prediction_log_failures", "Predictions answered but not written to the prediction log.",
            registry=r,
        )

    def observe_run(self, predictor, images: int, seconds: float, waits=()) -> None:
        """One inference call of ``predictor`` on ``images`` images; ``waits``: each request's time in the queue."""
        self.batch_size.observe(images)
        self.inference_latency.labels(predictor.card.ref, predictor.backend_name).observe(seconds)
        for wait in waits:
            self.queue_wait.observe(wait)

    def model_loaded(self, card, seconds: float) -> None:
        self.model_load.set(seconds)
        self.model_info.info(card.identity())


class SpoolCollector:
    """The prediction log's spool (``imgrec.predlog.spool``) as metrics, read when scraped."""

    def __init__(self, stats):
        self.stats = stats  # () -> Spool.stats() dict

    def collect(self):
        stats = self.stats()
        for name, key, text in (
            ("imgrec_log_spooled", "spooled", "Predictions the database refused or did not take in time, kept in the spool."),
            ("imgrec_log_replayed", "replayed", "Spooled predictions written to the database later."),
            ("imgrec_log_dropped", "dropped", "Predictions not logged at all: the spool was full or unwritable."),
        ):
            yield CounterMetricFamily(name, text, value=stats[key])
        yield GaugeMetricFamily("imgrec_log_spool_records", "Predictions waiting in the spool.", value=stats["records"])
        yield GaugeMetricFamily("imgrec_log_spool_bytes", "Bytes the spool holds.", value=stats["bytes"])
