"""Train page helpers: the run form, live run panel, run history, evaluation report and charts.

Everything here only calls :mod:`imgrec.training.runs`, :mod:`imgrec.training.trainer`, :mod:`imgrec.datasets.loading` and
:mod:`imgrec.training.evaluation`; the training itself always runs in its own process.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from imgrec.core.refs import ModelRef
from imgrec.core.settings import get_settings
from imgrec.datasets import loading, multilabel
from imgrec.datasets.augment import AugmentConfig, preview_augmentations
from imgrec.datasets.loading import dataset_split_args
from imgrec.modeling.backbones import BACKBONES
from imgrec.registry import catalog
from imgrec.registry.card import TRAINING_REPORT
from imgrec.tasks.detection import NOT_TRAINABLE, DetectionTask
from imgrec.tasks.multilabel_metrics import MultiLabelReport
from imgrec.tasks.registry import DEFAULT_TASK, TASKS, task_for, task_named
from imgrec.training import runs
from imgrec.training.config import DATASET_FORMATS, FOLDERS, SCHEDULES, RunConfig
from ui import multilabel_view
from ui.charts import PRIMARY, SECONDARY
from ui.widgets import LOCKED, apply_change, may_change, plain, show_error

PICK = "train.pick_run"  # the run shown in the run panel (a launch selects the new run)
FORM_OPEN = "train.form_open"  # "Run again" opens the New run form
NAME_DEFAULT = "train.name_default"  # the name last filled in from the dataset (replaced until the user types)
# Run-config field -> the form widget that sets it ("Run again" and the presets fill these).
FORM_KEYS = {
    "task": "train.task", "dataset_format": "train.format", "backbone": "train.backbone", "image_size": "train.size", "epochs": "train.epochs",
    "fine_tune_epochs": "train.ft_epochs", "fine_tune_layers": "train.ft_layers", "batch_size": "train.batch",
    "learning_rate": "train.lr", "fine_tune_learning_rate": "train.ft_lr", "lr_schedule": "train.schedule",
    "loss": "train.loss", "label_smoothing": "train.smoothing", "class_weights": "train.class_weights",
    "early_stopping_patience": "train.patience", "limit_per_class": "train.limit",
}
# Starting points for the form; the time estimate under it says what each costs on this machine.
PRESETS = {
    "Quick demo": dict(backbone="small_cnn", image_size=32, epochs=3, fine_tune_epochs=0, batch_size=64,
                       limit_per_class=200, early_stopping_patience=0),
    "Balanced": dict(backbone="mobilenet_v2", image_size=96, epochs=4, fine_tune_epochs=2, batch_size=64,
                     limit_per_class=1000, early_stopping_patience=3),
    "Best accuracy": dict(backbone="mobilenet_v2", image_size=128, epochs=8, fine_tune_epochs=6, batch_size=64,
                          limit_per_class=0, early_stopping_patience=5),
}
REFRESH_SECONDS = 2.0
FOLDER_CHOICE = "A folder path…"
# Detectors are imported or stock, never trained here: the task list leaves detection out and says why.
TRAINABLE_TASKS = tuple(name for name in TASKS if name != DetectionTask.name)
LOSS_NAMES = {"crossentropy": "Cross-entropy", "focal": "Focal", "asymmetric": "Asymmetric (ASL)",
              "bce": "Binary cross-entropy"}
FORMAT_NAMES = {FOLDERS: "Class folders", "csv": "CSV/TSV of label sets", "coco": "COCO JSON (labels of the boxes)",
                "voc": "Pascal VOC XML (labels of the boxes)", "yolo": "YOLO txt (labels of the boxes)"}
AUG_STRENGTHS = {  # field -> (label, max, default strength, help)
    "rotation": ("Rotation", 0.25, 0.05, "Fraction of a full turn, e.g. 0.05 = ±18°"),
    "zoom": ("Zoom", 0.5, 0.1, "±fraction of the image size"),
    "brightness": ("Brightness", 0.8, 0.2, "±fraction of the value range"),
    "contrast": ("Contrast", 0.8, 0.2, "±contrast factor"),
    "saturation": ("Saturation", 1.0, 0.3, "strength of the saturation change"),
    "hue": ("Hue", 0.5, 0.05, "strength of the hue shift"),
    "cutout": ("Cutout", 0.5, 0.25, "side of the erased square, as a fraction of the image side"),
}


# -- Cached reads ---------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=2)
def load_dataset(source: str, split_args: dict, dataset_format: str = FOLDERS):
    if dataset_format != FOLDERS or source in multilabel.BUILTIN:  # label sets (multi-hot)
        return multilabel.load_multilabel_dataset(source, get_settings(), dataset_format, min_per_class=1,
                                                  **split_args)
    return loading.load_dataset(source, get_settings(), min_per_class=1, **split_args)


@st.cache_data(ttl=10, show_spinner="Checking the dataset…")
def validate(source: str):
    return loading.validate_folder(source).to_dict()


# -- The form -------------------------------------------------------------------------------------


def fill_form(values: dict) -> None:
    """Put run-config values into the form's widgets (before they are drawn: a callback or a rerun)."""
    for field_name, value in values.items():
        key = FORM_KEYS.get(field_name)
        if key == "train.size":
            value = int(value[0] if isinstance(value, (list, tuple)) else value)
        elif key == "train.limit":
            value = int(value or 0)
        if key:
            st.session_state[key] = value


