"""ts.emission_absorption against a brute-force torch.autograd reference.

Written from the contract (docs, ``tensorstats/layers.py`` docstring and the
seed paper, section 2.2), not from the kernel. For a layer V = f(A; W) and
G = ∂L/∂V, the local gradient LG^{c₁→c₂} is ∂L/∂A[c₂] restricted to output
channel c₁'s contribution: one autograd backward pass of V with ``grad_outputs``
equal to G on channel c₁ and zero elsewhere gives it for every c₂ at once.
Emission Em^{c₁}(x) = Σ_{c₂} ‖LG^{c₁→c₂}(x)‖₂, absorption
Ab^{c₂}(x) = Σ_{c₁} ‖LG^{c₁→c₂}(x)‖₂, norms over every non-channel position
of the input (spatial positions, or tokens for a Linear).
"""

from __future__ import annotations

import copy
import os

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

import tensorstats as ts
from conftest import raise_if_dask_computes

torch = pytest.importorskip("torch")
nn = torch.nn

from tensorstats.torch import module_metadata, watch  # noqa: E402

ALL_KINDS = ("weight", "grad", "feature", "feature_grad")
STEPS = 3


# ---------------------------------------------------------------- helpers
class Net(nn.Module):
    """One watched layer ``conv`` followed by tanh; keeps the layer's output V."""

    def __init__(self, layer):
        super().__init__()
        self.conv = layer

    def forward(self, x):
        v = self.conv(x)
        if v.requires_grad:
            v.retain_grad()
        self.v = v
        return torch.tanh(v)


def train(path, layer, x_shape, *, dtype=torch.float64, steps=STEPS, kinds=ALL_KINDS,
          loss_scale=1.0, lr=0.1, seed=0, **watch_kw):
    """Train ``Net(layer)`` for ``steps`` steps under ``watch``; return the run and,
    per step, the input, the weight the pass used and G = ∂L/∂V of that pass."""
    gen = torch.Generator().manual_seed(seed)
    model = Net(layer).to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    rec = ts.Recorder(path)
    captures = []
    target = None
    with watch(model, rec, every=1, kinds=kinds, **watch_kw) as w:
        for step in range(steps):
            x = torch.randn(x_shape, generator=gen, dtype=dtype)
            weight = model.conv.weight.detach().clone()
            opt.zero_grad()
            out = model(x)
            if target is None:
                target = torch.randn(out.shape, generator=gen, dtype=dtype)
            loss = loss_scale * (((out - target) ** 2).sum() + out.sum())
            loss.backward()
            captures.append({"step": step, "x": x, "weight": weight,
                             "grad": model.v.grad.detach().clone()})
            opt.step()
            w.step(step, loss=loss.item())
    rec.close()
    return ts.open_run(path), captures


def reference(layer, weight, x, g):
    """Emission (N, C₁) and absorption (N, C₂) by one masked backward pass per c₁."""
    m = copy.deepcopy(layer).double()
    with torch.no_grad():
        m.weight.copy_(weight.double())
    a = x.detach().double().requires_grad_(True)
    v = m(a)
    g = g.detach().double()
    assert v.shape == g.shape
    cax = v.ndim - 1 if isinstance(m, nn.Linear) else 1
    c1n = v.shape[cax]
    n = a.shape[0]
    c2n = a.shape[cax]
    em = np.zeros((n, c1n))
    ab = np.zeros((n, c2n))
    shape = [1] * v.ndim
    shape[cax] = c1n
    for c1 in range(c1n):
        keep = torch.zeros(c1n, dtype=torch.bool)
        keep[c1] = True
        masked = torch.where(keep.view(shape), g, torch.zeros((), dtype=g.dtype))
        (lg,) = torch.autograd.grad(v, a, grad_outputs=masked, retain_graph=True)
        lg = lg.movedim(cax, 1).reshape(n, c2n, -1)
        norms = torch.linalg.vector_norm(lg, dim=2).numpy()
        em[:, c1] = norms.sum(axis=1)
        ab += norms
    return em, ab


