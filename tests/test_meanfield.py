"""ts.meanfield and its E[x²]-over-patches kernel, against references computed here.

Every expected number comes from NumPy or torch in this file: the patch mean
square from an explicit im2col matrix and from a torch convolution of x² with
a kernel of ones; ``observed`` from ``np.var`` of the model's own forward
output; ``predicted`` from n_in·np.var(W)·E[x²] + np.var(b). The width tests
use 4096 output units, because the pooled ratio scatters around 1 by about
√(2/C_out)·E[x]²/E[x²] from one draw of weights to the next (about ±9% with 256
units and U[0, 2] inputs, too much for a 5% bound; see docs/meanfield.md).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from numpy.testing import assert_allclose

import tensorstats as ts
from conftest import raise_if_dask_computes
from tensorstats.kernels.blocks import BLOCK_VALUES
from tensorstats.kernels.meanfield import (
    patch_mean_square,
    patch_mean_square_reference,
)
from tensorstats.layers import meanfield
from tensorstats.stats.geometry import Geometry, layer_geometry
from tensorstats.stats.meanfield import meanfield_from

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from tensorstats.torch import watch  # noqa: E402

STEP = "step"


# ------------------------------------------------------------------ references


def conv_meta(n: int, cin: int, cout: int, kernel, stride=1, padding=0, dilation=1,
              groups=1) -> dict:
    """Module metadata as ``watch`` stores it for a Conv{n}d."""
    def listed(v):
        return list(v) if isinstance(v, (tuple, list)) else [v] * n
    return {"type": f"Conv{n}d", "in_channels": cin, "out_channels": cout,
            "kernel_size": listed(kernel), "stride": listed(stride),
            "padding": padding if isinstance(padding, str) else listed(padding),
            "dilation": listed(dilation), "groups": groups, "padding_mode": "zeros",
            "transposed": False, "bias": True}


def torch_patch_mean_square(x: np.ndarray, meta: dict) -> float:
    """E[x²] over the patches, from torch: conv of x² with a kernel of ones, over fan-in.

    One output channel per group sums x² over that group's patch; the mean of
    those sums over groups, samples and output positions, divided by the
    fan-in, is the mean square over the patch entries (zero padding included).
    """
    n = len(meta["kernel_size"])
    xt = torch.from_numpy(np.asarray(x, np.float64)).transpose(0, 1)  # (N, C, *spatial)
    groups = meta["groups"]
    per_group = meta["in_channels"] // groups
    ones = torch.ones(groups, per_group, *meta["kernel_size"], dtype=torch.float64)
    conv = getattr(F, f"conv{n}d")
    out = conv(xt * xt, ones, stride=meta["stride"], padding=meta["padding"],
               dilation=meta["dilation"], groups=groups)
    return float(out.mean()) / (per_group * math.prod(meta["kernel_size"]))


def np_var(a) -> float:
    return float(np.var(np.asarray(a, dtype=np.float64)))


# ------------------------------------------------------------------ kernel

CONV_CASES = {
    # name: (metadata, spatial input size)
    "conv1d-stride2-pad1": (conv_meta(1, 3, 4, 3, stride=2, padding=1), (9,)),
    "conv1d-same-even": (conv_meta(1, 2, 2, 4, padding="same"), (7,)),
    "conv1d-same-dilated": (conv_meta(1, 2, 2, 4, padding="same", dilation=2), (9,)),
    "conv2d-stride2-pad2": (conv_meta(2, 4, 6, 3, stride=2, padding=2), (7, 6)),
    "conv2d-dilation2": (conv_meta(2, 4, 6, 3, padding=1, dilation=2), (8, 8)),
    "conv2d-groups2": (conv_meta(2, 4, 8, 3, padding=1, groups=2), (5, 6)),
    "conv2d-same-even": (conv_meta(2, 2, 2, (2, 4), padding="same"), (5, 6)),
    "conv2d-stride-cuts-edge": (conv_meta(2, 3, 3, 2, stride=2), (5, 5)),
    "conv3d-mixed": (conv_meta(3, 2, 3, (2, 3, 3), stride=(1, 2, 1), padding=(1, 0, 2)),
                     (4, 5, 6)),
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("name", list(CONV_CASES))
def test_kernel_matches_im2col_and_torch(name):
    meta, size = CONV_CASES[name]
    geometry = layer_geometry(meta, name)
    rng = np.random.default_rng(list(CONV_CASES).index(name))
    x = rng.normal(0.7, 1.3, size=(2, meta["in_channels"], 3, *size)).astype(np.float32)
    got = patch_mean_square(x, geometry)
    assert got.shape == (2,) and got.dtype == np.float64
    for i in range(2):
        im2col = patch_mean_square_reference(x[i], geometry)
        assert_allclose(got[i], im2col, rtol=1e-12)
        assert_allclose(got[i], torch_patch_mean_square(x[i], meta), rtol=1e-10)


def test_im2col_reference_counts_padding_zeros():
    """Ones through a k=3, pad=1 conv on length 4: 2 of the 12 patch entries are zeros."""
    geometry = layer_geometry(conv_meta(1, 1, 1, 3, padding=1), "c")
    x = np.ones((1, 1, 4))
    assert patch_mean_square_reference(x, geometry) == pytest.approx(10 / 12)
    assert float(patch_mean_square(x, geometry)) == pytest.approx(10 / 12)


def test_kernel_leading_axes_and_non_contiguous_input():
    meta, size = CONV_CASES["conv2d-stride2-pad2"]
    geometry = layer_geometry(meta, "c")
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 2, size=(3, 4, 2, *size, meta["in_channels"]))
    x = np.moveaxis(base, -1, 2)  # (3, 4, C, N, H, W), not contiguous
    assert not x.flags.c_contiguous
    got = patch_mean_square(x, geometry)
    assert got.shape == (3, 4)
    want = [[patch_mean_square_reference(x[i, j], geometry) for j in range(4)]
            for i in range(3)]
    assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 3, 2), (6,)])
def test_kernel_linear_is_plain_mean_square(shape):
    """Linear: (C_in, N, *token axes) or an unbatched (C_in,): the mean of x² over all."""
    x = np.random.default_rng(2).normal(1.0, 1.0, size=(2, *shape)).astype(np.float32)
    got = patch_mean_square(x, Geometry("linear", 6, 4), core_ndim=len(shape))
    want = [np.mean(np.asarray(x[i], np.float64) ** 2) for i in range(2)]
    assert_allclose(got, want, rtol=1e-12)


def test_kernel_blocks_of_rows():
    """Inputs larger than one block (and rows larger than a block) sum every block."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 600, 500)).astype(np.float32)
    assert x.size > BLOCK_VALUES
    got = patch_mean_square(x, Geometry("linear", 600, 1))
    assert_allclose(got, [np.mean(np.asarray(x, np.float64) ** 2)], rtol=1e-12)
    geometry = layer_geometry(conv_meta(2, 2, 1, 3, padding=1), "c")
    x = rng.normal(size=(1, 2, 2, 600, 500)).astype(np.float32)
    assert 600 * 500 > BLOCK_VALUES
    assert_allclose(patch_mean_square(x, geometry),
                    [patch_mean_square_reference(x[0], geometry)], rtol=1e-12)


