"""notebooks/explore_model.ipynb runs top to bottom (nbclient) on a tiny freshly trained model."""

from __future__ import annotations

import nbformat
import pytest

from imgrec.core.settings import PROJECT_ROOT
from imgrec.training import runs, trainer
from tests.helpers.datasets import make_image_folder
from tests.helpers.settings import make_settings
from tests.helpers.training import tiny_config

NOTEBOOK = PROJECT_ROOT / "notebooks" / "explore_model.ipynb"


@pytest.mark.slow
def test_explore_model_notebook_executes(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    settings = make_settings(tmp_path)
    folder = make_image_folder(tmp_path / "ds", per_class=10)
    run = trainer.train(tiny_config(folder, name="nb-model", epochs=1), settings)
    assert run.state == runs.COMPLETED, run.log_tail()
    monkeypatch.setenv("IMGREC_NOTEBOOK_MODEL_DIR", str(settings.models_dir / "nb-model" / "1"))
    monkeypatch.setenv("IMGREC_NOTEBOOK_LIMIT", "0")
    monkeypatch.setenv("IMGREC_DATA_DIR", str(settings.data_dir))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert "parameters" in notebook.cells[1].metadata.get("tags", [])
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(PROJECT_ROOT)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "nb-model@1: small_cnn" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3  # curves, Grad-CAM, confusion + reliability
    html = "\n".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "macro_f1" in html and "precision" in html