def test_reference_helper_is_sound():
    """The masked-backward reference against LG written out as per-(c₁, c₂) transposed convs."""
    torch.manual_seed(0)
    layer = nn.Conv2d(4, 6, (3, 2), stride=2, padding=(1, 0), dilation=(1, 2), groups=2).double()
    x = torch.randn(3, 4, 8, 7, dtype=torch.float64)
    v = layer(x)
    g = torch.randn(v.shape, dtype=torch.float64)
    w = layer.weight.detach()
    em, ab = reference(layer, w, x, g)
    lg_total = torch.zeros_like(x)
    norms = np.zeros((3, 6, 4))
    per_group_in, per_group_out = 2, 3
    for c1 in range(6):
        grp = c1 // per_group_out
        for j in range(per_group_in):
            c2 = grp * per_group_in + j
            lg = torch.nn.functional.conv_transpose2d(
                g[:, c1:c1 + 1], w[c1:c1 + 1, j:j + 1], stride=2, dilation=(1, 2))
            # crop the padding (1 row each side) and the untouched bottom/right margin
            lg = lg[:, 0, 1:1 + 8, 0:7]
            lg = torch.nn.functional.pad(lg, (0, 7 - lg.shape[-1], 0, 8 - lg.shape[-2]))
            lg_total[:, c2] += lg
            norms[:, c1, c2] = torch.linalg.vector_norm(lg.reshape(3, -1), dim=1).numpy()
    np.testing.assert_allclose(em, norms.sum(axis=2), rtol=1e-12)
    np.testing.assert_allclose(ab, norms.sum(axis=1), rtol=1e-12)
    a = x.clone().requires_grad_(True)
    (full,) = torch.autograd.grad(layer(a), a, grad_outputs=g)
    torch.testing.assert_close(lg_total, full)  # Σ_{c₁} LG^{c₁→c₂} = ∂L/∂A[c₂]


def ambiguous(layer):
    """Stride above 1 with padding in the same dim: the input size is not known."""
    if isinstance(layer, nn.Linear) or isinstance(layer.padding, str):
        return False
    return any(s > 1 and p > 0 for s, p in zip(layer.stride, layer.padding, strict=True))


def values(ds, var, step):
    other = "out_channel" if var == "emission" else "in_channel"
    return ds[var].sel(step=step).transpose("sample", other).values


def check_against_captures(ds, layer, captures, rtol):
    assert ds["emission"].sizes["step"] == len(captures)
    np.testing.assert_array_equal(ds["step"].values, [c["step"] for c in captures])
    for c in captures:
        em, ab = reference(layer, c["weight"], c["x"], c["grad"])
        np.testing.assert_allclose(values(ds, "emission", c["step"]), em, rtol=rtol,
                                   atol=1e-12, err_msg=f"emission, step {c['step']}")
        np.testing.assert_allclose(values(ds, "absorption", c["step"]), ab, rtol=rtol,
                                   atol=1e-12, err_msg=f"absorption, step {c['step']}")


def record_by_hand(path, layer, weights, grads, *, name="conv", module=True, extra_attrs=None):
    """Record ``weights`` and ``grads`` (dicts step -> tensor) with ``Recorder.record``."""
    attrs = {"module": module_metadata(layer), "module_name": name} if module else {}
    rec = ts.Recorder(path)
    for step, w in sorted(weights.items()):
        rec.record("weight", f"{name}.weight", w, step=step, channel_axis=0, attrs=attrs)
    for step, g in sorted(grads.items()):
        if isinstance(layer, nn.Linear):
            cax, dims = g.ndim - 1, ("sample", *(f"dim_{i}" for i in range(1, g.ndim - 1)))
        else:
            cax = 1
            dims = ("sample", *{1: ("length",), 2: ("height", "width"),
                                3: ("depth", "height", "width")}[g.ndim - 2])
        rec.record("feature_grad", name, g, step=step, channel_axis=cax, dims=dims,
                   attrs={**attrs, **(extra_attrs or {})})
    rec.close()
    return ts.open_run(path)


def path_in(tmp_path, name="run.zarr"):
    return os.fspath(tmp_path / name)