def test_kernel_nan_and_inf_propagate():
    meta, size = CONV_CASES["conv2d-stride-cuts-edge"]  # 5x5, k=2, s=2: row/col 4 unread
    geometry = layer_geometry(meta, "c")
    x = np.random.default_rng(4).normal(size=(4, 3, 2, *size))
    x[0, 1, 0, 2, 2] = np.nan                  # a position that patches read
    x[1, 0, 1, 4, 4] = np.nan                  # a position that no patch reads
    x[2, 2, 1, 0, 0] = np.inf
    x[2, 2, 1, 4, 0] = np.inf                  # also an unread one: still +Inf, no NaN
    got = patch_mean_square(x, geometry)
    assert np.isnan(got[0]) and np.isnan(got[1])
    assert got[2] == np.inf
    assert_allclose(got[3], patch_mean_square_reference(x[3], geometry), rtol=1e-12)
    # with NaN and Inf in one step, NaN wins
    x[2, 0, 0, 1, 1] = np.nan
    assert np.isnan(patch_mean_square(x, geometry)[2])


def test_kernel_empty_input_is_nan():
    geometry = Geometry("linear", 3, 2)
    assert np.isnan(patch_mean_square(np.zeros((1, 3, 0)), geometry)).all()


def test_kernel_checks_layout():
    geometry = layer_geometry(conv_meta(2, 3, 4, 3), "c")
    with pytest.raises(ValueError, match="3 input channels"):
        patch_mean_square(np.zeros((1, 2, 4, 5, 5)), geometry)
    with pytest.raises(ValueError, match="core axes"):
        patch_mean_square(np.zeros((3, 4, 5, 5)), geometry, core_ndim=3)


