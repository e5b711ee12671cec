"""Training runs on disk: one directory per run, a status JSON, a FIFO queue with one training slot.

    <data_dir>/runs/<run_id>/
        config.yaml        the RunConfig
        status.json        state, pid, progress, ETA, result (written atomically)
        metrics.jsonl      one JSON line per finished epoch
        train.log          the worker's output
        state.json         training progress used to resume (phase, epoch, best, patience)
        checkpoints/       last.weights.h5 (every epoch), best.weights.h5
        cancel             flag file: the worker stops at the next batch end, keeping the checkpoint

The status file is the truth: a run is a process plus files, and the files survive whatever kills
the process. Every status write is also mirrored, best effort, to the ``training_runs`` table of
the prediction log, so runs can be queried beside predictions; a database that is down never
slows or stops training (after a failure the mirror pauses for ``MIRROR_RETRY_SECONDS``). A worker
that died (SIGKILL, OOM, reboot) is detected on read from its PID and start time, recorded as
``interrupted``, never left ``running`` forever.

Only one run trains at a time: a worker must hold an exclusive ``flock`` on ``runs/.slot.lock``
(the kernel releases it when the process dies) and be the oldest live queued run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from imgrec.core.errors import ImgrecError
from imgrec.core.files import utc_timestamp, write_atomically
from imgrec.core.settings import PROJECT_ROOT, Settings
from imgrec.training.config import RunConfig

log = logging.getLogger(__name__)


class RunError(ImgrecError):
    """A run does not exist, or cannot be cancelled or resumed in its current state."""

class Cancelled(Exception):
    """Raised inside a worker when its cancel flag appears."""

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED, INTERRUPTED = (
    "queued", "running", "completed", "failed", "cancelled", "interrupted",
)
LIVE_STATES = (QUEUED, RUNNING)
RESUMABLE_STATES = (CANCELLED, INTERRUPTED, FAILED)
FINAL_STATES = (COMPLETED, FAILED, CANCELLED, INTERRUPTED)
SLOT_LOCK = ".slot.lock"
# A queued run without a worker PID yet (just launched) counts as live this long.
LAUNCH_GRACE_SECONDS = 60
MIRROR_RETRY_SECONDS = 60
PROGRESS_INTERVAL_SECONDS = 2.0
_mirror_paused_until: dict[str, float] = {}  # database URL -> monotonic time of the next attempt
WORKER_LOG_ENV = "IMGREC_WORKER_LOG"  # "stdout": the worker's output is redirected to train.log


now = utc_timestamp  # run files use the same time stamps as cards and reports


def _mirror_status(status: dict, settings: Settings) -> None:
    """Copy a run's status to the database; failures are logged and paused, never raised."""
    from imgrec.predlog.store import open_store  # SQLAlchemy loads only when a status is mirrored

    url = settings.database_url_resolved
    if time.monotonic() < _mirror_paused_until.get(url, 0.0):
        return
    try:
        with open_store(settings) as store:
            store.record_run_status(status)
    except Exception as exc:  # noqa: BLE001 - the file is the truth; the mirror must not cost a run
        _mirror_paused_until[url] = time.monotonic() + MIRROR_RETRY_SECONDS
        log.warning("Run status of %s not mirrored to the database (retrying in %d s): %s",
                    status.get("run_id"), MIRROR_RETRY_SECONDS, exc)


def runs_dir(settings: Settings) -> Path:
    return settings.data_dir / "runs"


def new_run_id(name: str) -> str:
    slug = re.sub(r"[^a-zA-Z0-9_-]+", "-", name).strip("-")[:40] or "run"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{slug}-{secrets.token_hex(2)}"


# -- Processes -------------------------------------------------------------------------------------


def process_start_token(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (to tell a reused PID from ours), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int | None, start_token: str | None = None) -> bool:
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to a signal probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    after = stat.rsplit(")", 1)[1].split()
    if after[0] in ("Z", "X"):  # a zombie has finished; only its parent has not reaped it yet
        return False
    return start_token is None or after[19] == start_token


