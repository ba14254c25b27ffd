"""The example notebook: committed without outputs, and run top to bottom against a live server."""

import nbformat
import pytest

from tests.support.harness import ROOT

NOTEBOOK = ROOT / "examples" / "sentiment_api.ipynb"


def test_committed_notebook_has_no_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_notebook_runs_against_a_live_server(dev_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    monkeypatch.setenv("SENTIMENT_API_URL", dev_server)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    shown = "\n".join(output.get("data", {}).get("text/plain", "") for output in outputs)
    assert "'prediction': 'Negative'" in shown  # the single call
    assert "somewhat positive" in shown or "positive" in shown  # the batch and the DataFrame
    assert any("image/png" in output.get("data", {}) for output in outputs)  # the plot