# ------------------------------------------------------------------ cases
CASES = {
    "conv1d": (lambda: nn.Conv1d(3, 4, 3), (5, 3, 11)),
    "conv1d_s2_p2_d2": (lambda: nn.Conv1d(3, 4, 3, stride=2, padding=2, dilation=2), (5, 3, 13)),
    "conv2d": (lambda: nn.Conv2d(3, 4, 3), (4, 3, 7, 6)),
    "conv2d_nobias": (lambda: nn.Conv2d(3, 4, 3, bias=False), (4, 3, 6, 6)),
    "conv2d_pad1": (lambda: nn.Conv2d(3, 4, 3, padding=1), (4, 3, 6, 5)),
    "conv2d_pad2": (lambda: nn.Conv2d(3, 4, 3, padding=2), (4, 3, 5, 6)),
    "conv2d_s2": (lambda: nn.Conv2d(3, 4, 3, stride=2), (4, 3, 8, 9)),
    "conv2d_s2_p1": (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), (4, 3, 8, 7)),
    "conv2d_same_k3": (lambda: nn.Conv2d(3, 4, 3, padding="same"), (4, 3, 6, 5)),
    "conv2d_same_k4": (lambda: nn.Conv2d(3, 4, 4, padding="same"), (4, 3, 6, 7)),
    "conv2d_same_k4x3_d1x2": (lambda: nn.Conv2d(3, 4, (4, 3), padding="same", dilation=(1, 2)),
                              (4, 3, 7, 8)),
    "conv2d_valid": (lambda: nn.Conv2d(3, 4, 2, padding="valid"), (4, 3, 5, 5)),
    "conv2d_d2_p1": (lambda: nn.Conv2d(3, 4, 3, dilation=2, padding=1), (4, 3, 8, 7)),
    "conv2d_g2": (lambda: nn.Conv2d(4, 6, 3, groups=2, padding=1), (4, 4, 6, 5)),
    "conv2d_depthwise": (lambda: nn.Conv2d(4, 4, 3, groups=4), (4, 4, 6, 6)),
    "conv2d_depthwise_x2": (lambda: nn.Conv2d(3, 6, (3, 2), groups=3), (4, 3, 6, 5)),
    "conv2d_nonsquare": (lambda: nn.Conv2d(3, 5, (3, 5), stride=(2, 1), padding=(1, 2)),
                         (3, 3, 9, 8)),
    "conv2d_1x1": (lambda: nn.Conv2d(5, 3, 1), (4, 5, 4, 3)),
    "conv3d": (lambda: nn.Conv3d(2, 3, (2, 3, 3), stride=(1, 2, 1), padding=(0, 1, 1)),
               (3, 2, 4, 6, 5)),
    "conv3d_plain": (lambda: nn.Conv3d(2, 3, 2, bias=False), (2, 2, 4, 4, 3)),
    "linear": (lambda: nn.Linear(6, 4), (7, 6)),
    "linear_nobias": (lambda: nn.Linear(6, 4, bias=False), (7, 6)),
    "linear_tokens": (lambda: nn.Linear(5, 3), (4, 6, 5)),
    "linear_4d": (lambda: nn.Linear(5, 3), (3, 2, 4, 5)),
}