def run_again(config: dict) -> None:
    """Fill the form with a run's settings (task, dataset, name and augmentation included) and open it."""
    choices = dataset_choices(task_named(config.get("task", DEFAULT_TASK)))
    dataset = config.get("dataset", "")
    st.session_state["train.dataset"] = dataset if dataset in choices else FOLDER_CHOICE
    if dataset not in choices:
        st.session_state["train.folder"] = dataset
    st.session_state["train.name"] = config.get("name", "")
    st.session_state[NAME_DEFAULT] = None  # a chosen name: keep it whatever the dataset
    fill_form(config)
    for field_name in AUG_STRENGTHS:
        strength = (config.get("augment") or {}).get(field_name) or 0
        st.session_state[f"train.aug.{field_name}"] = bool(strength)
        if strength:
            st.session_state[f"train.aug.{field_name}.s"] = float(strength)
    st.session_state["train.aug.flip"] = bool((config.get("augment") or {}).get("flip"))
    st.session_state[FORM_OPEN] = True


def presets() -> None:
    st.markdown("**Presets**")
    cells = st.columns(len(PRESETS))
    for cell, (label, values) in zip(cells, PRESETS.items(), strict=True):
        details = (f"{values['backbone']}, {values['image_size']} px, {values['epochs']}+{values['fine_tune_epochs']} "
                   f"epochs, {values['limit_per_class'] or 'all'} images per class")
        cell.button(label, key=f"train.preset.{label}", on_click=fill_form, args=(values,), help=details,
                    width="stretch")


def follow_dataset_name(dataset: str) -> None:
    """The model name follows the dataset until the user types one (a name kept from another dataset
    registered a Fashion-MNIST run as cifar10)."""
    default = _default_name(dataset)
    previous = st.session_state.get(NAME_DEFAULT, "")
    if previous is not None and st.session_state.get("train.name", previous) == previous:
        st.session_state["train.name"] = default
        st.session_state[NAME_DEFAULT] = default


def estimate_caption(config: RunConfig) -> None:
    try:
        estimate = runs.estimate_seconds(config, get_settings())
    except Exception as exc:  # an estimate is a nicety: say why there is none
        st.caption(f"No time estimate: {plain(exc)}")
        return
    if estimate is None:
        st.caption("No time estimate yet: no earlier run of this dataset with this backbone, image size, batch "
                   "size, limit and augmentation. Try the quick demo first.")
    else:
        st.caption(f"Estimated time: about **{format_seconds(estimate.seconds)}**, from "
                   f"{estimate.runs} earlier run(s) of the same setup on this machine.")


def dataset_choices(task) -> list[str]:
    """The built-in datasets a task trains on (single-label: those found on this machine), then the folders
    under the data dir (single-label only)."""
    if task.label_sets:
        return list(multilabel.BUILTIN)
    return loading.dataset_choices(get_settings())


def task_formats(task) -> list[str]:
    """The run config's dataset formats that fit ``task``: label-set layouts or class folders."""
    return [fmt for fmt in DATASET_FORMATS if (fmt != FOLDERS) == task.label_sets]