# -- One run ---------------------------------------------------------------------------------------


class Run:
    def __init__(self, directory: Path, settings: Settings):
        self.dir = Path(directory)
        self.id = self.dir.name
        self.settings = settings  # whose database mirrors the status
        self._last_progress = float("-inf")

    def __repr__(self) -> str:
        return f"Run({self.id!r})"

    config_path = property(lambda self: self.dir / "config.yaml")
    status_path = property(lambda self: self.dir / "status.json")
    metrics_path = property(lambda self: self.dir / "metrics.jsonl")
    log_path = property(lambda self: self.dir / "train.log")
    state_path = property(lambda self: self.dir / "state.json")
    checkpoints_dir = property(lambda self: self.dir / "checkpoints")
    cancel_path = property(lambda self: self.dir / "cancel")
    tensorboard_dir = property(lambda self: self.dir / "tensorboard")

    def exists(self) -> bool:
        return self.status_path.exists()

    def raw_status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except FileNotFoundError:
            raise RunError(f"Run '{self.id}' has no status file.") from None
        except json.JSONDecodeError:  # only possible if someone edited it by hand: writes are atomic
            return {"run_id": self.id, "state": FAILED, "error": "status.json is not valid JSON"}

    def status(self) -> dict:
        """The status with dead workers detected: a live state whose process is gone reads as interrupted."""
        status = self.raw_status()
        if status.get("state") in LIVE_STATES and not self._worker_alive(status):
            status = self.update_status(
                state=INTERRUPTED, eta_seconds=None,
                message="The training process stopped without finishing (killed or crashed). Resume it.")
        return status

    def _worker_alive(self, status: dict) -> bool:
        pid = status.get("pid")
        if pid:
            return pid_alive(pid, status.get("pid_start"))
        queued_at = status.get("queued_at") or status.get("created")
        try:
            age = time.time() - datetime.fromisoformat(queued_at).timestamp()
        except (TypeError, ValueError):
            return False
        return age < LAUNCH_GRACE_SECONDS

    @property
    def state(self) -> str:
        return self.status()["state"]

    @contextlib.contextmanager
    def _locked(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".status.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def update_status(self, **changes) -> dict:
        with self._locked():
            try:
                status = json.loads(self.status_path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                status = {"run_id": self.id}
            status.update(changes)
            status["updated"] = now()
            write_atomically(self.status_path, json.dumps(status, indent=2, default=str).encode())
            _mirror_status(status, self.settings)  # under the lock: the row gets writes in the file's order
        return status

    def report_progress(self, **changes) -> None:
        """A progress update (step, message, ETA) from a loop: written at most every
        ``PROGRESS_INTERVAL_SECONDS``, so a fast loop rewrites neither the file nor the row per batch."""
        moment = time.monotonic()
        if moment - self._last_progress >= PROGRESS_INTERVAL_SECONDS:
            self._last_progress = moment
            self.update_status(**changes)

    def config_dict(self) -> dict:
        import yaml

        return yaml.safe_load(self.config_path.read_text()) or {}

    def metrics(self) -> list[dict]:
        """Finished epochs, in order (a torn last line from a killed writer is ignored)."""
        try:
            lines = self.metrics_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        rows = []
        for line in lines:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def append_metrics(self, row: dict) -> None:
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(row, default=float) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def cancel_requested(self) -> bool:
        return self.cancel_path.exists()

    def training_state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def save_training_state(self, state: dict) -> None:
        write_atomically(self.state_path, json.dumps(state, indent=2, default=float).encode())


def get_run(run_id: str, settings: Settings) -> Run:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", run_id or ""):
        raise RunError(f"'{run_id}' is not a run id.")
    run = Run(runs_dir(settings) / run_id, settings)
    if not run.exists():
        known = ", ".join(r.id for r in list_runs(settings)[:5]) or "none"
        raise RunError(f"No run '{run_id}'. Recent runs: {known}.")
    return run


def list_runs(settings: Settings) -> list[Run]:
    """Every run, newest first."""
    root = runs_dir(settings)
    if not root.is_dir():
        return []
    runs = [Run(p, settings) for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "status.json").exists()]
    return sorted(runs, key=lambda r: r.id, reverse=True)


def create_run(config, settings: Settings) -> Run:
    """A new run directory holding ``config`` (a RunConfig or dict), queued."""
    import yaml


    config = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
    root = runs_dir(settings)
    root.mkdir(parents=True, exist_ok=True)
    run = Run(root / new_run_id(config.name), settings)
    run.dir.mkdir()
    write_atomically(run.config_path, yaml.safe_dump(config.to_dict(), sort_keys=False).encode())
    stamp = now()
    run.update_status(run_id=run.id, name=config.name, dataset=config.dataset, backbone=config.backbone,
                      state=QUEUED, created=stamp, queued_at=stamp, pid=None, epoch=0,
                      total_epochs=config.total_epochs, message="Waiting for the training slot.")
    return run


# -- Launching, cancelling, resuming ---------------------------------------------------------------

_children: list[subprocess.Popen] = []


def launch(run: Run, settings: Settings, extra_env: dict | None = None) -> int:
    """Start ``python -m imgrec train --run <id>`` as its own process (own session); returns its PID."""
    env = {**os.environ, **_settings_env(settings), WORKER_LOG_ENV: "stdout", **(extra_env or {})}
    with open(run.log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "imgrec", "train", "--run", run.id],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # a page reload or a Ctrl-C in the launcher does not kill the run
        )
    run.update_status(pid=process.pid, pid_start=process_start_token(process.pid))
    # Reap the child when it ends so it never lingers as a zombie of the launching process.
    _children.append(process)
    threading.Thread(target=process.wait, daemon=True, name=f"reap-{run.id}").start()
    return process.pid