# ------------------------------------------------------------- reference
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_autograd_reference(tmp_path, case, dtype):
    make, x_shape = CASES[case]
    torch.manual_seed(1)
    layer = make()
    run, captures = train(path_in(tmp_path), layer, x_shape, dtype=dtype)
    # the weight really changes between steps: each step is checked against its own pass
    assert not torch.equal(captures[0]["weight"], captures[-1]["weight"])
    # stride 2 + padding: the input size is ambiguous; give it here (watch's own
    # input_shape attr is tested in test_watch_ambiguous_input_size)
    shape = tuple(x_shape[1:]) if ambiguous(layer) else None
    ds = ts.emission_absorption(run, "conv", input_shape=shape)

    assert isinstance(ds, xr.Dataset)
    assert ds["emission"].dims == ("step", "sample", "out_channel")
    assert ds["absorption"].dims == ("step", "sample", "in_channel")
    assert ds["emission"].dtype == np.float64 and ds["absorption"].dtype == np.float64
    assert isinstance(ds["emission"].data, da.Array)
    assert isinstance(ds["absorption"].data, da.Array)
    cax = len(x_shape) - 1 if isinstance(layer, nn.Linear) else 1
    n, c2 = x_shape[0], x_shape[cax]
    c1 = captures[0]["grad"].shape[cax]
    assert ds.sizes["sample"] == n
    assert ds.sizes["out_channel"] == c1 and ds.sizes["in_channel"] == c2

    # the recorded feature_grad is the G of the pass (sanity for the reference)
    g_store = run["feature_grad", "conv"].sel(step=1).values
    np.testing.assert_array_equal(
        g_store, np.moveaxis(captures[1]["grad"].numpy(), cax, 0))

    check_against_captures(ds, layer, captures, rtol=1e-10 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("in_size", [8, 7])
def test_watch_ambiguous_input_size(tmp_path, in_size):
    """k=3, s=2, p=1: inputs 8 and 7 both give 4; watch must store the input shape."""
    layer = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    run, captures = train(path_in(tmp_path), layer, (3, 2, in_size, in_size), steps=2)
    assert run["feature_grad", "conv"].sizes["height"] == 4
    shape = run["feature_grad", "conv"].attrs.get("input_shape")
    assert shape is not None and list(shape)[-2:] == [in_size, in_size]
    ds = ts.emission_absorption(run, "conv")
    check_against_captures(ds, layer, captures, rtol=1e-10)


def _ambiguous_by_hand(tmp_path, in_size, **kw):
    torch.manual_seed(2)
    layer = nn.Conv2d(2, 3, 3, stride=2, padding=1).double()
    x = torch.randn(3, 2, in_size, in_size + 1, dtype=torch.float64)
    g = torch.randn(layer(x).shape, dtype=torch.float64)
    w = layer.weight.detach()
    run = record_by_hand(path_in(tmp_path), layer, {0: w}, {0: g}, **kw)
    return run, layer, [{"step": 0, "x": x, "weight": w, "grad": g}]


@pytest.mark.parametrize("in_size", [8, 7])
def test_ambiguous_input_size_by_hand(tmp_path, in_size):
    run, layer, captures = _ambiguous_by_hand(tmp_path, in_size)
    with pytest.raises(ValueError, match="input_shape"):
        ts.emission_absorption(run, "conv")
    ds = ts.emission_absorption(run, "conv", input_shape=(2, in_size, in_size + 1))
    check_against_captures(ds, layer, captures, rtol=1e-10)


@pytest.mark.parametrize("in_size", [8, 7])
def test_input_shape_attr_is_read(tmp_path, in_size):
    """A feature_grad series carrying attrs['input_shape'] (what watch should store)."""
    run, layer, captures = _ambiguous_by_hand(
        tmp_path, in_size, extra_attrs={"input_shape": [2, in_size, in_size + 1]})
    ds = ts.emission_absorption(run, "conv")
    check_against_captures(ds, layer, captures, rtol=1e-10)


def test_missing_steps_are_skipped(tmp_path):
    torch.manual_seed(3)
    layer = nn.Conv2d(2, 3, 3, padding=1).double()
    xs = {s: torch.randn(4, 2, 5, 6, dtype=torch.float64) for s in range(4)}
    ws = {s: torch.randn(layer.weight.shape, dtype=torch.float64) for s in range(3)}
    gs = {s: torch.randn(4, 3, 5, 6, dtype=torch.float64) for s in range(1, 4)}
    run = record_by_hand(path_in(tmp_path), layer, ws, gs)
    ds = ts.emission_absorption(run, "conv")
    np.testing.assert_array_equal(ds["step"].values, [1, 2])
    captures = [{"step": s, "x": xs[s], "weight": ws[s], "grad": gs[s]} for s in (1, 2)]
    check_against_captures(ds, layer, captures, rtol=1e-10)


def test_reused_module_second_call(tmp_path):
    """A module called twice in a pass: ``conv[1]`` pairs with the weight ``conv.weight``."""

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            self.v0 = self.conv(x)
            h = torch.tanh(self.v0)
            self.h = h
            self.v1 = self.conv(h)
            for v in (self.v0, self.v1):
                v.retain_grad()
            return self.v1

    torch.manual_seed(4)
    model = Twice().double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = ts.Recorder(path_in(tmp_path))
    captures = {"conv": [], "conv[1]": []}
    with watch(model, rec, every=1) as w:
        for step in range(2):
            x = torch.randn(3, 3, 5, 4, dtype=torch.float64)
            weight = model.conv.weight.detach().clone()
            opt.zero_grad()
            loss = (model(x) ** 2).sum()
            loss.backward()
            captures["conv"].append({"step": step, "x": x, "weight": weight,
                                     "grad": model.v0.grad.clone()})
            captures["conv[1]"].append({"step": step, "x": model.h.detach().clone(),
                                        "weight": weight, "grad": model.v1.grad.clone()})
            opt.step()
            w.step(step)
    rec.close()
    run = ts.open_run(rec.store)
    for name, caps in captures.items():
        check_against_captures(ts.emission_absorption(run, name), model.conv, caps, rtol=1e-10)


# ---------------------------------------------------------- properties
@pytest.fixture(scope="module")
def grouped_run(tmp_path_factory):
    torch.manual_seed(5)
    layer = nn.Conv2d(4, 6, 3, stride=1, padding=1, groups=2)
    run, captures = train(path_in(tmp_path_factory.mktemp("grouped")), layer, (5, 4, 6, 5))
    return run, layer, captures


def test_total_emission_equals_total_absorption(grouped_run):
    run, _, _ = grouped_run
    ds = ts.emission_absorption(run, "conv").compute()
    total_em = ds["emission"].sum("out_channel")
    total_ab = ds["absorption"].sum("in_channel")
    assert total_em.dims == ("step", "sample")
    np.testing.assert_allclose(total_em.values, total_ab.values, rtol=1e-12)
    assert np.all(ds["emission"].values >= 0) and np.all(ds["absorption"].values >= 0)


def test_offline_is_the_default(grouped_run):
    run, _, _ = grouped_run
    auto = ts.emission_absorption(run, "conv").compute()
    offline = ts.emission_absorption(run, "conv", source="offline").compute()
    xr.testing.assert_identical(auto, offline)


def test_loss_scale_scales_both(tmp_path):
    def make():
        torch.manual_seed(6)
        return nn.Conv2d(3, 4, 3, padding=1)

    run1, _ = train(path_in(tmp_path, "a.zarr"), make(), (4, 3, 5, 5), steps=1)
    run3, _ = train(path_in(tmp_path, "b.zarr"), make(), (4, 3, 5, 5), steps=1, loss_scale=3.0)
    ds1 = ts.emission_absorption(run1, "conv").compute()
    ds3 = ts.emission_absorption(run3, "conv").compute()
    for var in ("emission", "absorption"):
        np.testing.assert_allclose(ds3[var].values, 3 * ds1[var].values, rtol=1e-12)


def _linear_formula(g, w):
    """Em, Ab from ‖G[c₁]‖·|W[c₁,c₂]|; g stored (C₁, N, positions...), w (C₁, C₂)."""
    gn = np.sqrt((g.reshape(g.shape[0], g.shape[1], -1) ** 2).sum(axis=2))  # (C₁, N)
    lg = gn[:, :, None] * np.abs(w)[:, None, :]  # (C₁, N, C₂)
    return lg.sum(axis=2).T, lg.sum(axis=0)  # (N, C₁), (N, C₂)


@pytest.mark.parametrize("case", ["conv2d_1x1", "linear", "linear_tokens"])
def test_linear_formula_from_stored_series(tmp_path, case):
    """For a 1x1 conv and a Linear, LG^{c₁→c₂} = G[c₁]·W[c₁,c₂] at every position."""
    make, x_shape = CASES[case]
    torch.manual_seed(7)
    run, _ = train(path_in(tmp_path), make(), x_shape)
    ds = ts.emission_absorption(run, "conv").compute()
    g_all = run["feature_grad", "conv"]
    w_all = run["weight", "conv.weight"]
    for step in ds["step"].values:
        g = g_all.sel(step=step).values
        w = w_all.sel(step=step).values.reshape(w_all.sizes["channel"], -1)
        em, ab = _linear_formula(g, w)
        np.testing.assert_allclose(values(ds, "emission", step), em, rtol=1e-12)
        np.testing.assert_allclose(values(ds, "absorption", step), ab, rtol=1e-12)


def _nan_run(tmp_path):
    torch.manual_seed(8)
    layer = nn.Conv2d(3, 4, 3, padding=1).double()
    x = torch.randn(5, 3, 6, 5, dtype=torch.float64)
    g = torch.randn(5, 4, 6, 5, dtype=torch.float64)
    g[2, 1, 3, 2] = float("nan")  # sample 2, output channel 1
    w = layer.weight.detach()
    run = record_by_hand(path_in(tmp_path), layer, {0: w}, {0: g})
    em, ab = reference(layer, w, x, g)
    return ts.emission_absorption(run, "conv").compute(), em, ab


def test_nan_gradient_stays_in_its_sample(tmp_path):
    ds, em, ab = _nan_run(tmp_path)
    emission, absorption = values(ds, "emission", 0), values(ds, "absorption", 0)
    others = [0, 1, 3, 4]
    assert np.isfinite(emission[others]).all() and np.isfinite(absorption[others]).all()
    np.testing.assert_allclose(emission[others], em[others], rtol=1e-10)
    np.testing.assert_allclose(absorption[others], ab[others], rtol=1e-10)
    assert np.isnan(emission[2, 1])
    assert np.isnan(absorption[2]).all()  # every c₂ receives from c₁ = 1 (groups=1)


def test_nan_gradient_stays_in_its_channel(tmp_path):
    """Em^{c₁} involves G[c₁] only: the other output channels of that sample stay finite."""
    ds, em, _ = _nan_run(tmp_path)
    emission = values(ds, "emission", 0)
    np.testing.assert_allclose(emission[2, [0, 2, 3]], em[2, [0, 2, 3]], rtol=1e-10)


# --------------------------------------------------------------- laziness
@pytest.fixture(scope="module")
def lazy_run(tmp_path_factory):
    torch.manual_seed(9)
    layer = nn.Conv2d(3, 4, 3, padding=1)
    run, captures = train(path_in(tmp_path_factory.mktemp("lazy")), layer, (5, 3, 6, 6))
    return run, layer, captures


def test_nothing_computes_until_asked(lazy_run):
    run, _, _ = lazy_run
    with raise_if_dask_computes():
        ds = ts.emission_absorption(run, "conv")
        ds2 = ts.emission_absorption(run, "conv", sample_block=2)
        total = ds["emission"].sum("out_channel") - ds2["absorption"].sum("in_channel")
    assert isinstance(ds["emission"].data, da.Array)
    assert isinstance(total.data, da.Array)
    assert np.allclose(total.values, 0, atol=1e-10)


def test_sample_block_gives_identical_results(lazy_run):
    run, layer, captures = lazy_run
    ref = ts.emission_absorption(run, "conv")
    blocked = ts.emission_absorption(run, "conv", sample_block=2)
    assert blocked["emission"].chunks[1] == (2, 2, 1)  # sample blocks of 2 (5 samples)
    assert blocked["emission"].chunks[0] == (1,) * STEPS  # one task per step
    xr.testing.assert_identical(ref.compute(), blocked.compute())
    check_against_captures(blocked, layer, captures, rtol=1e-5)


def test_schedulers_give_identical_results(lazy_run):
    run, _, _ = lazy_run
    ds = ts.emission_absorption(run, "conv", sample_block=2)
    with dask.config.set(scheduler="synchronous"):
        sync = ds.compute()
    with dask.config.set(scheduler="threads"):
        threaded = ds.compute()
    xr.testing.assert_identical(sync, threaded)


# ----------------------------------------------------------------- errors
def test_missing_feature_grad_is_a_key_error(tmp_path):
    run, _ = train(path_in(tmp_path), nn.Conv2d(2, 3, 3), (2, 2, 5, 5), steps=1,
                   kinds=("weight",))
    with pytest.raises(KeyError, match="conv"):
        ts.emission_absorption(run, "conv")


def test_missing_weight_is_a_key_error(tmp_path):
    run, _ = train(path_in(tmp_path), nn.Conv2d(2, 3, 3), (2, 2, 5, 5), steps=1,
                   kinds=("feature_grad",))
    with pytest.raises(KeyError, match="conv"):
        ts.emission_absorption(run, "conv")


def test_unknown_layer_is_a_key_error(lazy_run):
    run, _, _ = lazy_run
    with pytest.raises(KeyError, match="nope"):
        ts.emission_absorption(run, "nope")


def test_captured_without_captured_series_is_a_key_error(lazy_run):
    run, _, _ = lazy_run
    with pytest.raises(KeyError, match="conv"):
        ts.emission_absorption(run, "conv", source="captured")


def test_missing_module_metadata_is_a_value_error(tmp_path):
    layer = nn.Conv2d(2, 3, 3).double()
    run = record_by_hand(path_in(tmp_path), layer, {0: layer.weight.detach()},
                         {0: torch.randn(2, 3, 3, 3, dtype=torch.float64)}, module=False)
    with pytest.raises(ValueError, match="conv"):
        ts.emission_absorption(run, "conv")


def test_bogus_source_is_a_value_error(lazy_run):
    run, _, _ = lazy_run
    with pytest.raises(ValueError, match="bogus"):
        ts.emission_absorption(run, "conv", source="bogus")


def _unsupported(tmp_path, layer, x_shape, match):
    run, _ = train(path_in(tmp_path), layer, x_shape, steps=1, layers=["conv"])
    assert ("feature_grad", "conv") in run and ("weight", "conv.weight") in run
    with pytest.raises(ValueError, match=match) as info:
        ts.emission_absorption(run, "conv")
    assert "conv" in str(info.value)


@pytest.mark.parametrize("kind", ["ConvTranspose2d", "BatchNorm2d", "reflect"])
def test_unsupported_module_is_a_value_error(tmp_path, kind):
    layer, match = {
        "ConvTranspose2d": (nn.ConvTranspose2d(2, 3, 3), "ransposed|ConvTranspose2d"),
        "BatchNorm2d": (nn.BatchNorm2d(2), "BatchNorm2d"),
        "reflect": (nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), "reflect"),
    }[kind]
    _unsupported(tmp_path, layer, (3, 2, 5, 5), match)