def _keep_if_offered(key: str, options: list) -> None:
    """Forget a widget's value that the options no longer hold (another task was chosen)."""
    if key in st.session_state and st.session_state[key] not in options:
        del st.session_state[key]


def run_form() -> RunConfig | None:
    """The run settings; returns a RunConfig when Launch is pressed (errors are shown, not raised)."""
    presets()
    _keep_if_offered("train.task", list(TRAINABLE_TASKS))
    task = task_named(st.selectbox("Task", TRAINABLE_TASKS, key="train.task", format_func=lambda n: TASKS[n].title))
    st.caption(f"Object detection is not trained here: {plain(NOT_TRAINABLE)}")
    choices = dataset_choices(task) + [FOLDER_CHOICE]
    formats = task_formats(task)
    for key, options in (("train.dataset", choices), ("train.format", formats), ("train.loss", list(task.losses))):
        _keep_if_offered(key, options)
    left, middle, right = st.columns(3, gap="medium")
    with left:
        st.markdown("**Data**")
        choice = st.selectbox("Dataset", choices, key="train.dataset",
                              format_func=lambda c: {**loading.BUILTIN, **multilabel.BUILTIN}.get(c, c))
        dataset, dataset_format = choice, FOLDERS  # a built-in dataset needs no format
        if choice == FOLDER_CHOICE:
            dataset_format = st.selectbox("Dataset format", formats, key="train.format",
                                          format_func=FORMAT_NAMES.get, disabled=len(formats) == 1)
            dataset = st.text_input("Folder of class folders" if dataset_format == FOLDERS else "Dataset path",
                                    key="train.folder",
                                    placeholder="/path/to/images (class folders, or train/val/test)"
                                    if dataset_format == FOLDERS else
                                    "labels.csv, annotations.json, or a VOC / YOLO folder").strip()
        follow_dataset_name(dataset)
        name = st.text_input("Model name", key="train.name", help="Follows the dataset until you type a name.")
        backbone = st.selectbox("Backbone", list(BACKBONES), key="train.backbone")
        size = st.select_slider("Image size", [28, 32, 48, 64, 96, 128, 160, 224], value=96, key="train.size")
    with middle:
        st.markdown("**Schedule**")
        epochs = st.number_input("Head epochs", 0, 500, 5, key="train.epochs",
                                 help="Frozen backbone: only the classifier head trains (the whole model for small_cnn).")
        fine_tune_epochs = st.number_input("Fine-tune epochs", 0, 500, 0, key="train.ft_epochs",
                                           disabled=backbone == "small_cnn")
        fine_tune_layers = st.number_input("Fine-tune top layers", 1, 300, 30, key="train.ft_layers",
                                           disabled=backbone == "small_cnn")
        batch_size = st.select_slider("Batch size", [8, 16, 32, 64, 128, 256], value=64, key="train.batch")
        lr = st.number_input("Learning rate", 1e-6, 1.0, 1e-3, format="%.5f", key="train.lr")
        ft_lr = st.number_input("Fine-tune learning rate", 1e-7, 1.0, 1e-4, format="%.6f", key="train.ft_lr")
        schedule = st.selectbox("Learning-rate schedule", SCHEDULES, key="train.schedule")
    with right:
        st.markdown("**Loss**")
        loss = st.selectbox("Loss", task.losses, key="train.loss", format_func=lambda v: LOSS_NAMES.get(v, v),
                            help="The first is the task's default.")
        smoothing = st.slider("Label smoothing", 0.0, 0.3, 0.0, 0.05, key="train.smoothing")
        class_weights = st.toggle("Class weights from counts", key="train.class_weights")
        patience = st.number_input("Early-stopping patience (0 = off)", 0, 100, 5, key="train.patience")
        limit = st.number_input("Max images per class and split (0 = all)", 0, 100_000, 0, key="train.limit")
    augment = augmentation_controls()
    # On demand: a preview loads the dataset, which for a built-in means unpacking it the first time.
    if st.toggle("Preview augmentations", key="train.aug.preview", disabled=not dataset):
        augmentation_preview(dataset, augment, size, dataset_format)
    if dataset and choice == FOLDER_CHOICE and dataset_format == FOLDERS:
        dataset_report_panel(dataset)
    unlocked = may_change(get_settings())
    try:
        config = RunConfig(
            name=name, task=task.name, dataset=dataset, dataset_format=dataset_format, backbone=backbone, image_size=int(size),
            weights=None if backbone == "small_cnn" else "imagenet",
            epochs=int(epochs), fine_tune_epochs=0 if backbone == "small_cnn" else int(fine_tune_epochs),
            fine_tune_layers=int(fine_tune_layers), batch_size=int(batch_size), learning_rate=float(lr),
            fine_tune_learning_rate=float(ft_lr), lr_schedule=schedule, loss=loss, label_smoothing=float(smoothing),
            class_weights=bool(class_weights), augment=augment, early_stopping_patience=int(patience),
            limit_per_class=int(limit) or None,
        )
    except Exception as exc:  # a bad value becomes a message
        if st.button("Launch run", type="primary", icon=":material/play_arrow:", key="train.launch",
                     disabled=not (dataset and unlocked), help=None if unlocked else LOCKED):
            show_error(exc)
        return None
    if dataset:
        estimate_caption(config)
    if not st.button("Launch run", type="primary", icon=":material/play_arrow:", key="train.launch",
                     disabled=not (dataset and unlocked), help=None if unlocked else LOCKED):
        return None
    return config


