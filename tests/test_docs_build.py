"""The documentation site builds with ``mkdocs build --strict`` and its pages say something.

The strict build turns every warning (a broken link or anchor, a docstring
mkdocstrings cannot parse, a page left out of the nav) into a failure. The
API pages are checked against :func:`inspect.signature` of the functions
they document, so an empty or stale reference fails too, and the quickstart's
Python blocks are run as they are.
"""

from __future__ import annotations

import html
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings_handlers.python")
pytest.importorskip("material")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _text(page: Path) -> str:
    """The visible text of a built page's article, tags stripped, whitespace collapsed."""
    source = page.read_text(encoding="utf-8")
    start, end = source.find("<article"), source.find("</article>")
    assert start >= 0 and end > start, f"{page} has no <article>"
    text = html.unescape(re.sub(r"<[^>]+>", " ", source[start:end]))
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--clean",
         "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    assert "WARNING" not in log, log
    return out


def test_every_page_is_built(site: Path) -> None:
    sources = [p.relative_to(DOCS) for p in DOCS.rglob("*.md") if p.name != "README.md"]
    assert len(sources) >= 10
    for md in sources:
        built = (site / "index.html" if md.stem == "index" and md.parent == Path(".")
                 else site / md.parent / ("" if md.stem == "index" else md.stem) / "index.html")
        assert built.is_file(), f"{md} was not built ({built} missing)"


def _signature_params(text: str, name: str) -> list[str]:
    """Parameter names of the first rendered signature ``name(...)`` in ``text``."""
    match = re.search(rf"(?<![\w.]){name} \( (.*?) \)(?: -> [^ ]+)? ", text)
    assert match, f"no rendered signature of {name}"
    params = []
    depth = 0
    current = ""
    for ch in match.group(1):  # split on top-level commas only (defaults may hold tuples)
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            params.append(current)
            current = ""
        else:
            current += ch
    params.append(current)
    names = [re.split(r"[:=]", p)[0].strip() for p in params]
    return [n for n in names if n and n not in ("*", "/")]


@pytest.mark.parametrize(("page", "name", "qualname"), [
    ("api/analyses", "moments", "tensorstats.moments"),
    ("api/analyses", "normality", "tensorstats.normality"),
    ("api/analyses", "correlate", "tensorstats.correlate"),
    ("api/reading", "open_run", "tensorstats.open_run"),
])
def test_api_pages_render_signatures(site: Path, page: str, name: str, qualname: str) -> None:
    import tensorstats as ts

    func = getattr(ts, qualname.split(".")[-1])
    expected = list(inspect.signature(func).parameters)
    text = _text(site / page / "index.html")
    assert _signature_params(text, name) == expected
    assert qualname in text  # the heading
    # the docstring's first line and its parameter table are there too
    summary = inspect.getdoc(func).splitlines()[0].replace("``", "")
    assert re.sub(r"\s", "", summary) in re.sub(r"\s", "", text)
    for param in expected:
        assert re.search(rf" {param} ", text), f"{param} of {name} is not described"


def test_shared_parameter_text_is_filled_in(site: Path) -> None:
    text = _text(site / "api/analyses/index.html")
    assert "{by}" not in text and "{align}" not in text
    # the shared `by` text (written once in stats.groups) appears once per function using it
    from tensorstats.stats.groups import BY_DOC

    first_line = re.sub(r"\s+", " ", BY_DOC.splitlines()[1].strip())
    assert text.count(first_line) >= 3  # moments, normality, shift


def test_site_is_offline(site: Path) -> None:
    for page in site.rglob("*.html"):
        source = page.read_text(encoding="utf-8")
        for host in ("fonts.googleapis.com", "fonts.gstatic.com", "googletagmanager.com"):
            assert host not in source, f"{page} loads {host}"


def test_quickstart_runs(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "quickstart.md").read_text(), re.S)
    assert len(blocks) >= 4
    proc = subprocess.run([sys.executable, "-c", "\n".join(blocks)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr
    for figure in ("trajectories.png", "weights.png", "normality.png"):
        assert (tmp_path / figure).stat().st_size > 1000
    assert (tmp_path / "runs" / "a.zarr" / "zarr.json").is_file()
