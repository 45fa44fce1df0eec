"""Tests of ``tensorstats.report``: the findings, the HTML page, paging and what is drawn.

Expected numbers come from NumPy/SciPy on the raw data the test recorded (or
from where the test injected a NaN), never from the report's own code.
"""

from __future__ import annotations

import base64
import io
import math
import os
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import scipy.stats
from matplotlib.collections import QuadMesh
from matplotlib.image import imread

import tensorstats as ts
from tensorstats.report import findings, write_report
from tensorstats.report.analysis import analyse_run
from tensorstats.report.correlations import correlations
from tensorstats.report.figures import loss_figure, trajectory_figures
from tensorstats.report.write import render_report

STEPS = [0, 10, 20, 30, 40, 50]


def _record(path, layers: dict, *, loss=None, steps=STEPS, kind="weight", **kwargs):
    """A run with ``layers[name][i]`` recorded at ``steps[i]`` and the loss per step."""
    with ts.Recorder(path) as rec:
        for i, step in enumerate(steps):
            for name, values in layers.items():
                rec.record(kind, name, values[i], step=step, **kwargs)
            if loss is not None:
                rec.record_scalar("loss", float(loss[i]), step=step)
    return path


def _normal(rng, scales, shape=(4, 50)):
    return [rng.normal(size=shape) * s for s in scales]


# ---------------------------------------------------------------- findings
def test_findings_name_the_first_nan_step_and_series(tmp_path):
    rng = np.random.default_rng(0)
    layers = {name: _normal(rng, [1.0] * 6) for name in ("a", "b", "c")}
    layers["b"][3][1, 7] = np.nan                    # weight b, step 30: the first
    layers["c"][4][0, 0] = np.inf                    # weight c, step 40: later
    layers["c"][4][2, 3] = np.nan
    path = _record(str(tmp_path / "r.zarr"), layers, loss=np.linspace(2, 1, 6))
    lines = findings(path)
    assert lines[0] == ("first NaN/Inf at step 30, in weight b (1 NaN); "
                        "1 more series get NaN/Inf later.")


def test_findings_nan_in_the_loss_and_two_series_at_once(tmp_path):
    rng = np.random.default_rng(1)
    layers = {name: _normal(rng, [1.0] * 6) for name in ("a", "b")}
    layers["a"][2][0, :3] = np.nan
    layers["a"][2][1, 0] = -np.inf
    loss = np.linspace(2, 1, 6)
    loss[2] = np.nan
    path = _record(str(tmp_path / "r.zarr"), layers, loss=loss)
    line = findings(path)[0]
    assert line == "first NaN/Inf at step 20, in scalar loss (nan), weight a (3 NaN, 1 Inf)."


def test_findings_use_stored_moments_of_a_subsampled_series(tmp_path):
    rng = np.random.default_rng(2)
    values = _normal(rng, [1.0] * 6, shape=(2, 400))
    values[4][1, 123] = np.nan
    path = _record(str(tmp_path / "r.zarr"), {"w": values}, max_elements=5)
    run = ts.open_run(path)
    sample = run["weight", "w"].values
    assert np.isfinite(sample).all()  # the sample missed the NaN: only stored moments see it
    assert findings(run)[0] == "first NaN/Inf at step 40, in weight w (1 NaN)."


def test_findings_without_nan(tmp_path):
    rng = np.random.default_rng(3)
    path = _record(str(tmp_path / "r.zarr"), {"a": _normal(rng, [1.0] * 6)},
                   loss=np.linspace(2, 1, 6))
    assert findings(path)[0] == ("no NaN or Inf in any of its 2 series (1 tensors, 1 scalars; "
                                 "every recorded step checked).")


NUM = r"(-?[\d.]+(?:e[-+]?\d+)?)"