def _default_name(dataset: str) -> str:
    stem = Path(dataset).name if dataset else "model"
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in stem.lower()).strip("-") or "model"


def augmentation_controls() -> AugmentConfig:
    st.markdown("**Augmentation** (off keeps the backbone's activations cached: much faster)")
    values = {"flip": False}
    columns = st.columns(4)
    with columns[0]:
        values["flip"] = st.toggle("Horizontal flip", key="train.aug.flip")
    for index, (field_name, (label, maximum, default, help_text)) in enumerate(AUG_STRENGTHS.items(), start=1):
        with columns[index % 4]:
            if st.toggle(label, key=f"train.aug.{field_name}"):
                values[field_name] = st.slider(f"{label} strength", 0.01, maximum, default, key=f"train.aug.{field_name}.s",
                                               help=help_text)
    known = {f.name for f in fields(AugmentConfig)}
    return AugmentConfig(**{k: v for k, v in values.items() if k in known})


def augmentation_preview(dataset: str, augment: AugmentConfig, size: int, dataset_format: str = FOLDERS,
                         images: int = 3, copies: int = 5) -> None:
    if not dataset:
        st.caption("Choose a dataset to preview augmentations.")
        return
    try:
        loaded = load_dataset(dataset, {}, dataset_format)  # the default split: any training images will do
    except Exception as exc:
        st.caption(f"No preview: {plain(exc)}")
        return
    train = loaded.splits["train"]
    picks = np.random.default_rng(0).choice(len(train), size=min(images, len(train)), replace=False)
    originals = np.stack([train.load_image(int(i), (size, size)) for i in picks])
    grid = preview_augmentations(originals, augment, copies=copies, seed=int(st.session_state.get("train.aug.seed", 0)))
    if st.button("Shuffle", key="train.aug.shuffle", icon=":material/shuffle:"):
        st.session_state["train.aug.seed"] = int(st.session_state.get("train.aug.seed", 0)) + 1
        st.rerun()
    for row, original in zip(grid, originals):
        cols = st.columns(copies + 1)
        cols[0].image(original, caption="original", width="stretch")
        for col, image in zip(cols[1:], row):
            col.image(image, width="stretch")
    if not augment.enabled:
        st.caption("All augmentations are off: the copies equal the original.")


def dataset_report_panel(source: str) -> None:
    report = validate(source)
    label = "Dataset check: ready" if report["ok"] else "Dataset check: problems"
    with st.expander(label, expanded=not report["ok"], icon=":material/fact_check:"):
        if report["counts"]:
            frame = pd.DataFrame(report["counts"], index=report["class_names"])
            st.dataframe(frame, width="stretch")
        for issue in report["issues"]:
            (st.error if issue["severity"] == "error" else st.warning)(plain(issue["message"]))
        if report["skipped"]:
            st.dataframe(pd.DataFrame(report["skipped"]), width="stretch", hide_index=True)


# -- Run panel ------------------------------------------------------------------------------------


