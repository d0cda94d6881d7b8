"""The chapter-3 walk-through opens as a notebook (jupytext) and runs in a kernel started in its own folder.

Skipped unless jupytext, nbclient and ipykernel are installed (they are optional).
"""

import pytest

from ch02_text.paths import REPO_ROOT


def test_walkthrough_runs_as_a_notebook_and_shows_its_figure_inline(tmp_path):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nbformat = pytest.importorskip("nbformat")

    notebook = jupytext.read(REPO_ROOT / "ch03_attention" / "walkthrough.py")
    setup = (f"%matplotlib inline\nimport argparse\nARGS = argparse.Namespace(image_dir={str(tmp_path)!r})")
    notebook.cells.insert(0, nbformat.v4.new_code_cell(setup))  # figures to tmp_path, not the repo's image/
    # Jupyter starts the kernel in the notebook's folder, where `import ch03_attention` needs the installed repo
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO_ROOT / "ch03_attention")}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    assert "tensor([0.4419, 0.6515, 0.5683])" in text  # the book's context vector z(2)
    assert any("image/png" in o.get("data", {}) for o in outputs), "the figure was not shown inline"
    assert (tmp_path / "ch03_attention_weights.png").is_file()