def test_findings_rank_the_layer_whose_std_grew_10x_first(tmp_path):
    rng = np.random.default_rng(4)
    layers = {"a": _normal(rng, np.linspace(1.0, 1.3, 6)),
              "grows": _normal(rng, np.linspace(1.0, 10.0, 6)),
              "c": _normal(rng, np.linspace(1.0, 0.8, 6)),
              "heavy": [rng.standard_t(df, size=(4, 50)) for df in (30, 20, 10, 6, 5, 4)]}
    path = _record(str(tmp_path / "r.zarr"), layers)
    lines = findings(path)
    std_line = next(line for line in lines if line.startswith("the std of weight"))
    m = re.match(rf"the std of weight moved most in grows {NUM} → {NUM} \(×{NUM}\); then "
                 rf"(\w+) ", std_line)
    assert m, std_line
    first, last = np.std(layers["grows"][0]), np.std(layers["grows"][-1])
    assert float(m[1]) == pytest.approx(first, rel=5e-3)
    assert float(m[2]) == pytest.approx(last, rel=5e-3)
    assert float(m[3]) == pytest.approx(last / first, rel=5e-3)
    ratios = {n: abs(np.log(np.std(v[-1]) / np.std(v[0]))) for n, v in layers.items()}
    assert m[4] == sorted(ratios, key=ratios.get)[-2]

    kurt_line = next(line for line in lines if "excess kurtosis" in line)
    changes = {n: abs(scipy.stats.kurtosis(v[-1], axis=None) - scipy.stats.kurtosis(v[0],
                                                                                   axis=None))
               for n, v in layers.items()}
    top = max(changes, key=changes.get)
    m = re.search(rf"moved most in {top} {NUM} → {NUM}", kurt_line)
    assert m, kurt_line
    assert float(m[1]) == pytest.approx(scipy.stats.kurtosis(layers[top][0], axis=None),
                                        rel=5e-3, abs=1e-3)
    assert float(m[2]) == pytest.approx(scipy.stats.kurtosis(layers[top][-1], axis=None),
                                        rel=5e-3, abs=1e-3)


def test_drift_sentence_matches_scipy_wasserstein(tmp_path):
    rng = np.random.default_rng(5)
    base = rng.normal(size=(3, 60))
    layers = {"still": [base + 0.01 * k for k in range(6)],
              "moves": [base * (1 + k) for k in range(6)]}
    path = _record(str(tmp_path / "r.zarr"), layers)
    run = ts.open_run(path)
    from tensorstats.report.findings import drift_sentence

    a = analyse_run("r", run, kind="weight", layers=["moves", "still"])
    line = drift_sentence(a, "weight")
    m = re.search(rf"most from the first step .*: moves \(W1 {NUM}, {NUM}× its initial std\); "
                  r"then still", line)
    assert m, line
    w1 = np.median([scipy.stats.wasserstein_distance(layers["moves"][-1][c],
                                                     layers["moves"][0][c]) for c in range(3)])
    assert float(m[1]) == pytest.approx(w1, rel=5e-3)
    assert float(m[2]) == pytest.approx(w1 / np.std(layers["moves"][0]), rel=5e-3)


def test_findings_inputs_kind_and_layers(tmp_path):
    rng = np.random.default_rng(6)
    p1 = _record(str(tmp_path / "x.zarr"), {"conv1": _normal(rng, [1.0] * 6)}, kind="feature")
    p2 = _record(str(tmp_path / "y.zarr"), {"conv1": _normal(rng, [1.0] * 6)}, kind="feature")
    by_list = findings([p1, p2])
    assert by_list[0].startswith("Run 'x': ") and by_list[1].startswith("Run 'y': ")
    assert findings({"x": ts.open_run(p1), "y": p2}) == by_list
    assert findings(ts.open_runs({"x": p1, "y": p2})) == by_list
    assert "of feature" in findings(p1)[1]  # feature is the default kind
    with pytest.raises(ValueError, match="kind 'weight' is in none of the runs"):
        findings(p1, kind="weight")
    with pytest.raises(ValueError, match=r"layers \['fc\*'\] match none"):
        findings(p1, layers="fc*")
    with pytest.raises(TypeError, match="runs must be"):
        findings(3)