def run_panel(run_id: str) -> None:
    """Status, progress, ETA, curves and cancel/resume for one run; refreshes itself while it is live."""
    settings = get_settings()
    try:
        run = runs.get_run(run_id, settings)
    except runs.RunError as exc:
        st.warning(plain(exc))
        return
    live = run.status()["state"] in runs.LIVE_STATES

    @st.fragment(run_every=REFRESH_SECONDS if live else None)
    def panel():
        status = run.status()
        if live and status["state"] not in runs.LIVE_STATES:
            st.rerun(scope="app")  # finished: redraw the page once (report, history), stop refreshing
        _status_header(run, status)
        if status.get("warning"):
            st.warning(plain(status["warning"]), icon=":material/warning:")
        metrics = run.metrics()
        if metrics:
            st.altair_chart(curves_chart(metrics, run_task(run).monitor), width="stretch",
                            key=f"train.curves.{run.id}")
        elif status["state"] in runs.LIVE_STATES:
            st.caption("Curves appear after the first finished epoch.")
        _run_actions(run, status)
        with st.expander("Log", icon=":material/terminal:"):
            st.code(run.log_tail(40) or "(empty)", language=None)

    panel()


def run_task(run: runs.Run):
    """The task a run trains (its config's; runs from before tasks trained classifiers)."""
    return task_named((run.config_dict() or {}).get("task") or DEFAULT_TASK)


def _status_header(run: runs.Run, status: dict) -> None:
    state = status["state"]
    icon = {runs.RUNNING: ":material/autorenew:", runs.QUEUED: ":material/schedule:",
            runs.COMPLETED: ":material/check_circle:", runs.FAILED: ":material/error:",
            runs.CANCELLED: ":material/cancel:", runs.INTERRUPTED: ":material/warning:"}[state]
    cancelling = state in runs.LIVE_STATES and run.cancel_requested()
    if cancelling:
        state_text = "cancelling…"
    else:
        state_text = state
    st.markdown(f"#### {icon} `{run.id}` — {state_text}")
    if cancelling:
        st.info("Cancelling… the run stops at the end of the current step and keeps its last finished epoch.",
                icon=":material/hourglass_top:")
    epoch, total = int(status.get("epoch") or 0), int(status.get("total_epochs") or 0)
    steps, step = status.get("steps_per_epoch") or 0, status.get("step") or 0
    fraction = (epoch + (step / steps if steps and state == runs.RUNNING else 0)) / total if total else 0
    st.progress(min(max(fraction, 0.0), 1.0), text=f"epoch {epoch}/{total} · {status.get('message', '')}")
    cols = st.columns(4)
    cols[0].metric("State", state_text)
    monitor = run_task(run).monitor  # the trainer keeps the task's monitor metric under best_val_accuracy
    cols[1].metric(f"Best {monitor.replace('_', ' ').replace('map', 'mAP')}",
                   f"{status['best_val_accuracy']:.1%}" if status.get("best_val_accuracy") else "–",
                   help=f"The validation metric this task keeps the best epoch by ({monitor}).")
    cols[2].metric("ETA", format_seconds(status.get("eta_seconds")) if state == runs.RUNNING else "–")
    last_epoch = status.get("epoch_seconds") or next(
        (row.get("seconds") for row in reversed(run.metrics()) if row.get("seconds") is not None), None)
    cols[3].metric("Epoch time", format_seconds(last_epoch),
                   help=f"The last finished epoch; all epochs so far: {format_seconds(status.get('train_seconds'))}.")
    if status.get("error"):
        st.error(plain(status["error"]))


