"""Display pieces of the Models page: the overview, a card, the parity table, comparisons, downloads.

Presentation only: every number comes from ``imgrec.registry.catalog``, ``imgrec.registry.exports`` and
``imgrec.inference.runtimes``. Files are read when a download is clicked (deferred ``data``), never on a rerun.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from imgrec.core.errors import ImgrecError
from imgrec.core.settings import Settings
from imgrec.registry import catalog, exports
from imgrec.registry.card import CARD_FILE, MODEL_FILE, ModelCard
from imgrec.tasks.base import Task
from ui import detection_report_view
from ui.widgets import plain

# Plain text symbols: a browser without an emoji font still draws them.
STATUS_ICONS = {exports.STATUS_OK: "✓ ok", exports.STATUS_DIVERGING: "⚠ diverging", exports.STATUS_FAILED: "✗ failed"}
NOT_EXPORTED = "— not exported"
# The leaderboard's score: the first of these the card's metrics hold (held-out test first, then validation).
LEADERBOARD_METRICS = ("accuracy", "map", "mAP", "test.accuracy", "val_accuracy", "val_map")
DETECTION_METRIC = "mAP@[.5:.95]"  # a detector's score, from the report `imgrec evaluate` saves beside it
# Pre-selected on the Exports tab: quick to export and to serve (seconds on a small model).
DEFAULT_EXPORT = "onnx"
OVERVIEW_KEY = "models.overview"


# -- Overview and the card ---------------------------------------------------------------------------


def ordered_refs(cards: list[ModelCard], active: str | None) -> list[str]:
    return sorted((c.ref for c in cards), key=lambda ref: ref != active)


def leaderboard_score(card: ModelCard, settings: Settings) -> tuple[str, float] | None:
    """(metric, value) the leaderboard ranks this version by: its card's test accuracy or mAP (else validation),
    or a detector's mAP from its saved detection report; None when neither records one."""
    metrics = flat_metrics(card.metrics)
    for key in LEADERBOARD_METRICS:
        if _number(metrics.get(key)):
            return key, float(metrics[key])
    detection_map = detection_report_view.saved_map(card, settings)
    return None if detection_map is None else (DETECTION_METRIC, detection_map)


def leaderboard_rows(cards: list[ModelCard], active: str | None, settings: Settings) -> list[dict]:
    """One row per version, the best score first (versions without one last)."""
    rows = []
    for card in cards:
        results = _results(card, settings)
        score = leaderboard_score(card, settings)
        rows.append({
            "ref": card.ref,
            "Model": card.name,
            "Version": card.version,
            "Score": None if score is None else score[1],
            "Metric": "—" if score is None else score[0],
            "Active": card.ref == active,
            "Backbone": card.backbone,
            "Classes": card.num_classes,
            "Input": f"{card.input_size[0]}×{card.input_size[1]}",
            "Dataset": card.dataset,
            "Exports ok": f"{sum(r.ok for r in results)} / {len(results)}" if results else "none",
            "Created": card.created.replace("T", " ")[:16],
        })
    return sorted(rows, key=lambda row: (row["Score"] is None, -(row["Score"] or 0.0), row["ref"]))


def overview(cards: list[ModelCard], active: str | None, settings: Settings, select_key: str) -> None:
    """The leaderboard; clicking a row selects that version in the ``select_key`` selectbox below it."""
    rows = leaderboard_rows(cards, active, settings)

    def pick() -> None:
        picked = st.session_state[OVERVIEW_KEY].selection.rows
        if picked:
            st.session_state[select_key] = rows[picked[0]]["ref"]

    st.dataframe(
        pd.DataFrame(rows).drop(columns="ref"), hide_index=True, width="stretch", key=OVERVIEW_KEY,
        on_select=pick, selection_mode="single-row",
        column_config={
            "Active": st.column_config.CheckboxColumn("Active", width="small"),
            "Score": st.column_config.ProgressColumn("Score", min_value=0.0, max_value=1.0, format="percent",
                                                     help="Test accuracy or mAP (a detector: COCO mAP@[.5:.95] of its last evaluation); else validation"),
        },
    )
    st.caption("Best first. Click a row to open that version below.")


