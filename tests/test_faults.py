"""Faults, each a test: damaged chunks, hand-edited metadata, a full disk, hostile stores.

Each test breaks one thing and checks (1) that reading names the damaged
series and step, (2) that every other series still reads exactly, and (3)
that ``ts.check`` / ``tensorstats check`` list the problem. A writer killed
with SIGKILL is tested in ``test_crash.py``.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest

import tensorstats as ts
from tensorstats.errors import DamagedStoreError, FormatVersionError
from tensorstats.run import DamagedSeriesWarning

STEPS = [0, 10, 20, 30]
LAYERS = ("A", "B", "C")
EXE = Path(sys.executable).parent / "tensorstats"


def values(layer: str, step: int) -> np.ndarray:
    seed = LAYERS.index(layer) * 1000 + step
    # 6 KiB a step: a chunk file per step (rows of at most 4 KiB are packed)
    return np.random.default_rng(seed).normal(size=(3, 16, 32)).astype(np.float32)


def make_run(path: Path, codec: str = "none") -> Path:
    with ts.Recorder(path, codec=codec) as rec:
        for step in STEPS:
            for layer in LAYERS:
                rec.record("feature", layer, values(layer, step), step=step)
            rec.record_scalar("loss", 1.0 / (step + 1), step=step)
    return path


@pytest.fixture
def run_path(tmp_path) -> Path:
    return make_run(tmp_path / "run.zarr")


def chunk(path: Path, layer: str, row: int) -> Path:
    return path / "tensors" / "feature" / layer / "tensor" / f"c.{row}.0.0.0"


def assert_others_intact(run: ts.Run, damaged: str) -> None:
    for layer in LAYERS:
        if layer != damaged:
            got = run["feature", layer].values
            np.testing.assert_array_equal(got, np.stack([values(layer, s) for s in STEPS]))
    np.testing.assert_array_equal(run.scalars["loss"].values, [1.0 / (s + 1) for s in STEPS])


def cli_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), "check", str(path)], capture_output=True, text=True)


def errors_of(path: Path) -> list:
    return [p for p in ts.check(path) if p.severity == "error"]


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_truncated_or_missing_chunk(run_path, damage):
    target = chunk(run_path, "B", 2)  # step 20
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    else:
        target.unlink()
    run = ts.open_run(run_path, chunk_bytes=1)  # one step per dask chunk
    assert_others_intact(run, "B")
    b = run["feature", "B"]
    for step in (0, 10, 30):  # the other steps of the damaged series still read
        np.testing.assert_array_equal(b.sel(step=step).values, values("B", step))
    with pytest.raises(DamagedStoreError, match=r"feature/B step 20") as err:
        b.values  # noqa: B018
    assert ("missing" if damage == "delete" else "holds 100 bytes") in str(err.value)
    problems = errors_of(run_path)
    assert [(p.series, p.step) for p in problems] == [("feature/B", 20)]
    assert ("missing" if damage == "delete" else "holds 100 bytes") in problems[0].message
    res = cli_check(run_path)
    assert res.returncode == 9 and "feature/B step 20" in res.stdout, res.stdout + res.stderr


def test_truncated_packed_chunk(tmp_path):
    """A chunk holding the steps of a small series: those steps are named, the rest reads."""
    path = make_run(tmp_path / "run.zarr")
    with ts.Recorder(path, mode="a") as rec:
        for step in STEPS:
            rec.record("feature", "bias", np.full(8, step, np.float32), step=step)
    target = path / "tensors" / "feature" / "bias" / "tensor" / "c.0.0"
    target.write_bytes(target.read_bytes()[:20])
    run = ts.open_run(path)
    assert_others_intact(run, "bias")
    with pytest.raises(DamagedStoreError, match=r"feature/bias step") as err:
        run["feature", "bias"].values  # noqa: B018
    assert "holds 20 bytes" in str(err.value)
    problems = errors_of(path)
    assert {p.series for p in problems} == {"feature/bias"} and problems, problems
    assert all("(steps 0-30)" in p.message and "holds 20 bytes" in p.message for p in problems)
    assert cli_check(path).returncode == 9


def test_resuming_over_a_damaged_packed_chunk_refuses_to_write(tmp_path):
    """Appending to a packed chunk whose committed rows cannot be read back would
    overwrite them with the fill value: the writer raises instead, and writes nothing."""
    path = tmp_path / "run.zarr"
    with ts.Recorder(path) as rec:
        for step in range(3):
            rec.record("feature", "bias", np.full(8, step, np.float32), step=step)
    target = path / "tensors" / "feature" / "bias" / "tensor" / "c.0.0"
    damaged = target.read_bytes()[:20]
    target.write_bytes(damaged)
    with ts.Recorder(path, mode="a") as rec:
        with pytest.raises(DamagedStoreError, match="committed"):
            rec.record("feature", "bias", np.full(8, 3.0, np.float32), step=3)
        rec.record("feature", "other", np.ones(8, np.float32), step=3)  # the rest goes on
    assert target.read_bytes() == damaged
    run = ts.open_run(path)
    assert run["feature", "bias"]["step"].values.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(run["feature", "other"].values, np.ones((1, 8)))


def test_corrupted_compressed_chunk(tmp_path):
    path = make_run(tmp_path / "lz4.zarr", codec="lz4")
    target = chunk(path, "C", 1)  # step 10
    # cut short, as a torn copy would leave it. (Flipped bits inside a chunk are not
    # detectable: the codecs store no checksum.)
    target.write_bytes(target.read_bytes()[:-40])
    run = ts.open_run(path, chunk_bytes=1)
    assert_others_intact(run, "C")
    with pytest.raises(DamagedStoreError, match=r"feature/C step 10"):
        run["feature", "C"].values  # noqa: B018
    assert [(p.series, p.step) for p in errors_of(path)] == [("feature/C", 10)]


def test_group_metadata_not_json(run_path):
    (run_path / "tensors" / "feature" / "B" / "zarr.json").write_text("{not json")
    with pytest.warns(DamagedSeriesWarning, match="feature/B"):
        run = ts.open_run(run_path)
    assert list(run.damaged) == ["feature/B"] and "JSON" in run.damaged["feature/B"]
    assert run.layers("feature") == ["A", "C"]
    assert_others_intact(run, "B")
    with pytest.raises(DamagedStoreError, match="feature/B"):
        run["feature", "B"]
    assert [(p.series, "not valid JSON" in p.message) for p in errors_of(run_path)] == [
        ("feature/B", True)]


def test_array_shape_edited_by_hand(run_path):
    meta_path = run_path / "tensors" / "feature" / "A" / "tensor" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["shape"][1] = 6  # 3 channels recorded; the edit claims 6
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(DamagedSeriesWarning, match="feature/A"):
        run = ts.open_run(run_path)
    assert "shape" in run.damaged["feature/A"]
    assert_others_intact(run, "A")
    problems = errors_of(run_path)
    assert problems and {p.series for p in problems} == {"feature/A"}
    assert all("missing" in p.message for p in problems)  # the chunks the edit invents


def test_unknown_format_version(run_path):
    meta_path = run_path / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["tensorstats"]["format_version"] = "7.1"
    meta.pop("consolidated_metadata", None)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(FormatVersionError, match="7.1"):
        ts.open_run(run_path)
    assert [p.series for p in ts.check(run_path)] == ["store"]
    with pytest.raises(FormatVersionError):
        ts.Recorder(run_path, mode="a")


def test_a_pickle_in_a_store_is_never_unpickled(run_path, tmp_path):
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    layer = run_path / "tensors" / "feature" / "B" / "tensor"
    meta = json.loads((layer / "zarr.json").read_text())
    meta["data_type"] = "object"
    meta["codecs"] = [{"name": "numcodecs.pickle", "configuration": {"protocol": 4}}]
    (layer / "zarr.json").write_text(json.dumps(meta))
    for row in range(len(STEPS)):
        chunk(run_path, "B", row).write_bytes(pickle.dumps(np.array([Exploit()], object)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedSeriesWarning)
        run = ts.open_run(run_path)
        assert "feature/B" in run.damaged
        assert_others_intact(run, "B")
        with pytest.raises(DamagedStoreError):
            run["feature", "B"]
    problems = errors_of(run_path)
    assert problems and "not numeric" in problems[0].message
    assert not marker.exists()


def _fill_until_full(path: str, asynchronous: bool) -> tuple[int, BaseException]:
    """Record 64 KiB steps until the store's disk is full; the steps committed and the error."""
    rec = ts.Recorder(path, asynchronous=asynchronous)
    committed = 0
    error: BaseException | None = None
    try:
        for step in range(10_000):
            rec.record("weight", "w", np.full((128, 128), step, np.float32), step=step)
            if asynchronous:
                rec.flush()
            committed = step + 1
    except OSError as e:
        error = e
    finally:
        try:
            rec.close()
        except OSError:
            pass  # consolidating needs space too; the store stays readable without it
    assert error is not None, "the disk never filled"
    return committed, error