def _run_actions(run: runs.Run, status: dict) -> None:
    state = status["state"]
    settings = get_settings()
    unlocked = may_change(settings)
    locked_help = None if unlocked else LOCKED
    if state in runs.LIVE_STATES and not run.cancel_requested():
        if st.button("Cancel run", key=f"train.cancel.{run.id}", icon=":material/stop:", disabled=not unlocked,
                     help=locked_help):
            runs.cancel(run.id, settings)
            st.rerun(scope="app")
    elif state in runs.RESUMABLE_STATES:
        resume_col, save_col = st.columns(2)
        if resume_col.button("Resume run", key=f"train.resume.{run.id}", icon=":material/play_arrow:", type="primary",
                             disabled=not unlocked, help=locked_help):
            runs.resume(run.id, settings)
            st.rerun(scope="app")
        finished = int(run.training_state().get("epoch") or 0)
        if finished and save_col.button(
                "Save the best epoch as a model", key=f"train.finish.{run.id}", icon=":material/save:",
                disabled=not unlocked, help=locked_help or f"Registers the best of its {finished} finished epoch(s) "
                                                           "without training more."):
            try:
                runs.finish_early(run.id, settings)
            except Exception as exc:  # a refusal becomes a message
                show_error(exc)
            else:
                st.rerun(scope="app")
    if state in runs.FINAL_STATES:
        st.button("Run again with these settings", key=f"train.again.{run.id}", icon=":material/replay:",
                  on_click=run_again, args=(run.config_dict(),))


