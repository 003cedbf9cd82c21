#!/usr/bin/env python
"""Build the documentation site: execute every lesson notebook in a Jupyter kernel, then build the site with
mkdocs in strict mode (a broken link, a missing reference or a failing notebook fails the build).

    pip install -e ".[docs]"
    python docs/build.py                 # the notebooks at the book's size (minutes each on a CPU), the site in site/
    python docs/build.py --quick         # REGJAX_QUICK=1: every notebook small (seconds each)
    python -m http.server -d site        # then open http://127.0.0.1:8000

The notebooks' sources are ``notebooks/*.py`` (jupytext percent format). Each is executed with nbclient in a
``python3`` kernel whose working folder is ``notebooks/``; the executed notebook (outputs and figures) is written to
``docs/lessons/<name>.ipynb`` (generated, not committed), where mkdocs-jupyter renders it without running it again.
Links in the notebooks' text that point at ``../docs/<page>.md`` (right in Jupyter, from ``notebooks/``) become the
page's address on the site. ``--only NAME`` executes the named notebooks only (and skips the site with
``--no-site``).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
LESSONS = ROOT / "docs" / "lessons"
LINK = re.compile(r"\]\(\.\./docs/([^)#]+)\.md(#[^)]*)?\)")


def site_links(text: str) -> str:
    """``](../docs/page.md#anchor)`` (a link from ``notebooks/``) as the rendered notebook's link to that page:
    ``](../../page/#anchor)`` (the notebook's page is ``lessons/<name>/``)."""
    return LINK.sub(lambda m: f"](../../{m.group(1)}/{m.group(2) or ''})", text)


def execute(source: Path, quick: bool, timeout: int) -> dict:
    """Execute one notebook in a fresh kernel; write it with its outputs to ``docs/lessons/``. Returns
    ``{'name', 'seconds', 'figures', 'error'}`` (``error``: the failing cell's exception, or ``None``)."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = jupytext.read(source)
    env_before = os.environ.get("REGJAX_QUICK")
    os.environ["REGJAX_QUICK"] = "1" if quick else ""
    start, error = time.perf_counter(), None
    try:
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    except CellExecutionError as err:
        error = str(err).strip().splitlines()[-1]
    finally:
        if env_before is None:
            os.environ.pop("REGJAX_QUICK", None)
        else:
            os.environ["REGJAX_QUICK"] = env_before
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = site_links(cell.source)
    LESSONS.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, LESSONS / f"{source.stem}.ipynb")
    figures = sum("image/png" in out.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
                  for out in cell.get("outputs", []))
    return {"name": source.stem, "seconds": time.perf_counter() - start, "figures": figures, "error": error}


def execute_all(quick: bool, only: list, jobs: int, timeout: int) -> list:
    sources = sorted(NOTEBOOKS.glob("*.py"))
    if only:
        sources = [s for s in sources if s.stem in only]
        missing = set(only) - {s.stem for s in sources}
        if missing:
            raise SystemExit(f"no notebook named {sorted(missing)} in {NOTEBOOKS}")
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(execute, sources, [quick] * len(sources), [timeout] * len(sources)))


def build_site(site: Path) -> None:
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
                    "--site-dir", str(site)], cwd=ROOT, check=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="REGJAX_QUICK=1: every notebook at its small size")
    p.add_argument("--only", nargs="+", default=[], metavar="NAME", help="execute these notebooks only")
    p.add_argument("--no-site", action="store_true", help="execute the notebooks, build no site")
    p.add_argument("--site", type=Path, default=ROOT / "site", help="where the site goes")
    p.add_argument("--jobs", type=int, default=2, help="notebooks executed at once")
    p.add_argument("--timeout", type=int, default=3600, help="seconds a cell may take")
    args = p.parse_args(argv)
    results = execute_all(args.quick, args.only, args.jobs, args.timeout)
    for r in results:
        status = f"FAILED: {r['error']}" if r["error"] else f"{r['figures']} figure(s)"
        print(f"{r['name']:<40} {r['seconds']:6.1f} s  {status}", flush=True)
    failed = [r["name"] for r in results if r["error"] or not r["figures"]]
    if failed:
        print(f"notebooks that failed or drew nothing: {failed}", file=sys.stderr)
        return 1
    if not args.no_site:
        build_site(args.site)
        print(f"site: {args.site}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