# ---------------------------------------------------------------- the HTML page
class _Page(HTMLParser):
    """Section ids, headings, images (src, alt) and every src/href of a page."""

    def __init__(self):
        super().__init__()
        self.ids, self.images, self.links, self.tags = [], [], [], []
        self.rows: list[list[str]] = []  # alts of the images of each div.row

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self.ids.append(attrs.get("id"))
        if tag == "div" and attrs.get("class") == "row":
            self.rows.append([])
        if tag == "img":
            self.images.append((attrs["src"], attrs.get("alt", "")))
            self.rows[-1].append(attrs.get("alt", ""))
        for key in ("src", "href"):
            if key in attrs:
                self.links.append(attrs[key])


def _two_runs(tmp_path, n_layers=3, steps=STEPS, seed=0):
    rng = np.random.default_rng(seed)
    paths = {}
    for name in ("kaiming", "xavier"):
        with ts.Recorder(str(tmp_path / f"{name}.zarr")) as rec:
            for i, step in enumerate(steps):
                for j in range(n_layers):
                    z = rng.normal(size=(16, 4, 5, 5)) * (1 + i * (j + 1) / len(steps))
                    rec.record("feature", f"layer{j}", z, step=step, channel_axis=1)
                    rec.record("weight", f"layer{j}.weight", rng.normal(size=(4, 9)), step=step)
                rec.record_scalar("loss", 2.0 * 0.5 ** i + 0.01 * rng.random(), step=step)
        paths[name] = str(tmp_path / f"{name}.zarr")
    return paths