def _settings_env(settings: Settings) -> dict[str, str]:
    return {
        "IMGREC_MODELS_DIR": str(settings.models_dir),
        "IMGREC_DATA_DIR": str(settings.data_dir),
        "IMGREC_SHARED_DATA_DIR": str(settings.shared_data_dir),
        "IMGREC_DATABASE_URL": settings.database_url,
    }


def submit(config, settings: Settings) -> Run:
    """Create a run and start its worker; it trains now, or queues behind the running one."""
    run = create_run(config, settings)
    launch(run, settings)
    return run


def cancel(run_id: str, settings: Settings) -> dict:
    """Ask a run to stop at the next safe point; a queued or dead run is marked cancelled at once."""
    run = get_run(run_id, settings)
    status = run.status()
    if status["state"] in (COMPLETED, FAILED, CANCELLED):
        raise RunError(f"Run '{run_id}' is already {status['state']}.")
    run.cancel_path.write_text(now())
    # No worker to notice the flag: dead, or queued before any worker was started (or its launch failed).
    if status["state"] == INTERRUPTED or (status["state"] == QUEUED and not status.get("pid")):
        return run.update_status(state=CANCELLED, finished=now(), message="Cancelled.")
    return run.update_status(message="Cancelling at the next safe point…")


def resume(run_id: str, settings: Settings) -> Run:
    """Continue a cancelled, interrupted or failed run from its last finished epoch, in a new worker."""
    run = get_run(run_id, settings)
    status = run.status()
    if status["state"] not in RESUMABLE_STATES:
        raise RunError(f"Run '{run_id}' is {status['state']}. Only a cancelled, interrupted or failed run resumes.")
    run.cancel_path.unlink(missing_ok=True)
    run.update_status(state=QUEUED, queued_at=now(), pid=None, pid_start=None, error=None,
                      message="Queued to resume.", resumes=int(status.get("resumes") or 0) + 1)
    launch(run, settings)
    return run