def test_subsampled_series_is_a_value_error(tmp_path):
    run, _ = train(path_in(tmp_path), nn.Conv2d(2, 3, 3, padding=1), (4, 2, 6, 6), steps=1,
                   max_elements=10)
    assert run["feature_grad", "conv"].size < 3 * 4 * 6 * 6  # really subsampled
    with pytest.raises(ValueError, match="max_elements|subsampl"):
        ts.emission_absorption(run, "conv")


def test_inconsistent_input_shape_is_a_value_error(tmp_path):
    run, _, _ = _ambiguous_by_hand(tmp_path, 8)
    with pytest.raises(ValueError, match="conv"):
        ts.emission_absorption(run, "conv", input_shape=(2, 5, 9)).compute()


@pytest.mark.parametrize("case", ["conv2d_g2", "conv2d_s2_p1", "linear_tokens"])
def test_captured_at_capture_time_matches_offline(tmp_path, case):
    """watch(kinds=(..., "emission", "absorption")) stores the same statistics (contract v0.2)."""
    make, x_shape = CASES[case]
    torch.manual_seed(10)
    layer = make()
    run, captures = train(path_in(tmp_path), layer, x_shape, steps=2,
                          kinds=(*ALL_KINDS, "emission", "absorption"))
    captured = ts.emission_absorption(run, "conv", source="captured")
    offline = ts.emission_absorption(run, "conv", source="offline")
    assert captured["emission"].dims == ("step", "sample", "out_channel")
    assert captured["absorption"].dims == ("step", "sample", "in_channel")
    check_against_captures(captured, layer, captures, rtol=1e-5)
    xr.testing.assert_allclose(captured.compute(), offline.compute(), rtol=1e-5)
