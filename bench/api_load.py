"""Load test of the REST API on 127.0.0.1 with the real default model: micro-batching on vs off.

For each mode it starts ``python -m imgrec serve`` on a free local port with a fresh prediction log;
both servers stay up while the modes take turns in segments (on, off, off, on, ... so neither mode
always goes first and a drift in the shared machine's load hits both alike). Each segment sends a
fixed number of ``POST /predict`` requests from concurrent clients (threads with httpx). At the end it
stops the servers and prints, per mode, requests/s, latency percentiles, errors, the mean batch size,
and whether the log holds exactly one row per successful request.

Run: ``make bench`` or ``.venv/bin/python bench/api_load.py [--requests 320] [--concurrency 16] [--segments 2]``
(KERAS_HOME as in the Makefile).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from common import default_model_settings, machine, sample_photo

from imgrec.core.settings import PROJECT_ROOT, get_settings
from tests.helpers.servers import free_port, start, stop, wait_until_ready

HOST = "127.0.0.1"  # never anything but this machine


def sample_image() -> tuple[str, bytes]:
    photo = sample_photo("cat.jpg")
    if photo is not None:
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


@dataclass
class Mode:
    """One server (one batching mode) and what its segments measured so far."""

    name: str
    batch_max_size: int
    url: str
    data_dir: Path
    process: subprocess.Popen
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warmups_ok: int = 0
    seconds: float = 0.0
    segment_rps: list[float] = field(default_factory=list)


def start_mode(name: str, models_dir: Path, batch_max_size: int, concurrency: int) -> Mode:
    """``python -m imgrec serve`` on a free local port with a fresh prediction log, once it answers."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"imgrec-bench-{name.replace(' ', '-')}-"))
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
    process = start([sys.executable, "-m", "imgrec", "serve", "--host", HOST, "--port", str(port)],
                    log_path=log_path, cwd=PROJECT_ROOT, env=env)
    try:
        wait_until_ready(process, f"{url}/health/ready", log_path, timeout=180)
    except BaseException:
        stop(process, timeout=30)
        raise
    return Mode(name, batch_max_size, url, data_dir, process)


def run_segment(mode: Mode, image: tuple[str, bytes], requests: int, concurrency: int) -> None:
    """``requests`` timed ``POST /predict`` from ``concurrency`` clients, after one untimed request each."""
    latencies: list[float] = []
    errors: list[str] = []
    warmups_ok = 0
    lock = threading.Lock()
    counter = iter(range(requests))
    files = {"files": (image[0], image[1], "image/jpeg")}

    def client() -> None:
        nonlocal warmups_ok
        with httpx.Client(base_url=mode.url, timeout=120, headers={"User-Agent": "imgrec-bench/1"}) as http:
            # One untimed request per client warms the connection and every batch size path.
            try:
                warm_ok = http.post("/predict", files=files).status_code == 200
            except httpx.HTTPError:
                warm_ok = False
            with lock:
                warmups_ok += warm_ok
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

    mode.latencies += latencies
    mode.errors += errors
    mode.warmups_ok += warmups_ok
    mode.seconds += seconds
    mode.segment_rps.append(len(latencies) / seconds)


def finish_mode(mode: Mode) -> dict:
    """Read the server's batch sizes, stop it, and check its log holds one row per successful request."""
    batch_sum = batch_count = 0.0
    try:
        metrics = httpx.get(f"{mode.url}/metrics", timeout=10).text
        for line in metrics.splitlines():
            if line.startswith("imgrec_batch_size_sum"):
                batch_sum = float(line.split()[-1])
            elif line.startswith("imgrec_batch_size_count"):
                batch_count = float(line.split()[-1])
    finally:
        stop(mode.process, timeout=30)

    from imgrec.predlog.store import Store

    with Store(f"sqlite:///{mode.data_dir / 'imgrec.db'}") as store:
        rows = store.count_predictions()
    latencies, errors = mode.latencies, mode.errors
    sent_ok = len(latencies) + mode.warmups_ok  # the warm-up requests are logged too
    return {
        "name": mode.name,
        "requests": len(latencies) + len(errors),
        "seconds": mode.seconds,
        "rps": len(latencies) / mode.seconds,
        "segment_rps": mode.segment_rps,
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


def split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` near-equal counts."""
    return [total // parts + (index < total % parts) for index in range(parts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=320, help="timed requests per mode")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=get_settings().batch_max_size, help="batching on: max batch")
    parser.add_argument("--segments", type=int, default=2,
                        help="segments per mode; the modes take turns, and which goes first alternates")
    args = parser.parse_args()
    if args.segments < 1 or args.requests < args.segments:
        parser.error("need at least one segment and one request per segment")

    models_dir = default_model_settings().models_dir
    image = sample_image()
    segments = split(args.requests, args.segments)
    order = []
    for index in range(args.segments):
        order += [("batching on", "batching off"), ("batching off", "batching on")][index % 2]

    print(f"machine: {machine()}")
    print(f"model: imagenet-mobilenetv2 (MobileNetV2 1.0, 224x224), TensorFlow CPU; one uvicorn worker on {HOST} "
          f"per mode, both servers up for the whole run")
    print(f"load: {args.requests} timed requests per mode of one {len(image[1]) / 1024:.0f} kB JPEG ({image[0]}) "
          f"from {args.concurrency} concurrent clients, in {args.segments} segment(s) of "
          f"{'/'.join(str(n) for n in segments)} requests, each after one warm-up request per client")
    print(f"order: {', '.join(name.split()[1] for name in order)}")

    modes: dict[str, Mode] = {}
    results = {}
    try:
        for name, size in (("batching on", args.batch_size), ("batching off", 1)):
            modes[name] = start_mode(name, models_dir, size, args.concurrency)
        for index, name in enumerate(order):
            run_segment(modes[name], image, segments[index // 2], args.concurrency)
        for name in list(modes):
            results[name] = finish_mode(modes.pop(name))
    finally:
        for mode in modes.values():  # only after a failure
            stop(mode.process, timeout=30)
    for name, result in results.items():
        size = args.batch_size if name == "batching on" else 1
        print(
            f"{name:13s} (max batch {size:2d}): {result['rps']:6.1f} req/s   "
            f"p50 {result['p50']:7.1f} ms  p95 {result['p95']:7.1f} ms  p99 {result['p99']:7.1f} ms   "
            f"errors {result['errors']}   mean batch {result['mean_batch']:.1f}   "
            f"logged rows {result['rows']} == requests {result['expected_rows']}: {result['rows_match']}"
            + (f"   first error: {result['first_error']}" if result["errors"] else ""),
            flush=True,
        )
        if len(result["segment_rps"]) > 1:
            print(f"{'':13s} req/s by segment: {', '.join(f'{rps:.1f}' for rps in result['segment_rps'])}")
    on, off = results["batching on"], results["batching off"]
    print(f"throughput, batching on / off at concurrency {args.concurrency}: x{on['rps'] / off['rps']:.2f}")


if __name__ == "__main__":
    main()