def finish_early(run_id: str, settings: Settings) -> Run:
    """Register a stopped run's best epoch as a model: its config is cut to the epochs it finished, and a
    resumed worker then only restores the best weights, evaluates and saves (no more training)."""
    import yaml

    run = get_run(run_id, settings)
    status = run.status()
    if status["state"] not in RESUMABLE_STATES:
        raise RunError(f"Run '{run_id}' is {status['state']}. Only a cancelled, interrupted or failed run can be "
                       "saved as it is.")
    done = int(run.training_state().get("epoch") or 0)
    if done == 0:
        raise RunError(f"Run '{run_id}' has not finished an epoch yet: there is no best epoch to save. Resume it "
                       "instead.")
    config = RunConfig.from_dict(run.config_dict())
    if done < config.total_epochs:
        head = min(done, config.epochs)
        cut = dataclasses.replace(config, epochs=head, fine_tune_epochs=done - head)
        write_atomically(run.config_path, yaml.safe_dump(cut.to_dict(), sort_keys=False).encode())
        run.update_status(total_epochs=done, planned_epochs=config.total_epochs)
    return resume(run_id, settings)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """How long a config should take, from earlier runs of the same dataset, backbone, size and limit."""

    seconds: float
    runs: int  # earlier runs it is based on


def estimate_seconds(config: RunConfig, settings: Settings) -> Estimate | None:
    """Epoch seconds per phase (head, fine-tune) measured by finished epochs of comparable runs, times the
    config's epochs, plus their mean time outside epochs; None without a comparable run (or phase)."""
    alike = [run for run in list_runs(settings) if _comparable(run, config)]
    seconds = {"head": [], "fine_tune": []}
    overheads = []
    for run in alike:
        rows = run.metrics()
        for row in rows:
            if row.get("phase") in seconds and row.get("seconds") is not None:
                seconds[row["phase"]].append(float(row["seconds"]))
        finished = run.status().get("metrics") or {}  # a completed run's card metrics
        if finished.get("wall_seconds") and finished.get("train_seconds") is not None:
            overheads.append(max(0.0, float(finished["wall_seconds"]) - float(finished["train_seconds"])))
    fine_tune = config.total_epochs - config.epochs
    if (config.epochs and not seconds["head"]) or (fine_tune and not seconds["fine_tune"]) or not alike:
        return None
    total = sum(config.epochs * sum(v) / len(v) if phase == "head" else fine_tune * sum(v) / len(v)
                for phase, v in seconds.items() if v and (config.epochs if phase == "head" else fine_tune))
    overhead = sum(overheads) / len(overheads) if overheads else 0.0
    return Estimate(round(total + overhead, 1), len(alike))


def _comparable(run: Run, config: RunConfig) -> bool:
    try:
        other = RunConfig.from_dict(run.config_dict())
    except (ImgrecError, OSError, ValueError, TypeError):
        return False
    return ((other.dataset, other.backbone, tuple(other.image_size), other.limit_per_class, other.batch_size,
             other.augment.enabled) ==
            (config.dataset, config.backbone, tuple(config.image_size), config.limit_per_class, config.batch_size,
             config.augment.enabled))


def active_runs(settings: Settings) -> list[Run]:
    return [r for r in list_runs(settings) if r.state in LIVE_STATES]


# -- The worker's side ------------------------------------------------------------------------------


@contextlib.contextmanager
def training_slot(run: Run, settings: Settings, poll: float = 0.5):
    """Hold the one training slot: wait (status queued) until this is the oldest live queued run
    and the slot lock is free. Raises ``Cancelled`` if the cancel flag appears while waiting."""
    root = runs_dir(settings)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / SLOT_LOCK, "w") as handle:
        while True:
            if run.cancel_requested():
                raise Cancelled()
            if not _older_live_queued(run, settings):
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
            time.sleep(poll)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _older_live_queued(run: Run, settings: Settings) -> bool:
    mine = run.raw_status().get("queued_at") or ""
    for other in list_runs(settings):
        if other.id == run.id:
            continue
        status = other.status()
        if status["state"] == QUEUED and (status.get("queued_at") or "", other.id) < (mine, run.id):
            return True
    return False