def usage_snippets(card: ModelCard, api_url: str) -> dict[str, str]:
    """Copy-paste calls of this version: curl and Python against the API, and the CLI."""
    endpoint = f"{api_url}/predict?model={card.ref}&top_k=3"
    return {
        "curl": f'curl -F files=@photo.jpg "{endpoint}"',
        "python": "\n".join([
            "import requests",
            "",
            'with open("photo.jpg", "rb") as image:',
            f'    answer = requests.post("{endpoint}", files={{"files": image}}, timeout=30)',
            "answer.raise_for_status()",
            "print(answer.json())  # one result object per file (a list for several files)",
        ]),
        "cli": f"python -m imgrec predict photo.jpg --model {card.name} --version {card.version} --top-k 3",
    }


def usage_panel(card: ModelCard, api_url: str) -> None:
    st.markdown("**Use this version**")
    st.caption(f"The API (`make api`) at {api_url}; the CLI from the checkout.")
    snippets = usage_snippets(card, api_url)
    for tab, (kind, language) in zip(st.tabs(["curl", "Python", "CLI"]),
                                     [("curl", "bash"), ("python", "python"), ("cli", "bash")], strict=True):
        tab.code(snippets[kind], language=language)


def card_panel(card: ModelCard) -> None:
    left, right = st.columns([1, 1.4], gap="large")
    with left:
        st.markdown(
            "\n".join([
                f"- **Backbone:** {plain(card.backbone)}",
                f"- **Input size:** {card.input_size[0]} × {card.input_size[1]} RGB (raw 0–255; "
                f"`{card.preprocessing}` preprocessing inside the model)",
                f"- **Dataset:** {plain(card.dataset)}",
                f"- **Task:** {plain(card.task)}",
                f"- **Created:** {card.created.replace('T', ' ')}",
                f"- **Classes:** {card.num_classes}",
            ])
        )
        if card.description:
            st.caption(plain(card.description))
    with right:
        metrics = flat_metrics(card.metrics)
        if not metrics:
            st.info("This card records no training metrics: the model was not trained here (a detector's "
                    "evaluation, if any, is on the Evaluation tab).",
                    icon=":material/info:")
        else:
            numeric = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            cells = st.columns(min(4, max(1, len(numeric)))) if numeric else []
            for index, (key, value) in enumerate(list(numeric.items())[:8]):
                cells[index % len(cells)].metric(key, format_metric(key, value))
            others = {k: v for k, v in metrics.items() if k not in numeric or list(numeric).index(k) >= 8}
            if others:
                st.dataframe(pd.DataFrame({"metric": list(others), "value": [str(v) for v in others.values()]}),
                             hide_index=True, width="stretch")
        with st.expander(f"Class names ({card.num_classes})"):
            st.dataframe(pd.DataFrame({"index": range(card.num_classes), "class": card.class_names}),
                         hide_index=True, width="stretch", height=min(400, 38 + 35 * card.num_classes))


