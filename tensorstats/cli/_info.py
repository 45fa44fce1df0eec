"""``tensorstats info RUN``: what a run holds, findings first."""

from __future__ import annotations

import json
from typing import Any

import click

from ._common import open_runs
from ._errors import reported


def _steps(values: Any) -> dict[str, Any]:
    steps = [int(s) for s in values]
    return {"first": steps[0] if steps else None, "last": steps[-1] if steps else None,
            "count": len(steps)}


def disk_usage(store: str) -> int | None:
    """Bytes the store's files take (local folders and fsspec URLs); None if unknown."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(store)
        return int(fs.du(path, total=True))
    except (OSError, NotImplementedError, ValueError):
        return None


def describe(run: Any) -> dict[str, Any]:
    """A JSON-ready description of one run (no tensor data is read)."""
    from ..store.format import META_KEY

    series: dict[str, dict[str, Any]] = {}
    for kind in run.kinds:
        series[kind] = {}
        for layer in run.layers(kind):
            da = run[kind, layer]
            series[kind][layer] = {
                "dims": list(da.dims), "shape": list(da.shape), "dtype": str(da.dtype),
                "steps": _steps(da["step"].values),
                "subsampled": run.moments(kind, layer) is not None}
    scalars = {}
    for name, da in run.scalars.data_vars.items():
        logged = da.dropna("step")
        scalars[str(name)] = {**_steps(logged["step"].values),
                              "last_value": float(logged[-1]) if logged.size else None}
    meta = run.attrs.get(META_KEY, {})
    return {"store": run.store, "format_version": meta.get("format_version"),
            "written_by": meta.get("version"), "size_bytes": disk_usage(run.store),
            "steps": _steps(run.steps), "kinds": series, "scalars": scalars,
            "probes": list(run.probes),
            "summaries": {k: run.summary_layers(k) for k in run.summary_kinds},
            "first_nonfinite": meta.get("first_nonfinite"),
            "attrs": {k: v for k, v in run.attrs.items() if k != META_KEY}}


def _human(name: str, info: dict[str, Any], findings: list[str]) -> str:
    from ..run_repr import fmt_bytes as _fmt_bytes

    lines = [f"{name}: {info['store']}"]
    first = info.get("first_nonfinite")
    if first:  # noted by the writer as it happened, also for runs that crashed later
        findings = [f"the writer noted the first NaN/Inf at step {first['step']}, in "
                    f"{first['series']} ({first['nan']} NaN, {first['inf']} Inf)", *findings]
    if findings:
        lines.append("findings:")
        lines += [f"  - {f}" for f in findings]
    st = info["steps"]
    size = "?" if info["size_bytes"] is None else _fmt_bytes(info["size_bytes"])
    lines.append(f"steps {st['first']}..{st['last']} ({st['count']} logged), {size} on disk, "
                 f"format {info['format_version']}")
    if info["scalars"]:
        lines.append("scalars: " + ", ".join(
            f"{n} ({s['count']} steps, last {s['last_value']:.4g})"
            if s["last_value"] is not None else f"{n} (empty)"
            for n, s in info["scalars"].items()))
    for kind, layers in info["kinds"].items():
        lines.append(f"{kind} ({len(layers)} layers):")
        width = max((len(n) for n in layers), default=0)
        for layer, s in layers.items():
            dims = ", ".join(f"{d}: {n}" for d, n in zip(s["dims"], s["shape"], strict=True))
            sub = "  subsampled" if s["subsampled"] else ""
            lines.append(f"  {layer:<{width}}  ({dims})  {s['dtype']}  "
                         f"{s['steps']['count']} steps{sub}")
    if info["probes"]:
        lines.append("probes: " + ", ".join(info["probes"]))
    if info["attrs"]:
        lines.append("attrs: " + json.dumps(info["attrs"], sort_keys=True))
    return "\n".join(lines)


@click.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN...")
@click.option("--json", "as_json", is_flag=True, help="One JSON object for scripts.")
@click.option("--no-findings", is_flag=True,
              help="Skip the findings (they read every series' moments).")
@reported
def info(runs: tuple[str, ...], as_json: bool, no_findings: bool) -> None:
    """What RUN holds: findings first, then kinds, layers, shapes, dtypes, steps, size,
    scalars and attrs."""
    opened = open_runs(runs)
    out = {}
    for name, run in opened.items():
        found: list[str] = []
        if not no_findings:
            from ..report import findings

            found = list(findings(run))
        out[name] = {**describe(run), "findings": found}
    if as_json:
        click.echo(json.dumps(out if len(out) > 1 else next(iter(out.values())), indent=2,
                              sort_keys=False, default=str))
        return
    click.echo("\n\n".join(_human(n, i, i["findings"]) for n, i in out.items()))