# ------------------------------------------------------------------ meanfield_from


def _linear_series(steps=(0, 1, 2), n=64, cin=32, cout=48, seed=0, weight_mean=0.0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 2, size=(len(steps), n, cin))
    w = rng.normal(weight_mean, 1 / np.sqrt(cin), size=(len(steps), cout, cin))
    b = rng.normal(0, 0.3, size=(len(steps), cout))
    h = np.matmul(w, x.transpose(0, 2, 1)) + b[:, :, None]  # (step, unit, sample)
    coords = {STEP: list(steps)}
    return dict(
        feature=xr.DataArray(h, dims=(STEP, "channel", "sample"), coords=coords),
        input=xr.DataArray(x.transpose(0, 2, 1), dims=(STEP, "channel", "sample"),
                           coords=coords),
        weight=xr.DataArray(w, dims=(STEP, "channel", "dim_1"), coords=coords),
        bias=xr.DataArray(b, dims=(STEP, "channel"), coords=coords),
    ), (x, w, b, h), Geometry("linear", cin, cout)


def test_meanfield_from_every_variable_against_numpy():
    series, (x, w, b, h), geometry = _linear_series()
    ds = meanfield_from(series["feature"], series["input"], series["weight"],
                        series["bias"], geometry=geometry, layer="fc")
    assert ds.attrs == {"n_in": 32, "layer": "fc"}
    for name in ("observed", "predicted", "ratio", "weight_var", "weight_mean", "bias_var",
                 "input_mean_square", "unit_variance", "unit_ratio"):
        assert ds[name].dims == (STEP,) and ds[name].dtype == np.float64, name
    for s in range(3):
        observed = np.var(h[s])
        predicted = 32 * np.var(w[s]) * np.mean(x[s] ** 2) + np.var(b[s])
        unit = np.mean(np.var(h[s], axis=1))
        got = ds.isel(step=s)
        assert_allclose(got["observed"], observed, rtol=1e-12)
        assert_allclose(got["predicted"], predicted, rtol=1e-12)
        assert_allclose(got["ratio"], observed / predicted, rtol=1e-12)
        assert_allclose(got["weight_var"], np.var(w[s]), rtol=1e-12)
        assert_allclose(got["weight_mean"], np.mean(w[s]), rtol=1e-10, atol=1e-15)
        assert_allclose(got["bias_var"], np.var(b[s]), rtol=1e-12)
        assert_allclose(got["input_mean_square"], np.mean(x[s] ** 2), rtol=1e-12)
        assert_allclose(got["unit_variance"], unit, rtol=1e-12)
        assert_allclose(got["unit_ratio"], unit / predicted, rtol=1e-12)


def test_meanfield_from_without_bias_has_zero_bias_var():
    series, (x, w, _, _), geometry = _linear_series()
    h = np.matmul(w, x.transpose(0, 2, 1))
    feature = series["feature"].copy(data=h)
    ds = meanfield_from(feature, series["input"], series["weight"], None,
                        geometry=geometry, layer="fc")
    assert (ds["bias_var"] == 0).all()
    assert_allclose(ds["predicted"], 32 * np.var(w, axis=(1, 2)) * np.mean(x**2, axis=(1, 2)),
                    rtol=1e-12)


def test_weight_mean_adds_the_documented_term():
    """W = m + ε: pooled variance ≈ n·Var[ε]·E[x²] + n²·m²·Var(x̄) (docs/meanfield.md)."""
    cin, m = 256, 0.1  # Var[ε] = 1/256: the term adds m²/Var[ε]·Var(x)/E[x²] ≈ 0.64
    series, (x, w, _, _), geometry = _linear_series(steps=(0,), n=512, cin=cin, cout=1024,
                                                    weight_mean=m, seed=5)
    h = np.matmul(w, x.transpose(0, 2, 1))
    ds = meanfield_from(series["feature"].copy(data=h), series["input"], series["weight"],
                        None, geometry=geometry, layer="fc").isel(step=0)
    extra = cin**2 * np.mean(w[0]) ** 2 * np.var(x[0].mean(axis=1))
    assert_allclose(float(ds["weight_mean"]), m, rtol=0.01)
    assert float(ds["ratio"]) > 1.5  # the prediction leaves the term out ...
    assert_allclose(float(ds["observed"]), float(ds["predicted"]) + extra, rtol=0.03)  # ...