def flat_metrics(metrics: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in (metrics or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_metrics(value, f"{name}."))
        elif isinstance(value, (list, tuple)) and len(value) > 6:
            continue  # per-class arrays and curves: not a figure to show in a table
        else:
            flat[name] = value
    return flat


def format_metric(key: str, value) -> str:
    fractions = ("acc", "precision", "recall", "f1", "auc", "top")
    if isinstance(value, float) and 0 <= value <= 1 and any(word in key.lower() for word in fractions):
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# -- Exports and parity --------------------------------------------------------------------------------


def _results(card: ModelCard, settings: Settings) -> list[exports.ExportResult]:
    try:
        return exports.export_results(card.name, card.version, settings)
    except ImgrecError:
        return []


def parity_frame(report: dict, task: Task) -> pd.DataFrame:
    """One row per format, exported or not, with the task's parity figures and ratios to the Keras model."""
    keras = report.get("keras", {})
    entries = report.get("exports", {})
    rows = []
    for fmt in exports.FORMATS:
        label = exports.FORMAT_INFO[fmt][0]
        entry = entries.get(fmt)
        if entry is None:
            rows.append({"Format": label, "Status": NOT_EXPORTED})
            continue
        result = exports.ExportResult.from_dict(entry)
        size_mb = result.size_bytes / 1e6 if result.size_bytes else None
        rows.append({
            "Format": label,
            "Status": STATUS_ICONS.get(result.status, result.status),
            **{title: result.figures.get(key) for key, title in task.parity_titles.items()},
            "Size (MB)": size_mb,
            "× smaller": _ratio(keras.get("size_bytes"), result.size_bytes),
            "Latency (ms)": result.latency_ms,
            "× faster": _ratio(result.keras_latency_ms, result.latency_ms),
        })
    frame = pd.DataFrame(rows)
    empty = [title for title in task.parity_titles.values() if title in frame and frame[title].isna().all()]
    return frame.drop(columns=empty)  # e.g. Keras is never sure enough on these images for the "sure" column


def _ratio(reference, value):
    return round(reference / value, 2) if reference and value else None


# Display formats by column; a task's figure columns not named here are shares (agreements, overlaps).
PARITY_FORMATS = {"Size (MB)": "{:.2f}", "× smaller": "{:.1f}×", "Latency (ms)": "{:.3g}", "× faster": "{:.2f}×"}
DIFFERENCE_FORMAT = "{:.2g}"


def parity_display(frame: pd.DataFrame, task: Task) -> pd.DataFrame:
    """The parity frame as text: figures formatted, blanks (not "None") where a format was not exported."""
    shown = frame.copy()
    figure_formats = {title: DIFFERENCE_FORMAT if "Δ" in title else "{:.1%}" for title in task.parity_titles.values()}
    for column in shown.columns:
        pattern = PARITY_FORMATS.get(column) or figure_formats.get(column)
        shown[column] = [("" if pd.isna(v) else pattern.format(v) if pattern else str(v)) for v in shown[column]]
    return shown


def parity_table(report: dict, task: Task) -> None:
    """The figures; the reason of each failed or diverging export follows in ``parity_notes``."""
    st.dataframe(
        parity_display(parity_frame(report, task), task), hide_index=True, width="stretch", key="models.parity",
        column_config={
            "× smaller": st.column_config.TextColumn(help="Keras .keras file size / export size"),
            "Latency (ms)": st.column_config.TextColumn(
                help="One image, median, on this machine: TensorFlow for the SavedModel, the LiteRT "
                "interpreter for TFLite, ONNX Runtime for ONNX"),
            "× faster": st.column_config.TextColumn(help="Keras latency / export latency"),
        },
    )


def parity_notes(report: dict) -> None:
    keras = report.get("keras", {})
    held = report.get("held_out", {})
    calibration = report.get("calibration", {})
    thresholds = report.get("thresholds", {})
    lines = []
    if keras:
        lines.append(f"**Reference:** Keras model, {keras.get('size_bytes', 0) / 1e6:.2f} MB, "
                     f"{keras.get('latency_ms', 0):.1f} ms per image on this machine.")
    if held:
        lines.append(f"**Held-out set:** {held.get('description', '')}.")
    if calibration:
        lines.append(f"**int8 calibration set:** {calibration.get('description', '')}.")
    if thresholds:
        limits = " or ".join(f"{name.removeprefix('min_').replace('_', ' ')} below {value:.0%}"
                             for name, value in thresholds.items())
        lines.append(f"**Diverging** when {limits}. Last run {report.get('updated', '').replace('T', ' ')}.")
    st.caption("  \n".join(lines))
    bad = [e for e in report.get("exports", {}).values() if e.get("status") != exports.STATUS_OK]
    for entry in bad:
        label = exports.FORMAT_INFO.get(entry["format"], (entry["format"],))[0]
        message = f"**{label}** is {entry['status']}: {entry.get('reason') or 'no reason recorded'}"
        (st.error if entry["status"] == exports.STATUS_FAILED else st.warning)(message, icon=":material/warning:")


def serving_choice_label(fmt: str) -> str:
    return "Keras (the .keras model)" if fmt == exports.KERAS else exports.FORMAT_INFO.get(fmt, (fmt,))[0]


# -- Comparison -----------------------------------------------------------------------------------


def comparison_frame(a: ModelCard, b: ModelCard) -> pd.DataFrame:
    fields = {
        "Backbone": (a.backbone, b.backbone),
        "Dataset": (a.dataset, b.dataset),
        "Input size": (f"{a.input_size[0]}×{a.input_size[1]}", f"{b.input_size[0]}×{b.input_size[1]}"),
        "Classes": (a.num_classes, b.num_classes),
        "Created": (a.created.replace("T", " "), b.created.replace("T", " ")),
    }
    ma, mb = flat_metrics(a.metrics), flat_metrics(b.metrics)
    rows = [{"": k, a.ref: str(va), b.ref: str(vb), "Δ (B − A)": ""} for k, (va, vb) in fields.items()]
    for key in sorted(set(ma) | set(mb)):
        va, vb = ma.get(key), mb.get(key)
        delta = ""
        if _number(va) and _number(vb):
            delta = f"{vb - va:+.4g}"
        rows.append({"": key, a.ref: "—" if va is None else format_metric(key, va),
                     b.ref: "—" if vb is None else format_metric(key, vb), "Δ (B − A)": delta})
    return pd.DataFrame(rows)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- Downloads --------------------------------------------------------------------------------------


def downloads(card: ModelCard, settings: Settings) -> None:
    folder = catalog.model_dir(card.name, card.version, settings)
    files = [(f"Model ({MODEL_FILE})", folder / MODEL_FILE, f"{card.name}-{card.version}.keras"),
             (f"Model card ({CARD_FILE})", folder / CARD_FILE, f"{card.name}-{card.version}-card.json"),
             ("Parity report (parity.json)", folder / exports.EXPORTS_DIR / exports.PARITY_FILE,
              f"{card.name}-{card.version}-parity.json")]
    cells = st.columns(3)
    for index, (label, path, file_name) in enumerate(files):
        with cells[index % 3]:
            _download(label, path, file_name, f"models.download.{index}")
    results = _results(card, settings)
    if not results:
        st.caption("No exports yet: run them on the Exports tab.")
        return
    st.markdown("**Exports**")
    cells = st.columns(3)
    for index, result in enumerate(r for r in results if r.path):
        with cells[index % 3]:
            path = folder / result.path
            if not path.exists():
                st.caption(f"{result.label}: file missing")
                continue
            size = result.size_bytes / 1e6
            st.download_button(
                f"{result.label}{' (zip)' if path.is_dir() else ''} · {size:.1f} MB",
                key=f"models.download.{result.format}",
                data=_lazy_export(card.name, card.version, result.format, settings),
                file_name=f"{card.name}-{card.version}-{result.format}{'.zip' if path.is_dir() else path.suffix}",
                on_click="ignore", icon=":material/download:", width="stretch",
            )


def _download(label: str, path: Path, file_name: str, key: str) -> None:
    if not path.exists():
        st.caption(f"{label}: not there yet")
        return
    st.download_button(f"{label} · {path.stat().st_size / 1e6:.2f} MB", data=lambda: path.read_bytes(),
                       file_name=file_name, key=key, on_click="ignore", icon=":material/download:", width="stretch")


def _lazy_export(name: str, version: str, fmt: str, settings: Settings):
    return lambda: exports.download_bytes(name, version, fmt, settings)[1]
