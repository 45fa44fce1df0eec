"""examples/notebook.ipynb runs from top to bottom, and what it prints checks out.

The notebook is executed with nbclient in a kernel running this interpreter.
A cell appended by the test then recomputes the notebook's key numbers from
the raw recorded values with SciPy and statsmodels (not with tensorstats):
the share of channels whose Shapiro-Wilk test is rejected after
Benjamini-Hochberg, and the Spearman correlation of the differenced
kurtosis with the differenced, interval-averaged loss.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebook.ipynb"

CHECK = r'''
import json
import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

check = {"table_index": list(table.index), "layers": LAYERS}
# Shapiro-Wilk of every (layer, step, channel) group on the stored values, one BH family
pvalues, keys = [], []
for layer in LAYERS:
    values = run["feature", layer].values
    values = values.reshape(values.shape[0], values.shape[1], -1)
    for i in range(values.shape[0]):
        for c in range(values.shape[1]):
            pvalues.append(stats.shapiro(values[i, c]).pvalue)
            keys.append(layer)
reject = multipletests(pvalues, method="fdr_bh")[0]
keys = np.array(keys)
check["share_ref"] = {l: float(reject[keys == l].mean()) for l in LAYERS}
check["share_nb"] = {l: float(share.sel(test="shapiro", layer=l).mean()) for l in LAYERS}
# Spearman of differenced kurtosis vs differenced mean loss over each logging interval
steps = kurtosis["step"].values
loss_values = run.scalars["loss"].to_series()
edges = np.concatenate([[-np.inf], steps])
mean_loss = np.array([loss_values[(loss_values.index > lo) & (loss_values.index <= hi)].mean()
                      for lo, hi in zip(edges[:-1], edges[1:])])
check["r_ref"] = {l: float(stats.spearmanr(np.diff(kurtosis.sel(layer=l).values),
                                           np.diff(mean_loss)).statistic) for l in LAYERS}
check["r_nb"] = {l: float(table.loc[l, "differenced r (lag 0)"]) for l in LAYERS}
check["raw_ref"] = {l: float(stats.spearmanr(kurtosis.sel(layer=l).values, mean_loss).statistic)
                    for l in LAYERS}
check["raw_nb"] = {l: float(table.loc[l, "raw r"]) for l in LAYERS}
print("CHECK" + json.dumps(check))
'''


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "save the notebook with its outputs cleared"
    nb.cells.append(nbformat.v4.new_code_cell(CHECK))
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager

    # a kernel running this interpreter, whatever kernelspecs are installed
    ksm = KernelSpecManager()
    ksm.kernel_dirs = [str(tmp_path_factory.mktemp("kernels"))]
    spec_dir = Path(ksm.kernel_dirs[0]) / NATIVE_KERNEL_NAME
    spec_dir.mkdir()
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tensorstats tests", "language": "python"}))
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=NATIVE_KERNEL_NAME, kernel_spec_manager=ksm)
    client = nbclient.NotebookClient(nb, km=km, timeout=300,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    return nb


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream"
                   and o.name == "stdout")


def test_every_cell_ran_without_error(executed) -> None:
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    for cell in code:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source[:80]


def test_figures_are_drawn(executed) -> None:
    images = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # normality heat map, distributions, kurtosis trajectories


def test_last_cell_prints_a_row_per_conv_layer(executed) -> None:
    last = [c for c in executed.cells if c.cell_type == "code"][-2]  # before the check cell
    lines = _stdout(last).splitlines()
    assert "raw r" in lines[0] and "FDR p" in lines[0]
    assert [line.split()[0] for line in lines[2:]] == ["conv1", "conv2", "conv3"]


def test_numbers_match_scipy(executed) -> None:
    out = _stdout(executed.cells[-1])
    check = json.loads(out[out.index("CHECK") + 5:])
    assert check["table_index"] == check["layers"] == ["conv1", "conv2", "conv3"]
    for layer in check["layers"]:
        assert check["share_nb"][layer] == pytest.approx(check["share_ref"][layer], abs=1e-12)
        assert check["r_nb"][layer] == pytest.approx(check["r_ref"][layer], abs=1e-9)
        assert check["raw_nb"][layer] == pytest.approx(check["raw_ref"][layer], abs=1e-9)