def test_meanfield_from_non_finite_values_give_nan_at_their_step_only():
    series, _, geometry = _linear_series()
    feature = series["feature"].copy(deep=True)
    feature[1, 3, 5] = np.nan
    inputs = series["input"].copy(deep=True)
    inputs[2, 0, 0] = np.inf
    weight = series["weight"].copy(deep=True)
    weight[0, 0, 0] = np.nan
    ds = meanfield_from(feature, inputs, weight, series["bias"], geometry=geometry, layer="fc")
    assert np.isnan(ds["weight_var"][0]) and np.isnan(ds["predicted"][0])
    assert np.isfinite(ds["observed"][0])
    assert np.isnan(ds["observed"][1]) and np.isnan(ds["unit_variance"][1])
    assert np.isnan(ds["ratio"][1]) and np.isfinite(ds["predicted"][1])
    assert ds["input_mean_square"][2] == np.inf and ds["predicted"][2] == np.inf
    assert np.isfinite(ds["observed"][2])


def test_meanfield_from_inner_join_on_step():
    series, (x, w, b, h), geometry = _linear_series(steps=(0, 10, 20))
    ds = meanfield_from(series["feature"], series["input"].sel(step=[0, 20]),
                        series["weight"].sel(step=[10, 20, 0]), series["bias"],
                        geometry=geometry, layer="fc")
    assert ds[STEP].values.tolist() == [0, 20]
    predicted = 32 * np.var(w[2]) * np.mean(x[2] ** 2) + np.var(b[2])
    assert_allclose(ds["predicted"].sel(step=20), predicted, rtol=1e-12)
    assert_allclose(ds["observed"].sel(step=20), np.var(h[2]), rtol=1e-12)


@pytest.mark.parametrize("chunked", [False, True])
def test_meanfield_from_no_common_step_gives_an_empty_result(chunked):
    series, _, geometry = _linear_series()
    parts = [series["feature"], series["input"].sel(step=[2]), series["weight"].sel(step=[0, 1]),
             series["bias"]]
    if chunked:
        parts = [p.chunk() for p in parts]
    ds = meanfield_from(*parts, geometry=geometry, layer="fc").compute()
    assert ds.sizes[STEP] == 0 and ds["ratio"].dtype == np.float64


def test_meanfield_from_lazy_one_task_per_step_and_equal_to_in_memory():
    series, _, geometry = _linear_series()
    eager = meanfield_from(series["feature"], series["input"], series["weight"],
                           series["bias"], geometry=geometry, layer="fc")
    chunked = {k: v.chunk({STEP: 2, "channel": 7}) for k, v in series.items()}
    with raise_if_dask_computes():
        lazy = meanfield_from(chunked["feature"], chunked["input"], chunked["weight"],
                              chunked["bias"], geometry=geometry, layer="fc")
    assert all(isinstance(v.data, dsa.Array) for v in lazy.data_vars.values())
    assert lazy["input_mean_square"].data.numblocks == (3,)
    xr.testing.assert_allclose(lazy.compute(), eager, rtol=1e-12)


def test_meanfield_from_checks_sizes_against_the_geometry():
    series, _, geometry = _linear_series()
    f, i, w, b = series["feature"], series["input"], series["weight"], series["bias"]
    with pytest.raises(ValueError, match=r"layer 'fc'.*feature's channel count is 40, expected 48"):
        meanfield_from(f.isel(channel=slice(40)), i, w, b, geometry=geometry, layer="fc")
    with pytest.raises(ValueError, match=r"layer 'fc'.*input's channel count is 30, expected 32"):
        meanfield_from(f, i.isel(channel=slice(30)), w, b, geometry=geometry, layer="fc")
    with pytest.raises(ValueError, match=r"weight's shape .* is \(48, 31\), expected \(48, 32\)"):
        meanfield_from(f, i, w.isel(dim_1=slice(31)), b, geometry=geometry, layer="fc")
    with pytest.raises(ValueError, match=r"bias's shape .* is \(47,\), expected \(48,\)"):
        meanfield_from(f, i, w, b.isel(channel=slice(47)), geometry=geometry, layer="fc")
    with pytest.raises(ValueError, match=r"sample count is 60, expected 64"):
        meanfield_from(f.isel(sample=slice(60)), i, w, b, geometry=geometry, layer="fc")
    with pytest.raises(ValueError, match="layer 'fc'.*subsampled"):
        meanfield_from(f.rename(sample="element"), i, w, b, geometry=geometry, layer="fc")
    with pytest.raises(TypeError, match="input must be an xarray.DataArray"):
        meanfield_from(f, i.values, w, b, geometry=geometry, layer="fc")


