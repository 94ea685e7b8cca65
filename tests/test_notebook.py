"""notebooks/eda.ipynb runs headless on the session's data (nbclient, the venv's python3 kernel)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "eda.ipynb"


def _text(nb: nbformat.NotebookNode) -> str:
    out = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            out.append(output.get("text") or output.get("data", {}).get("text/plain", ""))
    return "\n".join(out)


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert NOTEBOOK.stat().st_size < 50_000


@pytest.mark.timeout(600)
def test_eda_notebook_runs_on_the_session_data(processed_version: str, monkeypatch):
    """Executed against the session's raw bucket and published version (the TAMALES_* settings)."""
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the kernel inherits this process's environment
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(NOTEBOOK.parent.parent)}}
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"notebook cell failed:\n{exc}")
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    text = _text(nb)
    # It used the session's data (no sample generated) and found the version the features flow published.
    assert f"data version: {processed_version}" in text and "using generated sample data" not in text
    assert "stored splits equal the recomputed ones: True" in text
    assert (
        sum(
            o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
            for c in nb.cells
            for o in c.get("outputs", [])
        )
        >= 4
    )
