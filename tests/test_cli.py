"""The ``tensorstats`` command through its real entry point (a subprocess per call).

Every command on a small run whose data the test made, results compared with
scipy/NumPy on that data; every error case with its exit code and one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import tensorstats as ts
from tensorstats.cli import Exit

EXE = Path(sys.executable).parent / "tensorstats"
STEPS = list(range(0, 100, 10))


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def one_line_error(res: subprocess.CompletedProcess, code: Exit, *fragments: str) -> None:
    assert res.returncode == int(code), (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("tensorstats: error: ")
    assert "Traceback" not in res.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    feats = {}
    for layer, grow in (("conv1", 0.0), ("conv2", 1.0), ("fc", 0.0)):
        feats[layer] = np.stack([rng.standard_t(4, size=(16, 3, 4, 4)) * (1 + grow * i)
                                 for i in range(len(STEPS))])
    feats["conv2"][5, 0, 1, 0, 0] = np.nan  # step 50
    loss = np.exp(-np.array(STEPS) / 40.0) + rng.normal(0, 0.01, len(STEPS))
    return feats, loss


@pytest.fixture(scope="module")
def run_path(tmp_path_factory, data):
    feats, loss = data
    path = tmp_path_factory.mktemp("cli") / "demo.zarr"
    with ts.Recorder(path, attrs={"init": "kaiming"}) as rec:
        for i, step in enumerate(STEPS):
            for layer, x in feats.items():
                rec.record("feature", layer, x[i], step=step, channel_axis=1)
            rec.record("weight", "fc.weight", rng_weight(i), step=step, channel_axis=0)
            rec.record_scalar("loss", loss[i], step=step)
    return path


def rng_weight(i: int) -> np.ndarray:
    return np.random.default_rng(100 + i).normal(size=(5, 12))


def test_help_and_version():
    res = cli("--help")
    assert res.returncode == 0
    for command in ("info", "analyze", "report", "import-scalars"):
        assert command in res.stdout
    assert "Exit codes" in res.stdout
    res = cli("--version")
    assert res.returncode == 0 and ts.__version__ in res.stdout


def test_info_json(run_path, data):
    _, loss = data
    res = cli("info", str(run_path), "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    conv1 = info["kinds"]["feature"]["conv1"]
    assert conv1["shape"] == [len(STEPS), 3, 16, 4, 4] and conv1["dtype"] == "float64"
    assert conv1["steps"] == {"first": 0, "last": 90, "count": 10}
    assert conv1["dims"][:2] == ["step", "channel"]
    assert info["scalars"]["loss"]["last_value"] == pytest.approx(loss[-1], rel=1e-15)
    assert info["attrs"] == {"init": "kaiming"}
    on_disk = sum(f.stat().st_size for f in run_path.rglob("*") if f.is_file())
    assert info["size_bytes"] == on_disk
    assert set(info["kinds"]) == {"feature", "weight"}
    # findings: the NaN at step 50 in conv2, named
    assert any("50" in f and "conv2" in f for f in info["findings"]), info["findings"]


def test_info_human_opens_with_findings(run_path):
    res = cli("info", str(run_path))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[1] == "findings:"
    assert "conv2" in res.stdout and "loss" in res.stdout


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".nc", ".zarr"])
def test_analyze_formats(run_path, data, tmp_path, suffix):
    feats, _ = data
    out = tmp_path / f"res{suffix}"
    res = cli("analyze", str(run_path), "--layers", "conv*", "--tests", "shapiro",
              "--shift", "initial", "--correlate", "loss", "-o", str(out))
    assert res.returncode == 0, res.stderr
    x = feats["conv1"][3, :, 1]  # step 30, channel 1: (sample, h, w)
    if suffix in (".csv", ".parquet"):
        table = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
        assert set(table["layer"]) == {"conv1", "conv2"}
        assert set(table["analysis"]) == {"moments", "normality", "shift", "correlate"}
        row = table.query("analysis == 'moments' and layer == 'conv1' and step == 30 "
                          "and channel == 1").iloc[0]
        sw = table.query("analysis == 'normality' and layer == 'conv1' and step == 30 "
                         "and channel == 1").iloc[0]
    else:
        tree = (xr.open_datatree(out, engine="zarr", consolidated=False) if suffix == ".zarr"
                else xr.open_datatree(out, engine="h5netcdf"))
        row = tree["moments/demo/feature/conv1"].to_dataset().sel(step=30, channel=1)
        sw = tree["normality/demo/feature/conv1"].to_dataset().sel(step=30, channel=1)
        sw = {k: float(v.squeeze()) for k, v in sw.data_vars.items() if "test" in v.dims}
        assert tree["moments/demo/feature/conv1"].attrs["name"] == "conv1"
    assert float(row["std"]) == pytest.approx(np.std(x), rel=1e-12)
    assert float(row["kurtosis"]) == pytest.approx(stats.kurtosis(x, axis=None), rel=1e-10)
    assert float(sw["statistic"]) == pytest.approx(stats.shapiro(x.ravel()).statistic,
                                                   rel=1e-6)


def test_analyze_correlate_against_scipy(run_path, data, tmp_path):
    feats, loss = data
    out = tmp_path / "c.csv"
    res = cli("analyze", str(run_path), "--layers", "fc", "--tests", "none", "--correlate",
              "loss", "--detrend", "none", "--max-lag", "0", "--by", "step", "-o", str(out))
    assert res.returncode == 0, res.stderr
    table = pd.read_csv(out).query("analysis == 'correlate' and stat == 'std'")
    std = feats["fc"].reshape(len(STEPS), -1).std(axis=1)
    want = stats.spearmanr(std, loss).statistic
    assert float(table["r"].iloc[0]) == pytest.approx(want, rel=1e-12)


def test_import_scalars_then_correlate(run_path, tmp_path):
    src = tmp_path / "valid.csv"
    src.write_text("step,valid_loss\n0,3.0\n50,2.0\n90,1.5\n")
    copy = tmp_path / "copy.zarr"
    import shutil

    shutil.copytree(run_path, copy)
    res = cli("import-scalars", str(src), "--into", str(copy))
    assert res.returncode == 0, res.stderr
    assert "valid_loss" in res.stdout
    got = ts.open_run(copy).scalars["valid_loss"].dropna("step")
    assert got["step"].values.tolist() == [0, 50, 90]
    assert got.values.tolist() == [3.0, 2.0, 1.5]
    # again: the names exist, nothing is overwritten
    one_line_error(cli("import-scalars", str(src), "--into", str(copy)), Exit.EXISTS,
                   "valid_loss")
    res = cli("import-scalars", str(src), "--into", str(copy), "--prefix", "csv/")
    assert res.returncode == 0, res.stderr
    assert "csv/valid_loss" in ts.open_run(copy).scalars


def test_report_command(run_path, tmp_path):
    out = tmp_path / "rep"
    res = cli("report", str(run_path), "-o", str(out))
    assert res.returncode == 0, res.stderr
    html = (out / "index.html").read_text()
    assert html.count("<img") >= 3 and "data:image/png;base64," in html
    assert "file://" in res.stdout


# ------------------------------------------------------------------ errors
def test_error_missing_store(tmp_path):
    one_line_error(cli("info", str(tmp_path / "nope.zarr")), Exit.NOT_FOUND, "no run store")


def test_error_not_ours(tmp_path):
    import zarr

    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    one_line_error(cli("info", str(tmp_path / "plain.zarr")), Exit.NOT_A_RUN,
                   "not a tensorstats run store")
    (tmp_path / "bad.zarr").mkdir()
    (tmp_path / "bad.zarr" / "zarr.json").write_text("{not json")
    one_line_error(cli("info", str(tmp_path / "bad.zarr")), Exit.NOT_A_RUN, "not valid JSON")


def test_error_newer_format(run_path, tmp_path):
    import shutil

    copy = tmp_path / "new.zarr"
    shutil.copytree(run_path, copy)
    meta = json.loads((copy / "zarr.json").read_text())
    meta["attributes"]["tensorstats"]["format_version"] = "99.0"
    (copy / "zarr.json").write_text(json.dumps(meta))
    one_line_error(cli("info", str(copy)), Exit.FORMAT_VERSION, "99.0")


@pytest.mark.parametrize("args, fragment", [
    (("--kind", "activations"), "no kind 'activations'"),
    (("--layers", "deconv*"), "'deconv*' matches no layer"),
    (("--layers", "conv["), "'conv[' matches no layer"),
    (("--correlate", "accuracy"), "no such scalar"),
])
def test_error_unknown_names(run_path, tmp_path, args, fragment):
    res = cli("analyze", str(run_path), *args, "-o", str(tmp_path / "x.csv"))
    one_line_error(res, Exit.UNKNOWN_NAME, fragment)
    assert not (tmp_path / "x.csv").exists()


def test_error_output_exists_and_bad_suffix(run_path, tmp_path):
    out = tmp_path / "x.csv"
    out.write_text("keep me")
    one_line_error(cli("analyze", str(run_path), "-o", str(out)), Exit.EXISTS, "--overwrite")
    assert out.read_text() == "keep me"
    one_line_error(cli("analyze", str(run_path), "-o", str(tmp_path / "x.xlsx")), Exit.USAGE,
                   ".csv")
    res = cli("analyze", str(run_path), "--layers", "fc", "--tests", "none", "--overwrite",
              "-o", str(out))
    assert res.returncode == 0 and out.read_text() != "keep me"


def test_error_missing_extra(run_path, tmp_path):
    # pyarrow hidden from the interpreter: the command says which extra to install
    code = ("import sys; sys.modules['pyarrow'] = None; from tensorstats.cli import main; "
            f"sys.argv = ['tensorstats', 'analyze', {str(run_path)!r}, '--tests', 'none', "
            f"'-o', {str(tmp_path / 'x.parquet')!r}]; main()")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    one_line_error(res, Exit.MISSING_EXTRA, "tensorstats[parquet]")


def test_error_import_source_missing(run_path, tmp_path):
    one_line_error(cli("import-scalars", str(tmp_path / "none.csv"), "--into", str(run_path)),
                   Exit.NOT_FOUND, "none.csv")


def test_usage_error_is_click_code_2(run_path):
    res = cli("analyze", str(run_path))  # no -o
    assert res.returncode == int(Exit.USAGE) and "Missing option" in res.stderr


def test_debug_shows_traceback(tmp_path):
    res = cli("--debug", "info", str(tmp_path / "nope.zarr"))
    assert res.returncode != 0 and "Traceback" in res.stderr
    assert "StoreNotFoundError" in res.stderr


def test_no_progress_bar_when_piped(run_path, tmp_path):
    res = cli("analyze", str(run_path), "--tests", "none", "-o", str(tmp_path / "p.csv"))
    assert res.returncode == 0
    assert "[#" not in res.stdout and "%" not in res.stdout and "\r" not in res.stdout


def test_progress_bars_on_a_terminal(run_path, tmp_path):
    """On a terminal (a pseudo-terminal here) the run bar and Dask's bar are drawn."""
    import pty

    out = tmp_path / "tty.csv"
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([str(EXE), "analyze", str(run_path), "--tests", "shapiro",
                             "-o", str(out)], stdout=secondary, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    os.close(primary)
    text = b"".join(chunks).decode(errors="replace")
    assert "analysing runs" in text  # click's bar, one item per run
    assert "100% Completed" in text  # dask's bar
    assert out.exists()


def test_netcdf_holds_watch_style_attrs(tmp_path):
    # series recorded by watch carry nested attrs (the module's hyper-parameters,
    # None, lists): NetCDF keeps them as JSON text instead of failing mid-write
    x = np.random.default_rng(3).normal(size=(3, 8, 4, 5, 5))
    run = tmp_path / "w.zarr"
    module = {"type": "Conv2d", "kernel_size": [3, 3], "padding_mode": "zeros", "bias": None}
    with ts.Recorder(run) as rec:
        for step in range(3):
            rec.record("feature", "conv", x[step], step=step, channel_axis=1,
                       attrs={"module": module, "input_shape": [1, 7, 7]})
    out = tmp_path / "w.nc"
    res = cli("analyze", str(run), "--tests", "shapiro", "--shift", "initial", "-o", str(out))
    assert res.returncode == 0, res.stderr
    tree = xr.open_datatree(out, engine="h5netcdf")
    sw = tree["normality/w/feature/conv"].to_dataset()
    assert float(sw["statistic"].sel(step=2, channel=1).squeeze()) == pytest.approx(
        stats.shapiro(x[2, :, 1].ravel()).statistic, rel=1e-6)
    assert json.loads(sw["statistic"].attrs["module"]) == module
    assert list(sw["statistic"].attrs["input_shape"]) == [1, 7, 7]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.nc", "w.zarr"]


def test_failed_write_leaves_no_file(tmp_path):
    from tensorstats.cli._analyze import _write_atomically

    out = tmp_path / "r.csv"

    def half_then_fail(obj, path):
        Path(path).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _write_atomically(None, half_then_fail, str(out))
    assert list(tmp_path.iterdir()) == []
