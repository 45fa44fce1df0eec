"""Run stores on S3 (the ``s3`` extra), against moto's S3 server on loopback.

Every S3 result is compared with a reference that does not go through S3: the
same training recorded to a local folder (same seeds), the torch tensors the
model used, or numbers computed here with NumPy.
"""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import tensorstats as ts
from tensorstats.store.backend import FsspecBackend

pytest.importorskip("s3fs", reason="the s3 extra (s3fs) is not installed")
pytest.importorskip("moto.server", reason="moto[server] is not installed")

from _moto_server import (
    REGION,
    all_objects,
    free_port,
    moto_s3,
    raw_filesystem,
    s3_client,
)

pytestmark = pytest.mark.slow

KEY_ID = "tensorstats-test-key-id"
SECRET = f"SECRET-{uuid.uuid4()}"
"""The secret access key of these tests: it must never leave the process' memory."""
STEPS = 3
MAX_ELEMENTS = 8
"""Fewer than the 16 samples of a feature, more than the 6 inputs of a weight row:
features are subsampled (with stored moments), weights and grads are stored whole."""
BATCH = 16


# ------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server; an environment where no real AWS credential can be picked up."""
    import s3fs

    nowhere = tmp_path_factory.mktemp("aws") / "absent"
    with pytest.MonkeyPatch.context() as mp:
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(var, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "env-key-id-not-used")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-not-used")
        mp.setenv("AWS_CONFIG_FILE", str(nowhere))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        s3fs.S3FileSystem.clear_instance_cache()
        with moto_s3() as endpoint:
            yield endpoint
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def raw(s3):
    """An s3fs instance of the tests' own, to list and read the buckets directly."""
    return raw_filesystem(s3, KEY_ID, SECRET)


def options(endpoint: str, **extra) -> dict:
    """storage_options carrying the test credentials and the loopback endpoint."""
    return {"key": KEY_ID, "secret": SECRET,
            "client_kwargs": {"endpoint_url": endpoint, "region_name": REGION}, **extra}


def new_bucket(endpoint: str) -> str:
    name = f"ts-{uuid.uuid4().hex[:12]}"
    s3_client(endpoint, KEY_ID, SECRET).create_bucket(Bucket=name)
    return name


# ------------------------------------------------------------------ the training
class Training:
    """A small MLP trained with SGD; the same seed gives the same run, bit for bit.

    ``seen[step]`` keeps what the first layer used at that step (weight, bias,
    input), taken from torch before the optimiser changes it.
    """

    def __init__(self, seed: int = 0):
        import torch

        self.torch = torch
        torch.manual_seed(seed)
        nn = torch.nn
        self.model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.data = torch.Generator().manual_seed(seed + 1)
        self.next_step = 0
        self.seen: dict[int, dict[str, np.ndarray]] = {}

    def run(self, recorder, steps: int, **scalars) -> None:
        """``steps`` training steps under ``tensorstats.torch.watch`` (asynchronous)."""
        from tensorstats.torch import watch

        torch = self.torch
        with watch(self.model, recorder, max_elements=MAX_ELEMENTS,
                   start_step=self.next_step) as w:
            assert recorder.asynchronous  # watch's default: the background writer
            for step in range(self.next_step, self.next_step + steps):
                x = torch.randn(BATCH, 6, generator=self.data)
                y = torch.randn(BATCH, 3, generator=self.data)
                first = self.model[0]
                self.seen[step] = {"weight": first.weight.detach().numpy().copy(),
                                   "bias": first.bias.detach().numpy().copy(),
                                   "x": x.numpy().copy()}
                self.opt.zero_grad()
                loss = torch.nn.functional.mse_loss(self.model(x), y)
                loss.backward()
                self.opt.step()
                w.step(step, loss=loss.item(), **scalars)
        self.next_step += steps


