"""Analyse a recorded run: moments, normality, shift from init, correlation with the loss.

Without an argument it first records a small run (the NumPy MLP of
``python -m tensorstats.demo_numpy``, 200 steps) into a temporary folder; with
one it analyses that store instead (e.g. ``demo-output/kaiming.zarr`` from
``make demo``). Every result is an ``xr.Dataset``; the last step turns them
into one tidy pandas table.

Run:  python examples/analyse_run.py [run.zarr]
"""

import sys
import tempfile

import tensorstats as ts
from tensorstats import demo_numpy

if len(sys.argv) > 1:
    path = sys.argv[1]
else:
    path = tempfile.mkdtemp() + "/mlp.zarr"
    demo_numpy.main(["--out", path, "--steps", "200", "--every", "10"])

run = ts.open_run(path)
layer = run.layers("feature")[0]
feature = run["feature", layer]                        # (step, channel, sample, ...)
print(f"\n{path}: analysing the pre-activations of {layer!r}, dims {dict(feature.sizes)}")

# 1. Moments per step and channel (lazy until .compute()).
m = ts.moments(feature).compute()
print("\nmean over channels of the per-channel std, first and last step:",
      m["std"].mean("channel").values[[0, -1]].round(3))

# 2. Are they Gaussian? Shapiro-Wilk and Anderson-Darling per channel and step,
#    Benjamini-Hochberg over all of them; read the effect sizes, not just p.
nt = ts.normality(feature).compute()
rejected = (nt["pvalue_fdr"].sel(test="shapiro") < 0.05).mean("channel")
print("share of channels rejected at FDR 5%, first and last step:",
      rejected.values[[0, -1]].round(2))
print("median |skew| and excess kurtosis at the last step:",
      round(float(abs(nt["skew"]).isel(step=-1).median()), 3),
      round(float(nt["kurtosis"].isel(step=-1).median()), 3))

# 3. How far did the first weight move from its initialisation?
weight = next(name for name in run.layers("weight") if name.endswith("weight"))
d = ts.shift(run["weight", weight], metrics=("wasserstein", "ks")).compute()
print(f"\n{weight}: median W1 and KS from init at the last step:",
      round(float(d["wasserstein"].isel(step=-1).median()), 4),
      round(float(d["ks"].isel(step=-1).median()), 3))

# 4. Does the spread of the pre-activations move with the loss? Difference first:
#    both curves trend, and trending curves always look correlated.
var = ts.moments(feature, by="step")["var"]
loss = run.scalars["loss"]
for detrend in (None, "difference"):
    res = ts.correlate(var, loss, align="mean", detrend=detrend, max_lag=2).compute()
    print(f"Spearman r(variance, loss), detrend={detrend!s:10s} by lag",
          dict(zip(res["lag"].values.tolist(), res["r"].values.round(2).tolist(), strict=True)))

# 5. One tidy table of every weight's shift from init (layers have different dims).
table = ts.to_frame({name: ts.shift(run["weight", name], metrics=("wasserstein",))
                     for name in run.layers("weight")})
print("\n", table.groupby("layer")["wasserstein"].max().round(4).to_string())