def format_seconds(seconds) -> str:
    if seconds is None:
        return "–"
    if float(seconds) < 10:  # a small model's epoch: "0.4s", not "0s"
        return f"{float(seconds):.1f}s"
    seconds = int(round(float(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else (f"{minutes}m {secs:02d}s" if minutes else f"{secs}s")


def curves_chart(metrics: list[dict], monitor: str = "val_accuracy") -> alt.Chart:
    """Loss and the task's monitor metric (accuracy; mAP for multi-label) per epoch, train (solid) and
    validation (dashed)."""
    score = monitor.removeprefix("val_")
    rows = []
    for row in metrics:
        for metric in ("loss", score):
            for split, key in (("train", metric), ("validation", f"val_{metric}")):
                if row.get(key) is not None:
                    rows.append({"epoch": row["epoch"], "metric": metric, "split": split, "value": row[key],
                                 "phase": row.get("phase", "")})
    frame = pd.DataFrame(rows)
    base = alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        color=alt.Color("split:N", title=None,
                        scale=alt.Scale(domain=["train", "validation"], range=[PRIMARY, SECONDARY]),
                        legend=alt.Legend(orient="top")),
        strokeDash=alt.StrokeDash("split:N", legend=None),
        tooltip=["epoch:Q", "phase:N", "split:N", alt.Tooltip("value:Q", format=".4f")],
    ).properties(height=220, width=320)
    return base.facet(column=alt.Column("metric:N", title=None, sort=["loss", score])).resolve_scale(y="independent")


# -- History --------------------------------------------------------------------------------------


def history_table() -> str | None:
    """All runs as a table (refreshing itself while a run is live); returns the run id picked for the run panel."""
    all_runs = runs.list_runs(get_settings())
    if not all_runs:
        st.info("No runs yet. Configure one above and press Launch run.", icon=":material/history:")
        return None
    live = any(run.status()["state"] in runs.LIVE_STATES for run in all_runs)

    @st.fragment(run_every=REFRESH_SECONDS * 2 if live else None)
    def table():
        _history_frame(runs.list_runs(get_settings()))

    table()
    ids = [run.id for run in all_runs]
    if st.session_state.get(PICK) not in ids:
        st.session_state.pop(PICK, None)
    return st.selectbox("Show run", ids, key=PICK)


def _history_frame(all_runs: list) -> None:
    rows = []
    for run in all_runs:
        status = run.status()
        metrics = status.get("metrics") or {}
        rows.append({
            "run": run.id, "state": status["state"], "model": status.get("model_ref") or "",
            "dataset": Path(status.get("dataset") or "").name, "backbone": status.get("backbone", ""),
            "epochs": f"{status.get('epoch', 0)}/{status.get('total_epochs', '?')}",
            # The trainer keeps the task's monitor (val accuracy, val mAP) as best_val_accuracy.
            "best val score": status.get("best_val_accuracy"), "test score": metrics.get("accuracy", metrics.get("mAP")),
            "created": status.get("created", ""),
        })
    frame = pd.DataFrame(rows)
    st.dataframe(frame, width="stretch", hide_index=True,
                 column_config={"best val score": st.column_config.NumberColumn(
                                    format="percent", help="Validation accuracy (multi-label: mAP) of the best epoch"),
                                "test score": st.column_config.NumberColumn(
                                    format="percent", help="Test accuracy (multi-label: mAP)")})


# -- Evaluation -----------------------------------------------------------------------------------


def has_evaluation(model_ref: str) -> bool:
    ref = ModelRef.parse(model_ref)
    name, version = ref.name, ref.version
    return (catalog.model_dir(name, version, get_settings()) / TRAINING_REPORT).is_file()


def evaluation_panel(model_ref: str, page: str, show_images: bool = True) -> None:
    """The test-set report of a trained model: metrics, per-class table, confusion heatmap with the
    misclassified images of the chosen cell, reliability diagram. ``page`` prefixes the widget keys;
    without ``show_images`` a toggle asks before the dataset is loaded for the gallery."""
    settings = get_settings()
    ref = ModelRef.parse(model_ref)
    name, version = ref.name, ref.version
    folder = catalog.model_dir(name, version, settings)
    try:
        card = catalog.load_card(name, version, settings)
        report = task_for(card).report_from_dict(json.loads((folder / TRAINING_REPORT).read_text()))
    except Exception as exc:
        st.warning(f"No evaluation report for {plain(model_ref)}: {plain(exc)}")
        return
    st.markdown(f"#### Evaluation of `{model_ref}` on the {report.split} split ({report.samples} images)")
    if isinstance(report, MultiLabelReport):  # per-class thresholds and PR curves, no confusion matrix
        multilabel_view.show_report(report, key=f"{page}.multilabel.{model_ref}")
        _saved_curves(folder)
        return
    summary = report.summary()
    cols = st.columns(6)
    cols[0].metric("Accuracy", f"{report.accuracy:.2%}")
    cols[1].metric("Top-3", f"{report.top3_accuracy:.2%}")
    cols[2].metric("Macro F1", f"{report.macro_f1:.3f}")
    cols[3].metric("Weighted F1", f"{report.weighted_f1:.3f}")
    cols[4].metric("ECE", f"{summary['ece']:.3f}", delta=f"{summary['ece_calibrated'] - summary['ece']:+.3f} at T={report.temperature:.2f}",
                   delta_color="inverse")
    cols[5].metric("Wall time", format_seconds(card.metrics.get("wall_seconds") or card.metrics.get("train_seconds")),
                   help="The whole run: data, cached features, epochs, evaluation (epochs alone: "
                        f"{format_seconds(card.metrics.get('train_seconds'))}).")
    heat_col, side_col = st.columns([1.2, 1], gap="large")
    with heat_col:
        event = st.altair_chart(confusion_heatmap(report), width="stretch", on_select="rerun",
                                key=f"{page}.confusion.{model_ref}", selection_mode="cell")
        picked = _picked_cell(event)
    with side_col:
        st.altair_chart(reliability_chart(report), width="stretch")
        st.dataframe(pd.DataFrame(report.per_class), hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("precision", "recall", "f1")})
    if show_images or st.toggle("Show the misclassified images", key=f"{page}.gallery.{model_ref}",
                                help="Loads the dataset the model was evaluated on."):
        misclassified_gallery(report, catalog.training_config(name, version, settings), picked, f"{page}.cell.{model_ref}")
    _saved_curves(folder)


def _saved_curves(folder: Path) -> None:
    curves = folder / "curves.png"
    if curves.exists():
        with st.expander("Training curves (saved with the model)", icon=":material/show_chart:"):
            st.image(str(curves))


def activate_button(model_ref: str) -> None:
    """The "make active" button for a freshly trained model, or a note that it already is."""
    settings = get_settings()
    ref = ModelRef.parse(model_ref)
    name, version = ref.name, ref.version
    if catalog.active_model(settings) == (name, version):
        st.success("This is the active model.", icon=":material/verified:")
    elif st.button("Make this the active model", key=f"train.activate.{model_ref}", icon=":material/verified:",
                   disabled=not may_change(settings), help=None if may_change(settings) else LOCKED):
        apply_change(lambda: catalog.set_active_model(name, version, settings), f"{model_ref} is now the active model.")


def confusion_heatmap(report) -> alt.Chart:
    names = report.class_names
    rows = [{"true": names[i], "predicted": names[j], "count": int(c),
             "share": float(c) / max(sum(report.confusion[i]), 1)}
            for i, row in enumerate(report.confusion) for j, c in enumerate(row)]
    frame = pd.DataFrame(rows)
    cell = alt.selection_point(name="cell", fields=["true", "predicted"], on="click", clear="dblclick")
    base = alt.Chart(frame).encode(
        x=alt.X("predicted:N", sort=names, title="predicted"),
        y=alt.Y("true:N", sort=names, title="true"),
    )
    heat = base.mark_rect().encode(
        color=alt.Color("share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="row share"),
        opacity=alt.condition(cell, alt.value(1.0), alt.value(0.55)),
        tooltip=["true:N", "predicted:N", "count:Q", alt.Tooltip("share:Q", format=".1%")],
    ).add_params(cell)
    text = base.mark_text(fontSize=11).encode(
        text="count:Q", color=alt.condition("datum.share > 0.5", alt.value("white"), alt.value("#111827")))
    return (heat + text).properties(title="Confusion matrix (click a cell)", height=alt.Step(34), width=alt.Step(34))


def _picked_cell(event) -> tuple[str, str] | None:
    try:
        points = event["selection"]["cell"]
    except (KeyError, TypeError):
        return None
    if points:
        return points[0].get("true"), points[0].get("predicted")
    return None


def reliability_chart(report) -> alt.Chart:
    frame = pd.DataFrame([b for b in report.calibration["bins"] if b["count"]])
    if frame.empty:
        frame = pd.DataFrame({"confidence": [], "accuracy": [], "count": []})
    diagonal = alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]})).mark_line(strokeDash=[4, 3], color="#9ca3af").encode(
        x="x:Q", y="y:Q")
    points = alt.Chart(frame).mark_circle(color=PRIMARY).encode(
        x=alt.X("confidence:Q", scale=alt.Scale(domain=[0, 1]), title="confidence"),
        y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="accuracy"),
        size=alt.Size("count:Q", legend=None),
        tooltip=[alt.Tooltip("confidence:Q", format=".2f"), alt.Tooltip("accuracy:Q", format=".2f"), "count:Q"],
    )
    return (diagonal + points).properties(title=f"Reliability (ECE {report.calibration['ece']:.3f})", height=220)


