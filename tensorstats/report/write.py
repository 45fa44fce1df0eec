"""``write_report``: analyse the runs, draw the figures page by page, write ``index.html``.

The order of the page is the order of :func:`render_report`: the summary
(:mod:`.findings`), the loss, per-layer figures (moments, normality,
distributions, shift), the correlations with the loss, emission/absorption,
and last the listing of the stores.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._version import __version__
from .analysis import NORMALITY_SAMPLES, NORMALITY_TEST, RunAnalysis, analyse_run
from .correlations import DETREND, METHOD, STATISTICS, loss_names, top_correlations
from .findings import sentences
from .html import Block, Image, Section, Table, is_report, png_data_uri, render_page
from .inputs import (
    Progress,
    as_runs,
    check_max_steps,
    check_progress,
    layers_of,
    pages,
    pick_kind,
)

log = logging.getLogger(__name__)

MAX_STEPS = 32
"""Default cap on the steps the normality and shift analyses use (evenly spaced)."""

MAX_LISTED = 8
"""Layer names listed per kind in the store listing; the rest are counted."""

FigureHook = Callable[[str, Any], None]
"""``on_figure(section_anchor, figure)``, called with every figure before it is embedded."""


@contextmanager
def _timed(stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    log.info("report: %s took %.2f s", stage, time.perf_counter() - start)


class _Embedder:
    """Turns figures into images, handing each to the hook first."""

    def __init__(self, on_figure: FigureHook | None) -> None:
        self.on_figure = on_figure

    def __call__(self, anchor: str, fig: Any, alt: str) -> Image:
        if self.on_figure is not None:
            self.on_figure(anchor, fig)
        return Image(png_data_uri(fig), alt)


def _page_heading(page: Sequence[str], first: int, n_layers: int) -> str:
    """``"layers 9–16 of 100: conv9 … conv16"``."""
    names = ", ".join(page) if len(page) <= 4 else f"{page[0]} … {page[-1]}"
    return f"layers {first + 1}–{first + len(page)} of {n_layers}: {names}"


def _paged(anchor: str, title: str, paragraphs: list[str], layers: list[str], per_page: int,
           draw: Callable[[list[str]], list[tuple[Any, str]]], embed: _Embedder,
           progress: Progress) -> Section:
    """A section of one block per page of layers, each with the figures ``draw`` gives."""
    section = Section(anchor, title, paragraphs)
    chunks = pages(layers, per_page)
    for i, page in enumerate(progress(chunks, title)):
        heading = _page_heading(page, i * per_page, len(layers)) if len(chunks) > 1 else None
        images = [embed(anchor, fig, alt) for fig, alt in draw(page)]
        section.blocks.append(Block(heading, images, "" if images else "nothing to draw"))
    return section


def _loss_section(analyses: Sequence[RunAnalysis], embed: _Embedder) -> Section:
    from .figures import loss_figure

    section = Section("loss", "Loss")
    fig = loss_figure(analyses)
    if fig is None:
        section.paragraphs.append("No scalar named loss* was recorded.")
        return section
    names = sorted({n for a in analyses for n in loss_names(list(a.scalars))})
    section.paragraphs.append(f"Every scalar named loss* ({', '.join(names)}) of every run, "
                              "at the steps it was recorded.")
    section.blocks.append(Block(None, [embed("loss", fig, "loss over steps")]))
    return section


def _figure_sections(analyses: Sequence[RunAnalysis], kind: str, layers: list[str],
                     per_page: int, max_steps: int | None, embed: _Embedder,
                     progress: Progress) -> list[Section]:
    from .figures import distribution_figure, heatmap_figure, shift_figures, trajectory_figures

    def each_run(figs: list) -> list[tuple[Any, str]]:
        return [(fig, fig.get_suptitle()) for fig in figs]

    steps_note = ("all recorded steps" if max_steps is None
                  else f"at most {max_steps} evenly spaced steps (first and last included)")
    return [
        _paged("moments", f"Moments of {kind} over training",
               [f"ts.moments(..., by=('step',)) of every {kind} series at every recorded step: "
                "std, skew, excess kurtosis (0 for a Gaussian) and the count of NaN and Inf "
                "values left out. One column per run, y axes shared across runs."],
               layers, per_page, lambda page: each_run(trajectory_figures(analyses, kind, page)),
               embed, progress),
        _paged("normality", "Normality (layer × step)",
               [f"ts.normality per step and channel ({NORMALITY_TEST}, at most "
                f"{NORMALITY_SAMPLES} values per group, {steps_note}). Colour: the KS distance "
                "to the fitted normal (an effect size, median over channels); dot: some "
                "channel rejects normality at Benjamini-Hochberg FDR 5%. With thousands of "
                "values every real tensor is rejected; read the colour, not the dots."],
               layers, per_page,
               lambda page: [(f, "normality effect size per layer and step")
                             for f in [heatmap_figure(analyses, page)] if f is not None],
               embed, progress),
        _paged("distributions", "Distributions: first vs last step",
               ["Histograms of the raw values at the first and the last recorded step; in each "
                "panel every step and every run uses the same bins (colour: step; line "
                "style: run). Log counts."],
               layers, per_page,
               lambda page: [(f, "histograms at the first and last step")
                             for f in [distribution_figure(analyses, kind, page)]
                             if f is not None],
               embed, progress),
        _paged("shift", "Shift from the first step",
               ["ts.shift(..., reference='initial'): the Wasserstein-1 distance of each "
                "channel's values from the same channel at the first step, median over "
                f"channels with the interquartile band; {steps_note}. In the data's units."],
               layers, per_page, lambda page: each_run(shift_figures(analyses, page)),
               embed, progress),
    ]


def _correlation_section(analyses: Sequence[RunAnalysis], kind: str,
                         layers: list[str]) -> Section:
    section = Section("correlations", "Moments that track the loss (after detrending)")
    rows = top_correlations(analyses, kind, layers)
    section.paragraphs.append(
        f"ts.correlate({METHOD}, detrend='{DETREND}'): the step-to-step changes of each "
        f"layer's {', '.join(STATISTICS)} against those of the loss (averaged over each "
        "logging interval), at lags of a few logged steps; a positive lag means the moment "
        "changes before the loss, a negative one after. For each layer and statistic the "
        "lag of largest |r| is kept; FDR p is Benjamini-Hochberg over every layer, "
        "statistic and lag tested in the run. Correlation after detrending is an "
        "association, not a cause: both may follow a third thing, such as the learning "
        "rate.")
    if not rows:
        section.paragraphs.append("Nothing to correlate: no loss* scalar, or fewer than 5 "
                                  "logged steps.")
        return section
    several = len(analyses) > 1
    header = (["run"] if several else []) + ["layer", "statistic", "lag (logged steps)",
                                             "lag (steps)", "r", "FDR p", "n"]
    section.table = Table(header, [
        ([c.run] if several else []) + [c.layer, c.statistic, c.lag, round(c.lag_steps),
                                        c.r, c.pvalue_fdr, c.n]
        for c in rows])
    return section


def _emission_section(analyses: Sequence[RunAnalysis], layers: list[str], per_page: int,
                      embed: _Embedder, progress: Progress) -> Section | None:
    from .figures import emission_figure, emission_layers, emission_source

    sources = {a.name: source for a in analyses if (source := emission_source(a.run))}
    if not sources:
        return None
    available = {a.name: emission_layers(a.run, sources[a.name]) for a in analyses
                 if a.name in sources}
    union = sorted({layer for names in available.values() for layer in names})
    wanted = [layer for layer in union if layer in layers] or union
    shown = wanted[:per_page]
    section = Section("emission", "Emission and absorption")
    section.paragraphs.append(
        "The seed paper's channel-wise local-gradient statistics (ts.emission_absorption) at "
        "the last recorded step: one box per channel over the samples (log scale), one "
        "column per run. 'captured' reads the kinds watch computed at capture time; "
        "'offline' computes them from the recorded weight and feature_grad.")
    if len(wanted) > len(shown):
        section.paragraphs.append(f"The first {len(shown)} of {len(wanted)} layers; choose "
                                  "others with layers=.")
    for layer in progress(shown, "emission/absorption"):
        block, skipped = Block(layer), []
        for a in analyses:
            if layer not in available.get(a.name, ()):
                continue
            try:
                fig = emission_figure(a, layer, sources[a.name])
            except (KeyError, ValueError) as err:  # e.g. a layer that is not Conv/Linear
                skipped.append(f"{a.name}: {err}")
                continue
            block.images.append(embed("emission", fig, f"{a.name}: {layer} "
                                                       f"({sources[a.name]})"))
        block.note = ("not drawn: " + "; ".join(skipped)) if skipped else ""
        section.blocks.append(block)
    return section


def _listed(names: Sequence[str]) -> str:
    if len(names) <= MAX_LISTED:
        return ", ".join(names)
    return ", ".join(names[:MAX_LISTED]) + f", … ({len(names)} in all)"


def _steps_text(steps: Any) -> str:
    if len(steps) == 0:
        return "none"
    return f"{len(steps)}: {steps[0]}…{steps[-1]}" if len(steps) > 1 else f"1: {steps[0]}"


def _stores_section(analyses: Sequence[RunAnalysis]) -> Section:
    from ..store.format import META_KEY

    section = Section("stores", "Stores")
    rows = []
    for a in analyses:
        run = a.run
        attrs = {k: v for k, v in run.attrs.items() if k != META_KEY}
        section.paragraphs.append(f"{a.name}: {run.store}" + (
            " — " + ", ".join(f"{k}={v}" for k, v in attrs.items()) if attrs else ""))
        for kind in run.kinds:
            names = run.layers(kind)
            steps = sorted({int(s) for layer in names for s in run[kind, layer]["step"].values})
            rows.append([a.name, kind, len(names), _listed(names), _steps_text(steps)])
        for name, da in a.scalars.items():
            rows.append([a.name, "scalar", 1, name, _steps_text(da["step"].values.tolist())])
    section.table = Table(["run", "kind", "layers", "names", "steps"], rows)
    return section


def render_report(runs: Mapping[str, Any], *, kind: str | None = None,
                  layers: str | Sequence[str] | None = None, max_steps: int | None = MAX_STEPS,
                  per_page: int = 8, progress: Progress | None = None,
                  on_figure: FigureHook | None = None) -> str:
    """The report of ``runs`` (``{name: Run}``) as one HTML page; see :func:`write_report`.

    ``on_figure(section_anchor, figure)`` sees every figure before it is embedded.
    """
    max_steps = check_max_steps(max_steps)
    pages([], per_page)  # checks per_page before anything is computed
    progress = check_progress(progress)
    kind = pick_kind(runs, kind)
    picked = layers_of(runs, kind, layers)
    embed = _Embedder(on_figure)
    with _timed("analyses"):
        analyses = [analyse_run(name, run, kind=kind, layers=picked, max_steps=max_steps)
                    for name, run in progress(list(runs.items()), "analysing runs")]
    summary = sentences(analyses, kind, picked)
    sections = []
    with _timed("loss figure"):
        sections.append(_loss_section(analyses, embed))
    if kind is not None and picked:
        with _timed("per-layer figures"):
            sections += _figure_sections(analyses, kind, picked, per_page, max_steps, embed,
                                         progress)
        with _timed("correlations"):
            sections.append(_correlation_section(analyses, kind, picked))
    with _timed("emission/absorption"):
        emission = _emission_section(analyses, picked if layers is not None else [], per_page,
                                     embed, progress)
    if emission is not None:
        sections.append(emission)
    sections.append(_stores_section(analyses))
    names = ", ".join(runs)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = (f"{len(runs)} run{'s' if len(runs) > 1 else ''} ({names}); kind {kind!r}, "
            f"{len(picked)} layer{'s' if len(picked) != 1 else ''}; tensorstats {__version__}; "
            f"written {when}.")
    return render_page(f"tensorstats report: {names}", meta, summary, sections)


def write_report(runs: Any, out_dir: str | os.PathLike[str], *, kind: str | None = None,
                 layers: str | Sequence[str] | None = None, max_steps: int | None = MAX_STEPS,
                 per_page: int = 8, progress: Progress | None = None,
                 overwrite: bool = False) -> Path:
    """Write a self-contained HTML report of one or several runs to ``out_dir/index.html``.

    The page opens offline and alone: figures are PNG data URIs, no script,
    no web font, no link outside the file. It holds, in order: a summary in
    plain words (:func:`findings`, plus the layers that drifted most), the
    loss curves, per-layer figures paged by ``per_page`` layers (moments over
    steps, a normality heatmap, first-vs-last distributions on shared bins,
    shift from the first step), the moments that correlate best with the
    loss after detrending, emission/absorption where the runs allow it, and a
    listing of the stores.

    Parameters
    ----------
    runs : Run, Runs, path, list of paths or mapping {name: path or Run}
        The runs, side by side (one column or one colour per run).
    out_dir : path
        Created if needed.
    kind : str, optional
        The kind of the per-layer figures; default ``"feature"`` if present,
        else ``"weight"``.
    layers : str or list of str, optional
        Glob patterns of the layers to show (``["conv*", "fc1"]``); default all.
    max_steps : int or None
        Normality and shift use at most this many evenly spaced steps (first
        and last included); ``None`` uses all. Moments use every step.
    per_page : int
        Most layers per figure; more layers give more figures.
    progress : callable, optional
        ``progress(iterable, label) -> iterable`` (a tqdm- or
        click.progressbar-like factory): the loop over runs and the loops
        over pages of each section go through it.
    overwrite : bool
        Replace an ``index.html`` that this function did not write. A report
        written before is always replaced.

    Returns
    -------
    pathlib.Path
        The path of ``index.html``.

    Raises
    ------
    FileExistsError
        ``out_dir/index.html`` exists, is not a report and ``overwrite`` is False.

    Examples
    --------
    >>> import numpy as np, tempfile, os, tensorstats as ts
    >>> from tensorstats.report import write_report
    >>> tmp = tempfile.mkdtemp()
    >>> rng = np.random.default_rng(0)
    >>> with ts.Recorder(os.path.join(tmp, "run.zarr")) as rec:
    ...     for step in range(0, 50, 10):
    ...         rec.record("weight", "fc.weight", rng.normal(size=(4, 30)), step=step)
    ...         rec.record_scalar("loss", 1.0 / (1 + step), step=step)
    >>> path = write_report(os.path.join(tmp, "run.zarr"), os.path.join(tmp, "report"))
    >>> path.name, "<h2><a href=\\"#summary\\">Summary</a></h2>" in path.read_text()
    ('index.html', True)
    """
    out = Path(out_dir)
    index = out / "index.html"
    if index.exists() and not overwrite and not is_report(index):
        raise FileExistsError(f"{index} exists and is not a tensorstats report; pass "
                              "overwrite=True to replace it")
    named = as_runs(runs)
    html = render_report(named, kind=kind, layers=layers, max_steps=max_steps,
                         per_page=per_page, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / ".index.html.partial"
    partial.write_text(html, encoding="utf-8")
    os.replace(partial, index)
    return index