@pytest.fixture(scope="module")
def pair(s3, tmp_path_factory):
    """The same training recorded to S3 and to a local folder: (url, local path, Training)."""
    pytest.importorskip("torch")
    url = f"s3://{new_bucket(s3)}/run.zarr"
    local = str(tmp_path_factory.mktemp("local") / "run.zarr")
    with ts.Recorder(url, storage_options=options(s3), attrs={"where": "either"}) as rec:
        training = Training()
        training.run(rec, STEPS)
    with ts.Recorder(local, attrs={"where": "either"}) as rec:
        Training().run(rec, STEPS)
    return url, local, training


def assert_same_run(actual: ts.Run, expected: ts.Run) -> int:
    """Every series, moment array, scalar and attribute equal; returns the series count."""
    assert actual.kinds == expected.kinds
    count = 0
    for kind in expected.kinds:
        assert actual.layers(kind) == expected.layers(kind)
        for layer in expected.layers(kind):
            xr.testing.assert_identical(actual[kind, layer].compute(),
                                        expected[kind, layer].compute())
            got, want = actual.moments(kind, layer), expected.moments(kind, layer)
            assert (got is None) == (want is None)
            if want is not None:
                xr.testing.assert_identical(got.compute(), want.compute())
            count += 1
    xr.testing.assert_identical(actual.scalars.compute(), expected.scalars.compute())

    def user(attrs):
        return {k: v for k, v in attrs.items() if k != "tensorstats"}

    assert user(actual.attrs) == user(expected.attrs)
    np.testing.assert_array_equal(actual.steps, expected.steps)
    return count


# --------------------------------------------------------------------------- tests
def test_watch_to_s3_reads_back_as_the_local_run(s3, pair):
    """(a)+(b): watch + asynchronous writer to s3://, read with open_run(storage_options=)."""
    url, local, _ = pair
    run = ts.open_run(url, storage_options=options(s3))
    ref = ts.open_run(local)
    assert run.store == url
    assert run.kinds == ["feature", "feature_grad", "grad", "weight"]
    n = assert_same_run(run, ref)
    assert n == 12  # 4 parameters x (weight, grad) + 2 Linear x (feature, feature_grad)
    assert run.moments("feature", "0") is not None  # the subsampled path was exercised
    assert run.moments("weight", "0.weight") is None
    np.testing.assert_array_equal(run.steps, np.arange(STEPS))
    assert run.scalars["loss"].sizes == {"step": STEPS}