def _assert_committed_steps_intact(path: str, committed: int,
                                   storage_options: dict | None = None) -> None:
    run = ts.open_run(path, storage_options=storage_options)
    w = run["weight", "w"]
    assert w.sizes["step"] >= committed - 1  # the failing step may or may not have committed
    got = w.values
    for i, step in enumerate(w["step"].values):
        assert (got[i] == step).all()
    assert not [p for p in ts.check(path, storage_options=storage_options)
                if p.severity == "error"]


@pytest.fixture
def tiny_tmpfs(tmp_path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()}); the fsspec "
                    "full-disk test covers it")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_full_disk_tmpfs(tiny_tmpfs, asynchronous):
    path = str(tiny_tmpfs / "run.zarr")
    committed, error = _fill_until_full(path, asynchronous)
    assert getattr(error, "errno", None) == errno.ENOSPC, error
    assert committed >= 5
    _assert_committed_steps_intact(path, committed)


def test_full_disk_fsspec():
    fsspec = pytest.importorskip("fsspec")
    from fsspec.implementations.memory import MemoryFileSystem

    class FullMemory(MemoryFileSystem):
        protocol = "fullmem"
        budget = 600_000

        def _spend(self, n: int) -> None:
            if n > FullMemory.budget:
                raise OSError(errno.ENOSPC, "No space left on device (test filesystem)")
            FullMemory.budget -= n

        def pipe_file(self, path, value, *args, **kwargs):
            self._spend(len(value))
            return super().pipe_file(path, value, *args, **kwargs)

        def _open(self, path, mode="rb", **kwargs):
            f = super()._open(path, mode, **kwargs)
            if "w" in mode or "a" in mode:
                write = f.write

                def counted(data):
                    self._spend(len(data))
                    return write(data)
                f.write = counted
            return f

    fsspec.register_implementation("fullmem", FullMemory, clobber=True)
    path = f"fullmem://{uuid.uuid4().hex}/run.zarr"
    committed, error = _fill_until_full(path, asynchronous=False)
    assert "No space left" in str(error)
    FullMemory.budget = 10**9  # reading needs no space, but check() may list files
    _assert_committed_steps_intact(path, committed)