def test_meanfield_from_checks_conv_output_size():
    meta = conv_meta(2, 2, 3, 3, stride=2, padding=1)
    geometry = layer_geometry(meta, "conv")
    rng = np.random.default_rng(6)
    dims = (STEP, "channel", "sample", "height", "width")
    x = xr.DataArray(rng.normal(size=(1, 2, 4, 8, 8)), dims=dims)
    w = xr.DataArray(rng.normal(size=(1, 3, 2, 3, 3)), dims=(STEP, "channel", "dim_1", "dim_2",
                                                              "dim_3"))
    h = xr.DataArray(rng.normal(size=(1, 3, 4, 4, 5)), dims=dims)
    with pytest.raises(ValueError, match=r"layer 'conv'.*feature's size .* is \(4, 5\), "
                                         r"expected \(4, 4\)"):
        meanfield_from(h, x, w, None, geometry=geometry, layer="conv")


# ------------------------------------------------------------------ recorded runs


class TwoLinear(nn.Module):
    """Two wide Linear layers: ``fc`` (4096 units, bias 0) on x uniform on [0, 2], and
    ``fcb`` (256 units, bias N(0, 0.5)) on x − 1, uniform on [-1, 1].

    ``fcb`` gets centred inputs so that its test isolates the bias term: with
    zero-mean inputs the unit means W_i·E[x] vanish and do not scatter the
    pooled variance, so 256 units are enough. The recorded Var[b] is that of
    these very biases, so the bias term itself does not scatter.
    """

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4096, 4096)
        self.fcb = nn.Linear(4096, 256)
        for layer in (self.fc, self.fcb):
            nn.init.normal_(layer.weight, 0.0, 1 / 64)
        nn.init.zeros_(self.fc.bias)
        nn.init.normal_(self.fcb.bias, 0.0, 0.5)

    def forward(self, x):
        return self.fc(x), self.fcb(x - 1)


def _record(model, path, batches, kinds=("weight", "feature", "input"), **kw):
    """Record ``model`` on each batch at steps 0, 1, ...; return the outputs of each pass."""
    rec = ts.Recorder(path)
    outputs = []
    with watch(model, rec, kinds=kinds, every=1, **kw) as w:
        for step, x in enumerate(batches):
            with torch.no_grad():
                outputs.append(model(x))
            w.step(step)
    rec.close()
    return outputs


@pytest.fixture(scope="module")
def wide_linear(tmp_path_factory):
    torch.manual_seed(0)
    model = TwoLinear()
    batches = [2 * torch.rand(128, 4096)]  # uniform on [0, 2]
    path = str(tmp_path_factory.mktemp("meanfield") / "linear.zarr")
    outputs = _record(model, path, batches)
    return ts.open_run(path), model, batches, outputs


@pytest.fixture(scope="module")
def wide_conv(tmp_path_factory):
    torch.manual_seed(1)
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(256, 1024, 3, padding=1)))
    batches = [0.5 + torch.randn(8, 256, 8, 8)]  # non-zero mean
    path = str(tmp_path_factory.mktemp("meanfield") / "conv.zarr")
    outputs = _record(model, path, batches)
    return ts.open_run(path), model, batches, outputs


def test_wide_linear_pooled_ratio_is_one_and_per_unit_ratio_a_quarter(wide_linear):
    run, model, batches, outputs = wide_linear
    ds = meanfield(run, "fc").compute()
    assert ds[STEP].values.tolist() == [0]
    w = model.fc.weight.detach().double().numpy()
    for s, x in enumerate(batches):
        x = x.double().numpy()
        h = outputs[s][0].double().numpy()          # (sample, unit)
        got = ds.sel(step=s)
        predicted = 4096 * np.var(w) * np.mean(x**2)
        assert_allclose(got["observed"], np.var(h), rtol=1e-10)
        assert_allclose(got["predicted"], predicted, rtol=1e-10)
        assert_allclose(got["unit_variance"], np.mean(np.var(h, axis=0)), rtol=1e-10)
        assert float(got["bias_var"]) == 0.0
        assert abs(float(got["ratio"]) - 1) < 0.05
        # per unit: Var(x)/E[x²] = (1/3)/(4/3) for U[0, 2]
        assert abs(float(got["unit_ratio"]) / 0.25 - 1) < 0.10
        assert abs(float(got["weight_mean"])) < 1e-4