def test_s3_values_match_the_torch_tensors(s3, pair):
    """The S3 run against what torch computed, not against another store."""
    url, _, training = pair
    run = ts.open_run(url, storage_options=options(s3))
    seen = training.seen
    weight = run["weight", "0.weight"].values  # (step, channel=out, dim_1=in)
    np.testing.assert_array_equal(weight, np.stack([seen[s]["weight"] for s in range(STEPS)]))
    # The feature of layer 0 is x @ W.T + b; stored channel-first, subsampled to
    # MAX_ELEMENTS samples, with exact moments of all BATCH samples alongside.
    full = np.stack([(seen[s]["x"] @ seen[s]["weight"].T + seen[s]["bias"]).T
                     for s in range(STEPS)])  # (step, channel, sample)
    feature = run["feature", "0"]
    positions = feature["position"].values
    assert feature.sizes["element"] == MAX_ELEMENTS
    np.testing.assert_allclose(feature.values, full[:, :, positions], rtol=1e-6, atol=1e-6)
    m = ts.moments(run.moments("feature", "0"))
    np.testing.assert_allclose(m["mean"].values, full.mean(axis=2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m["var"].values, full.var(axis=2), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(m["count"].values, np.full(full.shape[:2], BATCH))


def test_s3_objects_are_the_local_layout(s3, raw, pair):
    """The bucket's keys are the local folder's files (docs/format.md), byte for byte."""
    url, local, _ = pair
    bucket, prefix = url.removeprefix("s3://").split("/", 1)
    objects = all_objects(raw, bucket)
    remote = {k.removeprefix(prefix + "/"): v for k, v in objects.items()}
    root = Path(local)
    files = {p.relative_to(root).as_posix(): p.read_bytes()  # lock files: local writers only
             for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tensorstats-lock")}
    assert sorted(remote) == sorted(files)
    assert "tensors/feature/0/tensor/c.0.0.0" in remote
    for key, data in files.items():
        if key == "zarr.json":  # the root differs in its creation time only
            a, b = json.loads(remote[key]), json.loads(data)
            for doc in (a, b):
                doc["attributes"]["tensorstats"].pop("created")
            assert a == b
        else:
            assert remote[key] == data, key
    # plain xarray opens it too, without tensorstats
    tree = xr.open_datatree(url, engine="zarr", storage_options=options(s3))
    np.testing.assert_array_equal(tree["tensors/weight/0.weight"]["tensor"].values,
                                  ts.open_run(local)["weight", "0.weight"].values)


def test_open_runs_stacks_a_local_and_an_s3_run(s3, pair):
    """(c): a local run and an S3 run side by side along ``run``."""
    url, local, training = pair
    runs = ts.Runs({"local": ts.open_run(local),
                    "s3": ts.open_run(url, storage_options=options(s3))})
    da = runs["weight", "0.weight"]
    assert da.dims == ("run", "step", "channel", "dim_1")
    want = np.stack([training.seen[s]["weight"] for s in range(STEPS)])
    np.testing.assert_array_equal(da.sel(run="s3").values, want)
    np.testing.assert_array_equal(da.sel(run="local").values, want)
    loss = runs.scalars["loss"]
    np.testing.assert_array_equal(loss.sel(run="s3").values, loss.sel(run="local").values)
    assert "s3://" in repr(runs)


def test_open_runs_one_call_with_a_local_and_an_s3_store(s3, pair):
    url, local, _ = pair
    runs = ts.open_runs({"local": local, "s3": url}, storage_options=options(s3))
    da = runs["weight", "0.weight"]
    np.testing.assert_array_equal(da.sel(run="s3").values, da.sel(run="local").values)


def test_analyses_on_s3_equal_the_local_ones(s3, pair):
    """(d): ts.moments and ts.normality give the same numbers from S3 as from disk."""
    url, local, _ = pair
    run = ts.open_run(url, storage_options=options(s3))
    ref = ts.open_run(local)
    for kind, layer in (("feature", "0"), ("grad", "2.weight"), ("feature_grad", "2")):
        xr.testing.assert_identical(ts.moments(run[kind, layer]).compute(),
                                    ts.moments(ref[kind, layer]).compute())
        xr.testing.assert_identical(ts.normality(run[kind, layer]).compute(),
                                    ts.normality(ref[kind, layer]).compute())
    got = ts.moments(run["grad", "2.weight"], by="step")
    want = ref["grad", "2.weight"].values.reshape(STEPS, -1)
    np.testing.assert_allclose(got["std"].values, want.std(axis=1), rtol=1e-5)


def is_payload_chunk(key: str) -> bool:
    """A chunk of a tensor or moments array (one step each), not metadata or ``step``."""
    return "/tensor/c." in key or "/moments/c." in key


def test_resume_on_s3_appends_and_keeps_old_steps(s3, raw, tmp_path):
    """(e): a second Recorder in mode "a" continues the run; earlier steps are untouched."""
    pytest.importorskip("torch")
    bucket = new_bucket(s3)
    url = f"s3://{bucket}/run.zarr"
    training = Training(seed=3)
    with ts.Recorder(url, storage_options=options(s3)) as rec:
        training.run(rec, 2)
    before = all_objects(raw, bucket, keep=is_payload_chunk)
    reader = ts.open_run(url, storage_options=options(s3))  # lists the store now
    assert list(reader.scalars) == ["loss"]
    # Another writer (its own s3fs instance, as another process would have)
    # appends two steps and a new scalar.
    other = options(s3, skip_instance_cache=True)
    with ts.Recorder(url, mode="a", storage_options=other) as rec:
        training.run(rec, 2, lr=0.1)

    reference = Training(seed=3)  # the same four steps in one local Recorder
    local = str(tmp_path / "run.zarr")
    with ts.Recorder(local) as rec:
        reference.run(rec, 2)
        reference.run(rec, 2, lr=0.1)

    run = ts.open_run(url, storage_options=options(s3))  # the reader's s3fs instance
    assert list(run.scalars) == ["loss", "lr"]  # not hidden by a cached listing
    assert_same_run(run, ts.open_run(local))
    np.testing.assert_array_equal(run["weight", "0.weight"]["step"].values, [0, 1, 2, 3])
    np.testing.assert_array_equal(run["weight", "0.weight"].values,
                                  np.stack([training.seen[s]["weight"] for s in range(4)]))
    # The payload of steps 0-1 is unchanged: a chunk of its own per step for large
    # rows (the same object, the same bytes), and the committed slots of a packed
    # chunk of small rows (which the new steps' rows were added to) byte for byte.
    after = all_objects(raw, bucket, keep=is_payload_chunk)
    meta = all_objects(raw, bucket, keep=lambda k: k.endswith("/zarr.json"))
    packed = 0
    for key, old in before.items():
        array = json.loads(meta[key.rsplit("/", 1)[0] + "/zarr.json"])
        steps_per_chunk = array["chunk_grid"]["configuration"]["chunk_shape"][0]
        if steps_per_chunk == 1:
            assert after[key] == old, key
        else:
            packed += 1
            committed = 2 * len(old) // steps_per_chunk  # steps 0 and 1
            assert after[key][:committed] == old[:committed], key
            assert after[key][committed:] != old[committed:], key  # steps 2-3 were added
    assert packed > 0  # this small model's rows are all packed
    assert len(after) - len(before) == 2 * (len(before) - packed)  # new chunks: large only


def test_command_line_reads_s3_with_credentials_from_the_environment(s3, pair, monkeypatch):
    """``tensorstats info s3://...`` (no storage_options there): the AWS environment only."""
    import s3fs
    from click.testing import CliRunner

    from tensorstats.cli import cli

    url, local, _ = pair
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3)
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        remote = CliRunner().invoke(cli, ["info", url])
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    here = CliRunner().invoke(cli, ["info", local])
    assert remote.exit_code == 0, remote.output
    assert here.exit_code == 0, here.output

    def body(text):  # all but the lines naming the store and its size
        return [line for line in text.splitlines()
                if not line.startswith("run:") and "on disk" not in line]

    assert f"run: {url}" in remote.output
    assert "0.weight" in remote.output
    assert body(remote.output) == body(here.output)
    assert SECRET not in remote.output


def _exception_text(exc: BaseException) -> str:
    """str, repr and the formatted traceback of ``exc`` and its whole chain."""
    parts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts += [str(exc), repr(exc), repr(exc.args)]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


@pytest.mark.parametrize("source", ["storage_options", "environment"])
def test_the_secret_key_never_leaks(s3, raw, source, monkeypatch, caplog, capfd, recwarn):
    """(f): not in the bucket, in reprs, in errors, in logs, in stdout/stderr, in warnings."""
    import s3fs

    if source == "storage_options":
        so = options(s3)
    else:  # credentials from the environment; storage_options only say where
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        so = {"client_kwargs": {"endpoint_url": s3, "region_name": REGION}}
        s3fs.S3FileSystem.clear_instance_cache()
    caplog.set_level(logging.DEBUG)
    bucket = new_bucket(s3)
    url = f"s3://{bucket}/run.zarr"
    marker = f"MARKER-{uuid.uuid4()}"
    texts: list[str] = []
    errors: dict[str, type[BaseException]] = {}

    def expect(name, exc_type, fn):
        with pytest.raises(exc_type) as info:
            fn()
        errors[name] = info.type
        texts.append(_exception_text(info.value))

    rec = ts.Recorder(url, storage_options=so, attrs={"marker": marker}, asynchronous=True)
    for step in range(3):
        rec.record("weight", "fc.weight", np.arange(12.0).reshape(4, 3) * step, step=step)
        rec.record("feature", "fc", np.ones((5, 4, 20)), step=step, channel_axis=1,
                   max_elements=6)
        rec.record_scalar("loss", 1.0 / (step + 1), step=step)
    texts += [repr(rec), str(rec), repr(rec._backend)]
    rec.close()
    texts.append(repr(rec))

    run = ts.open_run(url, storage_options=so)
    np.testing.assert_array_equal(run["weight", "fc.weight"].values[2],
                                  np.arange(12.0).reshape(4, 3) * 2)
    assert run.attrs["marker"] == marker
    runs = ts.open_runs([url], storage_options=so)
    texts += [repr(run), str(run), repr(run._backend), repr(run["weight", "fc.weight"]),
              repr(run.tree), repr(runs), repr(runs["weight", "fc.weight"]), repr(run.attrs)]

    expect("missing store", ts.errors.StoreNotFoundError,
           lambda: ts.open_run(f"s3://{bucket}/missing.zarr", storage_options=so))
    expect("missing bucket (read)", ts.errors.StoreNotFoundError,
           lambda: ts.open_run("s3://ts-no-such-bucket/run.zarr", storage_options=so))
    expect("missing bucket (write)", FileNotFoundError,
           lambda: ts.Recorder("s3://ts-no-such-bucket/run.zarr", storage_options=so))
    expect("store exists", FileExistsError, lambda: ts.Recorder(url, storage_options=so))
    expect("unknown layer", ts.errors.UnknownSeriesError, lambda: run["weight", "nope"])
    s3_client(s3, KEY_ID, SECRET).put_object(Bucket=bucket, Key="plain/zarr.json", Body=b"{}")
    expect("not a run store", ts.errors.NotARunStoreError,
           lambda: ts.open_run(f"s3://{bucket}/plain", storage_options=so))
    unreachable = {**so, "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{free_port()}",
                                           "region_name": REGION},
                   "config_kwargs": {"retries": {"max_attempts": 1}}}
    expect("no server", Exception,
           lambda: ts.open_run(f"s3://{bucket}/run.zarr", storage_options=unreachable))

    # A write failing on the background thread: the bucket vanishes mid-run.
    doomed = new_bucket(s3)
    rec2 = ts.Recorder(f"s3://{doomed}/run.zarr", storage_options=so, asynchronous=True)
    rec2.record("weight", "w", np.ones(3), step=0)
    rec2.flush()
    client = s3_client(s3, KEY_ID, SECRET)
    for key in all_objects(raw, doomed):
        client.delete_object(Bucket=doomed, Key=key)
    client.delete_bucket(Bucket=doomed)
    rec2.record("weight", "w", np.ones(3), step=1)
    # (RuntimeError, or OSError keeping the errno where the write raised one)
    expect("background write", (RuntimeError, OSError), rec2.flush)
    assert "background write failed" in texts[-1]
    expect("close after a failed write", (RuntimeError, OSError), rec2.close)
    texts.append(repr(rec2))

    # What the checks below look at really holds what they look for.
    objects = all_objects(raw, bucket)
    assert any(marker.encode() in data for data in objects.values())
    assert any(r.name.split(".")[0] in ("botocore", "aiobotocore", "s3fs") and
               r.levelno == logging.DEBUG for r in caplog.records)
    assert len(errors) == 9

    secret = SECRET.encode()
    assert not [k for k, data in objects.items() if secret in data or secret in k.encode()]
    for text in texts:
        assert SECRET not in text, text
    for record in caplog.records:
        assert SECRET not in record.getMessage(), record.name
    assert SECRET not in caplog.text
    out, err = capfd.readouterr()
    assert SECRET not in out and SECRET not in err
    assert not [w for w in recwarn if SECRET in str(w.message)]


def test_fsspec_backend_repr_hides_storage_options():
    backend = FsspecBackend(f"memory://ts-s3-repr/{uuid.uuid4().hex}/run.zarr",
                            storage_options={"secret": SECRET})
    assert SECRET not in repr(backend) and SECRET not in str(backend)
    assert "memory://ts-s3-repr/" in repr(backend)