def _check_png(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    png = base64.b64decode(uri.split(",", 1)[1], validate=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    pixels = imread(io.BytesIO(png), format="png")
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    rgb = pixels[..., :3]
    assert (rgb < 0.9).any(axis=-1).mean() > 0.01  # something dark is drawn
    assert rgb.std() > 0.05
    return pixels


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    paths = _two_runs(tmp)
    seen = []
    labels = []

    def progress(iterable, label):
        labels.append(label)
        return list(iterable)

    html = render_report({n: ts.open_run(p) for n, p in paths.items()}, per_page=2,
                         progress=progress, on_figure=lambda anchor, fig: seen.append(
                             (anchor, fig)))
    index = write_report(paths, tmp / "out", per_page=2)
    return {"html": html, "figures": seen, "labels": labels, "index": index, "paths": paths}


def test_report_has_every_section_in_order(report):
    page = _Page()
    page.feed(report["index"].read_text(encoding="utf-8"))
    assert page.ids == ["summary", "loss", "moments", "normality", "distributions", "shift",
                        "correlations", "stores"]
    text = report["index"].read_text(encoding="utf-8")
    for anchor in page.ids:
        assert f'<a href="#{anchor}">' in text  # in the table of contents
    assert text.index('id="summary"') < text.index('id="loss"') < text.index('id="stores"')
    assert "correlation after detrending" in text.lower() and "not a cause" in text


def test_report_images_are_valid_pngs_and_offline(report):
    page = _Page()
    page.feed(report["index"].read_text(encoding="utf-8"))
    assert len(page.images) >= 8
    for src, alt in page.images:
        _check_png(src)
        assert alt
    assert not [link for link in page.links if re.match(r"(?i)\s*(https?:)?//", link)]
    assert "script" not in page.tags and "link" not in page.tags
    assert not re.search(r"(?i)url\(|@import|https?://", report["index"].read_text())


def test_report_runs_side_by_side(report):
    page = _Page()
    page.feed(report["html"])
    # moments and shift: one image per run in each row, both runs there
    side = [row for row in page.rows if row == ["kaiming", "xavier"]]
    assert len(side) >= 4  # 2 pages of moments, 2 of shift
    heat = [fig for anchor, fig in report["figures"] if anchor == "normality"]
    rows = [t.get_text() for t in heat[0].axes[0].get_yticklabels()]
    assert rows == ["layer0 / kaiming", "layer0 / xavier", "layer1 / kaiming", "layer1 / xavier"]
    dist = [fig for anchor, fig in report["figures"] if anchor == "distributions"]
    labels = [p.get_label() for p in dist[0].axes[0].patches]
    assert labels == ["kaiming / step 0", "kaiming / step 50", "xavier / step 0",
                      "xavier / step 50"]


def test_report_progress_goes_over_runs_and_pages(report):
    assert report["labels"][0] == "analysing runs"
    assert "Moments of feature over training" in report["labels"]
    assert "Shift from the first step" in report["labels"]


def test_report_figures_draw_what_was_computed(report):
    figs = report["figures"]
    moments = [fig for anchor, fig in figs if anchor == "moments"]
    assert len(moments) == 4  # 2 pages x 2 runs
    for fig in moments:
        main = fig.axes[:4]
        assert [ax.get_ylabel() for ax in main] == ["std", "skew", "excess kurtosis",
                                                    "NaN + Inf count"]
        for ax in main:
            assert 1 <= len(ax.get_lines()) <= 2
    heat = [fig for anchor, fig in figs if anchor == "normality"]
    assert len(heat) == 2
    for fig in heat:
        assert any(isinstance(c, QuadMesh) for c in fig.axes[0].collections)
    # the std lines equal NumPy's std of the recorded values
    run = ts.open_run(report["paths"]["kaiming"])
    raw = run["feature", "layer0"].values
    ax = moments[0].axes[0]
    line = next(li for li in ax.get_lines() if li.get_label() == "layer0")
    expected = raw.reshape(len(STEPS), -1).std(axis=1)
    np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-6)
    np.testing.assert_array_equal(line.get_xdata(), STEPS)


def test_report_refuses_to_overwrite_a_foreign_index(tmp_path):
    rng = np.random.default_rng(7)
    path = _record(str(tmp_path / "r.zarr"), {"w": _normal(rng, [1.0] * 6)})
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("<html>mine</html>")
    with pytest.raises(FileExistsError, match="not a tensorstats report"):
        write_report(path, out)
    assert (out / "index.html").read_text() == "<html>mine</html>"
    first = write_report(path, out, overwrite=True)
    assert "tensorstats report" in first.read_text()
    again = write_report(path, out)  # a report written before is replaced
    assert again == out / "index.html"


def test_report_rejects_bad_arguments(tmp_path):
    rng = np.random.default_rng(8)
    path = _record(str(tmp_path / "r.zarr"), {"w": _normal(rng, [1.0] * 6)})
    with pytest.raises(ValueError, match="per_page must be a positive int"):
        write_report(path, tmp_path / "o", per_page=0)
    with pytest.raises(ValueError, match="max_steps must be an int >= 2"):
        write_report(path, tmp_path / "o", max_steps=1)
    with pytest.raises(TypeError, match="progress must be a callable"):
        write_report(path, tmp_path / "o", progress=3)


# ---------------------------------------------------------------- paging
def test_a_100_layer_run_is_paged(tmp_path):
    rng = np.random.default_rng(9)
    n, per_page = 100, 8
    layers = {f"l{i:03d}": _normal(rng, [1.0, 1.5, 2.0], shape=(3, 4))
              for i in range(n)}
    path = _record(str(tmp_path / "r.zarr"), layers, steps=[0, 10, 20],
                   loss=[3.0, 2.0, 1.0])
    seen = []
    html = render_report({"r": ts.open_run(path)}, per_page=per_page,
                         on_figure=lambda anchor, fig: seen.append((anchor, fig)))
    pages = math.ceil(n / per_page)
    by = {a: [f for s, f in seen if s == a] for a in ("moments", "normality", "distributions",
                                                      "shift")}
    assert {a: len(f) for a, f in by.items()} == dict.fromkeys(by, pages)
    for fig in by["moments"]:
        assert len(fig.axes) == 4
        assert all(len(ax.get_lines()) <= per_page for ax in fig.axes)
    assert sum(len(fig.axes[0].get_lines()) for fig in by["moments"]) == n
    for fig in by["normality"]:
        assert len(fig.axes[0].get_yticklabels()) <= per_page
    for fig in by["distributions"]:
        panels = [ax for ax in fig.axes if ax.patches]
        assert 1 <= len(panels) <= per_page
    assert sum(len([ax for ax in f.axes if ax.patches]) for f in by["distributions"]) == n
    for fig in by["shift"]:
        assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) <= per_page
    assert html.count("<h3>layers ") == 4 * pages
    assert "layers 97–100 of 100" in html


