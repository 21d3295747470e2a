"""MkDocs hooks of the ferroptim site (loaded by ``hooks:`` in mkdocs.yml).

1. Runs the Python code blocks of every page before the build, in order, in one namespace
   per page and a fresh temporary directory as the working directory: a block that raises
   fails the build, and the figures the code writes there (``*.png``, ``*.svg``) are added
   to the site beside the page, so ``![...](name.png)`` shows what the package drew during
   this build. ``tests/test_docs.py`` runs the same blocks with :func:`run_page`.
2. Turns the math that ``pymdownx.arithmatex`` marks (``$...$``, ``$$...$$``, also in
   docstrings) into MathML with latex2mathml: browsers render it natively, so the site
   needs no JavaScript and no network for formulas.
"""

from __future__ import annotations

import contextlib
import html
import io
import logging
import os
import re
import tempfile
import time
import traceback
from pathlib import Path

FENCE = re.compile(r"^```[ \t]*(?:python|py)\b[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
FIGURE_SUFFIXES = (".png", ".svg")
log = logging.getLogger("mkdocs.hooks.ferroptim")


class CodeBlockError(Exception):
    """A code block of a page raised."""


def python_blocks(markdown: str) -> list[tuple[int, str]]:
    """The fenced ``python`` blocks of a page that start in column 0: ``(line, code)``."""
    return [(markdown.count("\n", 0, m.start()) + 1, m.group(1)) for m in FENCE.finditer(markdown)]


def run_page(markdown: str, workdir: Path, name: str = "<page>", path: Path | None = None) -> list[Path]:
    """Runs every Python block of ``markdown`` in order, with ``workdir`` as the working
    directory and one namespace for the page; returns the figures written into ``workdir``.
    With ``path`` (the page's file) the blocks see it as ``__file__``, so a page can read
    files of the repository (the benchmark results) relative to itself.

    Raises:
        RuntimeError: a block raised; the message names the page and the block's line.
    """
    blocks = python_blocks(markdown)
    if not blocks:
        return []
    os.environ.setdefault("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": "__main__"}
    if path is not None:
        namespace["__file__"] = str(Path(path).resolve())
    old = os.getcwd()
    os.chdir(workdir)
    try:
        from threadpoolctl import threadpool_limits

        # NumPy's BLAS threads cost more than they save on the docs' small matrices.
        with threadpool_limits(1, user_api="blas"), contextlib.redirect_stdout(io.StringIO()):
            for line, code in blocks:
                try:
                    exec(compile(code, f"{name}:{line}", "exec"), namespace)
                except Exception as e:
                    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.startswith(name)]
                    where = "".join(traceback.format_list(frames))
                    raise CodeBlockError(
                        f"{name}: the code block at line {line} raised {type(e).__name__}: {e}\n{where}"
                    ) from e
    finally:
        os.chdir(old)
        try:
            import matplotlib.pyplot as plt

            plt.close("all")
        except ImportError:
            pass
    return sorted(p for p in workdir.iterdir() if p.suffix in FIGURE_SUFFIXES)


def on_files(files, config):
    from mkdocs.structure.files import File

    docs_dir = Path(config["docs_dir"])
    for page in list(files.documentation_pages()):
        text = Path(page.abs_src_path).read_text(encoding="utf-8")
        if not python_blocks(text):
            continue
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                figures = run_page(text, Path(tmp), page.src_uri, Path(page.abs_src_path))
            except CodeBlockError as e:
                from mkdocs.exceptions import PluginError

                raise PluginError(str(e)) from None
            folder = Path(page.src_uri).parent
            for fig in figures:
                uri = (folder / fig.name).as_posix()
                if (docs_dir / uri).exists():
                    raise RuntimeError(f"{page.src_uri} draws {uri}, which is also a file in docs/")
                files.append(File.generated(config, uri, content=fig.read_bytes()))
        log.info(
            "ran the code of %s (%d figures) in %.1f s",
            page.src_uri,
            len(figures),
            time.perf_counter() - started,
        )
    return files


MATH = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)
MTEXT = re.compile(r"(<mtext[^>]*>)(.*?)(</mtext>)", re.S)
TEXT_ESCAPE = re.compile(r"\\([_%&#$])")


def _mathml(match: re.Match) -> str:
    from latex2mathml.converter import convert

    tag, body = match.group(1), html.unescape(match.group(2)).strip()
    if body.startswith("\\(") and body.endswith("\\)"):
        display, tex = "inline", body[2:-2]
    elif body.startswith("\\[") and body.endswith("\\]"):
        display, tex = "block", body[2:-2]
    else:
        log.warning("math not understood: %r", body)
        return match.group(0)
    try:
        out = convert(tex.strip(), display=display)
    except Exception as e:  # latex2mathml raises its own exception types
        log.warning("could not render the formula %r: %s", tex, e)
        return match.group(0)
    # latex2mathml keeps LaTeX's escapes inside \text{} literally ("decay\_rate"): unescape them
    out = MTEXT.sub(lambda m: m.group(1) + TEXT_ESCAPE.sub(r"\1", m.group(2)) + m.group(3), out)
    return f'<{tag} class="math">{out}</{tag}>'


def on_page_content(html_text, page, config, files):
    return MATH.sub(_mathml, html_text)


if __name__ == "__main__":
    # ``python docs/hooks/docs_hooks.py PAGE.md WORKDIR``: runs one page's code in a fresh
    # interpreter (as tests/test_docs.py does) and prints the figures it drew.
    import sys

    page, workdir = Path(sys.argv[1]), Path(sys.argv[2])
    for figure in run_page(page.read_text(encoding="utf-8"), workdir, page.name, page):
        print(figure.name)