def test_bias_variance_is_included(wide_linear):
    run, model, batches, outputs = wide_linear
    ds = meanfield(run, "fcb").compute().sel(step=0)
    w = model.fcb.weight.detach().double().numpy()
    b = model.fcb.bias.detach().double().numpy()
    x = batches[0].double().numpy() - 1
    without_bias = 4096 * np.var(w) * np.mean(x**2)
    assert_allclose(ds["bias_var"], np.var(b), rtol=1e-10)
    assert_allclose(ds["input_mean_square"], np.mean(x**2), rtol=1e-6)
    assert_allclose(ds["predicted"], without_bias + np.var(b), rtol=1e-6)
    assert_allclose(ds["observed"], np_var(outputs[0][1]), rtol=1e-10)
    assert abs(float(ds["ratio"]) - 1) < 0.05
    assert float(ds["observed"]) / without_bias > 1.5  # Var[b] ≈ 0.25 on top of ≈ 1/3


def test_wide_conv_ratio_is_one(wide_conv):
    run, model, batches, outputs = wide_conv
    ds = meanfield(run, "conv").compute().sel(step=0)
    conv = model.conv
    w = conv.weight.detach().double().numpy()
    meta = conv_meta(2, 256, 1024, 3, padding=1)
    x = batches[0].numpy().transpose(1, 0, 2, 3)  # (C, N, H, W)
    mean_square = torch_patch_mean_square(x, meta)
    assert ds.attrs["n_in"] == 256 * 9
    assert_allclose(ds["input_mean_square"], mean_square, rtol=1e-10)
    assert_allclose(ds["bias_var"], np_var(conv.bias.detach()), rtol=1e-10)
    assert_allclose(ds["predicted"], 256 * 9 * np.var(w) * mean_square
                    + np_var(conv.bias.detach()), rtol=1e-10)
    assert_allclose(ds["observed"], np_var(outputs[0]), rtol=1e-10)
    assert abs(float(ds["ratio"]) - 1) < 0.05
    # the padding zeros matter here (8x8 maps, pad 1): without them E[x²] is 19% larger
    plain = np.mean(np.asarray(x, np.float64) ** 2)
    assert plain / mean_square > 1.15


def test_meanfield_is_lazy_on_a_run(tmp_path):
    """A trained few steps: nothing computed until asked, one E[x²] task per step,
    and the lazy result equals the one from the loaded series."""
    torch.manual_seed(3)
    model = nn.Sequential(OrderedDict(fc=nn.Linear(32, 16), act=nn.ReLU(), out=nn.Linear(16, 4)))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    path = str(tmp_path / "r.zarr")
    rec = ts.Recorder(path)
    with watch(model, rec, kinds=("weight", "feature", "input"), every=1) as w:
        for step in range(3):
            opt.zero_grad()
            model(torch.randn(20, 32)).pow(2).mean().backward()
            opt.step()
            w.step(step)
    rec.close()
    run = ts.open_run(path)
    with raise_if_dask_computes():
        ds = meanfield(run, "out")
    assert all(isinstance(v.data, dsa.Array) for v in ds.data_vars.values())
    assert ds["input_mean_square"].data.numblocks == (3,)
    feature, inputs = run["feature", "out"].load(), run["input", "out"].load()
    weight, bias = run["weight", "out.weight"].load(), run["weight", "out.bias"].load()
    geometry = layer_geometry(feature.attrs["module"], "out")
    eager = meanfield_from(feature, inputs, weight, bias, geometry=geometry, layer="out")
    assert not any(isinstance(v.data, dsa.Array) for v in eager.data_vars.values())
    xr.testing.assert_allclose(ds.compute(), eager, rtol=1e-12)
    # the input of "out" is the ReLU output: the per-unit ratio is well below the pooled one
    assert (eager["unit_ratio"] < eager["ratio"]).all()
    for s in range(3):
        w_s, x_s = weight.isel(step=s).values, inputs.isel(step=s).values
        assert_allclose(eager["predicted"][s], 16 * np.var(w_s) * np.mean(x_s.astype(float)**2)
                        + np.var(bias.isel(step=s).values), rtol=1e-6)


