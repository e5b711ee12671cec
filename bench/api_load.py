"""Load test of the REST API on 127.0.0.1 with the real default model: micro-batching on vs off.

For each mode it starts ``python -m imgrec serve`` on a free local port with a fresh prediction log,
sends a fixed number of ``POST /predict`` requests from concurrent clients (threads with httpx),
stops the server, and prints requests/s, latency percentiles, errors, the mean batch size, and
whether the log holds exactly one row per successful request.

Run: ``make bench`` or ``.venv/bin/python bench/api_load.py [--requests 320] [--concurrency 16]``
(KERAS_HOME as in the Makefile).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from common import machine

from imgrec import registry
from imgrec.config import IMAGENET_MODEL_NAME, PROJECT_ROOT, Settings, get_settings
from tests.servers import free_port, start, stop, wait_until_ready

HOST = "127.0.0.1"  # never anything but this machine


def sample_image(settings: Settings) -> tuple[str, bytes]:
    for folder in (settings.samples_dir, settings.shared_data_dir.parent / "photos"):
        photo = Path(folder) / "cat.jpg"
        if photo.is_file():
            return photo.name, photo.read_bytes()
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return "noise.jpg", buffer.getvalue()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def run_mode(name: str, models_dir: Path, batch_max_size: int, image: tuple[str, bytes], requests: int,
             concurrency: int) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix=f"imgrec-bench-{name}-"))
    port = free_port()
    url = f"http://{HOST}:{port}"
    env = {
        **os.environ,
        "IMGREC_MODELS_DIR": str(models_dir),
        "IMGREC_DATA_DIR": str(data_dir),
        "IMGREC_DATABASE_URL": "",
        "IMGREC_BATCH_MAX_SIZE": str(batch_max_size),
        "IMGREC_BATCH_QUEUE_SIZE": str(max(256, concurrency * 2)),
    }
    log_path = data_dir / "server.log"
    server = start([sys.executable, "-m", "imgrec", "serve", "--host", HOST, "--port", str(port)],
                   log_path=log_path, cwd=PROJECT_ROOT, env=env)
    try:
        wait_until_ready(server, f"{url}/health/ready", log_path, timeout=180)

        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        counter = iter(range(requests))
        files = {"files": (image[0], image[1], "image/jpeg")}

        def client() -> None:
            with httpx.Client(base_url=url, timeout=120, headers={"User-Agent": "imgrec-bench/1"}) as http:
                # One untimed request per client warms the connection and every batch size path.
                http.post("/predict", files=files)
                barrier.wait()
                while True:
                    with lock:
                        if next(counter, None) is None:
                            return
                    started = time.perf_counter()
                    try:
                        response = http.post("/predict", files=files)
                        failed = None if response.status_code == 200 else f"{response.status_code} {response.text[:100]}"
                    except httpx.HTTPError as exc:
                        failed = f"{type(exc).__name__}: {exc}"
                    elapsed = (time.perf_counter() - started) * 1000
                    with lock:
                        (errors.append(failed) if failed else latencies.append(elapsed))

        barrier = threading.Barrier(concurrency + 1)
        threads = [threading.Thread(target=client) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        barrier.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started

        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        batch_sum = batch_count = 0.0
        for line in metrics.splitlines():
            if line.startswith("imgrec_batch_size_sum"):
                batch_sum = float(line.split()[-1])
            elif line.startswith("imgrec_batch_size_count"):
                batch_count = float(line.split()[-1])
    finally:
        stop(server, timeout=30)

    from imgrec.store import Store

    with Store(f"sqlite:///{data_dir / 'imgrec.db'}") as store:
        rows = store.count_predictions()
    sent_ok = len(latencies) + concurrency  # the warm-up requests are logged too
    return {
        "name": name,
        "requests": requests,
        "seconds": seconds,
        "rps": len(latencies) / seconds,
        "p50": percentile(latencies, 0.50) if latencies else float("nan"),
        "p95": percentile(latencies, 0.95) if latencies else float("nan"),
        "p99": percentile(latencies, 0.99) if latencies else float("nan"),
        "mean": statistics.fmean(latencies) if latencies else float("nan"),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "mean_batch": batch_sum / batch_count if batch_count else float("nan"),
        "rows": rows,
        "rows_match": rows == sent_ok,
        "expected_rows": sent_ok,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=320, help="timed requests per mode")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=get_settings().batch_max_size, help="batching on: max batch")
    args = parser.parse_args()

    settings = get_settings()
    models_dir = settings.models_dir
    if not registry.versions(IMAGENET_MODEL_NAME, settings):
        models_dir = Path(tempfile.mkdtemp(prefix="imgrec-bench-models-"))
        settings = Settings(models_dir=models_dir, data_dir=Path(tempfile.mkdtemp()))
    registry.ensure_default_model(settings)
    image = sample_image(get_settings())

    print(f"machine: {machine()}")
    print(f"model: imagenet-mobilenetv2 (MobileNetV2 1.0, 224x224), TensorFlow CPU; one uvicorn worker on {HOST}")
    print(f"load: {args.requests} timed requests of one {len(image[1]) / 1024:.0f} kB JPEG ({image[0]}) "
          f"from {args.concurrency} concurrent clients, after one warm-up request each")
    results = []
    for name, size in (("batching on", args.batch_size), ("batching off", 1)):
        result = run_mode(name, models_dir, size, image, args.requests, args.concurrency)
        results.append(result)
        print(
            f"{name:13s} (max batch {size:2d}): {result['rps']:6.1f} req/s   "
            f"p50 {result['p50']:7.1f} ms  p95 {result['p95']:7.1f} ms  p99 {result['p99']:7.1f} ms   "
            f"errors {result['errors']}   mean batch {result['mean_batch']:.1f}   "
            f"logged rows {result['rows']} == requests {result['expected_rows']}: {result['rows_match']}"
            + (f"   first error: {result['first_error']}" if result["errors"] else ""),
            flush=True,
        )
    on, off = results
    print(f"throughput, batching on / off at concurrency {args.concurrency}: x{on['rps'] / off['rps']:.2f}")


if __name__ == "__main__":
    main()