# ---------------------------------------------------------------- figure helpers
def test_loss_figure_is_log_when_it_spans_decades(tmp_path):
    rng = np.random.default_rng(10)
    w = {"w": _normal(rng, [1.0] * 6)}
    steep = np.logspace(1, -2, 6)
    a = analyse_run("a", ts.open_run(_record(str(tmp_path / "a.zarr"), w, loss=steep)))
    b = analyse_run("b", ts.open_run(_record(str(tmp_path / "b.zarr"), w,
                                             loss=np.linspace(2, 1, 6))))
    fig = loss_figure([a, b])
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    lines = {li.get_label(): li for li in ax.get_lines()}
    assert sorted(lines) == ["a", "b"]
    np.testing.assert_allclose(lines["a"].get_ydata(), steep)
    assert loss_figure([b]).axes[0].get_yscale() == "linear"


def test_trajectories_share_y_across_runs(tmp_path):
    rng = np.random.default_rng(11)
    big = _normal(rng, [5.0] * 6)
    small = _record(str(tmp_path / "s.zarr"), {"w": _normal(rng, [1.0] * 6)})
    large = _record(str(tmp_path / "l.zarr"), {"w": big})
    figs = trajectory_figures([analyse_run("s", ts.open_run(small)),
                               analyse_run("l", ts.open_run(large))], "weight", ["w"])
    assert len(figs) == 2
    assert figs[0].axes[0].get_ylim() == figs[1].axes[0].get_ylim()
    assert figs[0].axes[0].get_ylim()[1] >= max(np.std(v) for v in big)


def test_correlation_table_matches_scipy_spearman(tmp_path):
    rng = np.random.default_rng(12)
    steps = list(range(0, 300, 10))
    scales = np.exp(np.cumsum(rng.normal(scale=0.2, size=len(steps))))
    loss = 2.0 + np.cumsum(rng.normal(size=len(steps)))
    values = [rng.normal(size=(4, 200)) * s for s in scales]
    path = _record(str(tmp_path / "r.zarr"), {"w": values}, steps=steps, loss=loss)
    a = analyse_run("r", ts.open_run(path), kind="weight", layers=["w"])
    rows = {c.statistic: c for c in correlations(a, "weight", ["w"])}
    dx = np.diff([np.std(v) for v in values])
    dy = np.diff(loss)
    lag = rows["std"].lag
    x, y = (dx[:len(dx) - lag], dy[lag:]) if lag >= 0 else (dx[-lag:], dy[:len(dy) + lag])
    r = scipy.stats.spearmanr(x, y).statistic
    assert rows["std"].r == pytest.approx(r, rel=1e-9)
    assert rows["std"].n == len(x)
    best = max(range(-3, 4), key=lambda k: abs(scipy.stats.spearmanr(
        *((dx[:len(dx) - k], dy[k:]) if k >= 0 else (dx[-k:], dy[:len(dy) + k]))).statistic))
    assert lag == best
    assert rows["std"].lag_steps == 10 * lag


def test_import_report_does_not_import_matplotlib():
    import subprocess
    import sys

    code = ("import sys, tensorstats.report; "
            "print('matplotlib' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.split() == ["False", "False"]