def test_linear_with_token_axes(tmp_path):
    torch.manual_seed(2)
    model = nn.Sequential(OrderedDict(tok=nn.Linear(24, 16)))
    x = torch.rand(6, 5, 24) + 0.5
    (out,) = _record(model, str(tmp_path / "tok.zarr"), [x])
    run = ts.open_run(str(tmp_path / "tok.zarr"))
    assert run["input", "tok"].dims == (STEP, "channel", "sample", "dim_1")
    ds = meanfield(run, "tok").compute().sel(step=0)
    w = model.tok.weight.detach().double().numpy()
    b = model.tok.bias.detach().double().numpy()
    xs = x.double().numpy()
    assert_allclose(ds["predicted"], 24 * np.var(w) * np.mean(xs**2) + np.var(b), rtol=1e-10)
    assert_allclose(ds["observed"], np_var(out), rtol=1e-10)
    h = out.double().numpy().reshape(-1, 16)  # every (sample, token) of each unit
    assert_allclose(ds["unit_variance"], np.mean(np.var(h, axis=0)), rtol=1e-10)


def test_missing_input_says_to_record_input(tmp_path):
    model = nn.Sequential(OrderedDict(fc=nn.Linear(8, 4)))
    _record(model, str(tmp_path / "r.zarr"), [torch.rand(5, 8)], kinds=("weight", "feature"))
    with pytest.raises(KeyError, match="record kind 'input'"):
        meanfield(ts.open_run(str(tmp_path / "r.zarr")), "fc")


def test_missing_weight_is_a_clear_error(tmp_path):
    model = nn.Sequential(OrderedDict(fc=nn.Linear(8, 4)))
    _record(model, str(tmp_path / "r.zarr"), [torch.rand(5, 8)], kinds=("feature", "input"))
    with pytest.raises(KeyError, match=r"layer 'fc': no weight series 'fc.weight'"):
        meanfield(ts.open_run(str(tmp_path / "r.zarr")), "fc")


def test_unsupported_layer_type_is_named(tmp_path):
    model = nn.Sequential(OrderedDict(fc=nn.Linear(8, 4), bn=nn.BatchNorm1d(4)))
    _record(model, str(tmp_path / "r.zarr"), [torch.rand(5, 8)], layers=["fc", "bn"])
    run = ts.open_run(str(tmp_path / "r.zarr"))
    with pytest.raises(ValueError, match=r"layer 'bn' is a BatchNorm1d; supported: Linear"):
        meanfield(run, "bn")
    assert meanfield(run, "fc")[STEP].values.tolist() == [0]


def test_steps_missing_from_a_series_are_skipped(tmp_path):
    """Recorded by hand: the input is missing at step 1, the bias at step 3."""
    meta = {"type": "Linear", "in_features": 6, "out_features": 3, "bias": True}
    attrs = {"module": meta, "module_name": "fc"}
    rng = np.random.default_rng(7)
    path = str(tmp_path / "r.zarr")
    expected = {}
    with ts.Recorder(path) as rec:
        for step in range(4):
            x = rng.uniform(0, 2, size=(10, 6))
            w = rng.normal(0, 0.4, size=(3, 6))
            b = rng.normal(0, 0.2, size=3)
            h = x @ w.T + b
            rec.record("feature", "fc", h, step=step, channel_axis=1, dims=("sample",),
                       attrs=attrs)
            rec.record("weight", "fc.weight", w, step=step, attrs=attrs)
            if step != 1:
                rec.record("input", "fc", x, step=step, channel_axis=1, dims=("sample",),
                           attrs=attrs)
            if step != 3:
                rec.record("weight", "fc.bias", b, step=step, attrs=attrs)
            expected[step] = (np.var(h), 6 * np.var(w) * np.mean(x**2) + np.var(b))
    ds = meanfield(ts.open_run(path), "fc").compute()
    assert ds[STEP].values.tolist() == [0, 2]
    for step in (0, 2):
        assert_allclose(ds["observed"].sel(step=step), expected[step][0], rtol=1e-12)
        assert_allclose(ds["predicted"].sel(step=step), expected[step][1], rtol=1e-12)