def misclassified_gallery(report, config: dict, picked: tuple[str, str] | None, key: str, limit: int = 24) -> None:
    default = f"{picked[0]}|{picked[1]}" if picked else None
    if picked:
        names = report.class_names
        count = (report.confusion[names.index(picked[0])][names.index(picked[1])]
                 if picked[0] in names and picked[1] in names else 0)
        if picked[0] == picked[1]:
            verdict = f"{count} correct predictions."
        else:
            verdict = f"{count} misclassified image(s) below." if count else "no images."
        st.markdown(f"Selected cell: true **{plain(picked[0])}**, predicted **{plain(picked[1])}** — {verdict}")
    names = report.class_names
    totals = {f"{names[i]}|{names[j]}": n for i, row in enumerate(report.confusion) for j, n in enumerate(row)}
    cells = sorted(report.errors, key=lambda k: -totals.get(k, 0))
    if not cells:
        st.caption("No misclassified images in this split.")
        return
    labels = [k.replace("|", " → predicted ") + f" ({totals.get(k, 0)} images, "
              f"{'first ' if len(report.errors[k]) < totals.get(k, 0) else ''}{len(report.errors[k])} kept)"
              for k in cells]
    if default not in cells:
        default = None
    key = st.selectbox("Misclassified images of a cell (or click the heatmap)", cells,
                       index=cells.index(default) if default else 0, format_func=lambda k: labels[cells.index(k)],
                       key=f"{key}.{default}")
    dataset = config.get("dataset")
    if not dataset:
        st.caption("The report does not name its dataset; images cannot be shown.")
        return
    try:
        loaded = load_dataset(dataset, dataset_split_args(config))  # the run's own splits: its indices
    except Exception as exc:
        st.caption(f"Dataset '{plain(dataset)}' is not available here: {plain(exc)}")
        return
    split = loaded.splits[report.split]
    true_class, predicted_class = key.split("|", 1)
    indices = [i for i in report.misclassified(true_class, predicted_class) if i < len(split)][:limit]
    cols = st.columns(8)
    for n, index in enumerate(indices):
        image = split.load_image(index)
        cols[n % 8].image(image, caption=f"#{index}", width="stretch")
