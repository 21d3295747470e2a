"""The documentation site's code: every Python block of docs/**/*.md runs (each page in a
fresh interpreter, blocks in order, one namespace per page) and draws the figures the page
shows; the docstrings' examples run as doctests; the docs' reST-to-Markdown and math
conversions do what the API reference relies on."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HOOKS = DOCS / "hooks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, HOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _load("docs_hooks")
PAGES = sorted(p for p in DOCS.rglob("*.md") if hooks.python_blocks(p.read_text(encoding="utf-8")))
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def test_the_docs_have_code_to_run():
    assert len(PAGES) >= 15
    assert DOCS / "tutorial" / "minibatch.md" in PAGES


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_every_code_block_runs_and_draws_the_figures_of_its_page(page, tmp_path):
    done = subprocess.run(
        [sys.executable, str(HOOKS / "docs_hooks.py"), str(page), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    drawn = set(done.stdout.split())
    shown = {m for m in IMAGE.findall(page.read_text(encoding="utf-8")) if "/" not in m}
    assert shown <= drawn, f"{page.name} shows figures its code does not draw: {shown - drawn}"
    for name in drawn:
        assert (tmp_path / name).stat().st_size > 10_000  # a real figure, not an empty file


def test_a_failing_block_names_the_page_and_line(tmp_path):
    page = "# t\n\n```python\nx = 1\n```\n\ntext\n\n```python\nassert x == 2, 'x is 1'\n```\n"
    with pytest.raises(
        hooks.CodeBlockError, match=r"p.md: the code block at line 9 raised AssertionError: x is 1"
    ):
        hooks.run_page(page, tmp_path, "p.md")


def test_blocks_that_are_not_python_or_are_indented_do_not_run(tmp_path):
    page = "```bash\nexit 1\n```\n\n    ```python\n    raise SystemExit\n    ```\n\n```py\ny = 2\n```\n"
    assert [code for _, code in hooks.python_blocks(page)] == ["y = 2\n"]
    assert hooks.run_page(page, tmp_path) == []


MODULES = [
    "ferroptim",
    "ferroptim.optim",
    "ferroptim.batches",
    "ferroptim.averages",
    "ferroptim.schedules",
    "ferroptim.clip",
    "ferroptim.wrappers",
    "ferroptim.data._sliced",
]


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_of_the_api_reference_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_the_optimizer_classes_doctests_are_found_from_ferroptim_optim():
    # doctest.testmod(ferroptim.optim) only collects classes whose __module__ is
    # "ferroptim.optim"; the classes live in the package's inner modules, so without that the
    # examples above would silently stop running.
    module = importlib.import_module("ferroptim.optim")
    found = {t.name.rsplit(".", 1)[-1] for t in doctest.DocTestFinder().find(module) if t.examples}
    with_examples = {n for n in module.__all__ if ">>>" in (getattr(module, n).__doc__ or "")}
    assert with_examples and with_examples <= found


# -- the API reference's conversions ------------------------------------------------------

rst = _load("griffe_rst")


def test_update_formulas_become_math_and_other_blocks_stay_code():
    text = "The update::\n\n    v = beta * v + (1 - beta) * g\n    p = p - lr * v\n\nAfter."
    out = rst.literal_blocks(text)
    assert "The update:\n" in out and "::" not in out
    assert r"v \leftarrow \beta\,v + \left(1 - \beta\right)\,g" in out
    assert out.count("$$") == 4
    code = rst.literal_blocks("Use it::\n\n    import ferroptim as fo\n    opt = fo.Adam(params)\n")
    assert "```python\nimport ferroptim as fo\n" in code
    pseudo = rst.literal_blocks("Steps::\n\n    if t > 5:\n        p = p - r\n")
    assert "```text" in pseudo and "$$" not in pseudo


@pytest.mark.parametrize(
    "line, tex",
    [
        ("s = s + g * g", r"s \leftarrow s + g\,g"),
        (
            "u = maximum(beta2 * u, |g| + eps)",
            r"u \leftarrow \max\left(\beta_{2}\,u, \lvert g \rvert + \epsilon\right)",
        ),
        ("v_t / (1 - beta**t)", r"\frac{v_{t}}{1 - {\beta}^{t}}"),
        ("x = mu_{t+1}", r"x \leftarrow {\mu}_{t + 1}"),
        ("g *= 2  # twice", r"g \leftarrow g \cdot 2\qquad \text{twice}"),
    ],
)
def test_formula_lines(line, tex):
    assert rst.formula_line(line) == tex


def test_rest_tables_roles_and_shared_arguments():
    table = "=====  =====\nname   value\n=====  =====\na      1\n       more\nb      2\n=====  =====\n"
    assert rst.simple_tables(table).splitlines()[:4] == [
        "| name | value |",
        "|---|---|",
        "| a | 1 more |",
        "| b | 2 |",
    ]
    args = "Args:\n    a, b: shared.\n        More.\n    c: own.\n"
    assert (
        rst.shared_args(args)
        == "Args:\n    a: shared.\n        More.\n    b: shared.\n        More.\n    c: own.\n"
    )


def test_math_becomes_mathml():
    html = '<p><span class="arithmatex">\\(\\beta^t &lt; 1\\)</span></p><div class="arithmatex">\\[x\\]</div>'
    out = hooks.MATH.sub(hooks._mathml, html)
    assert '<span class="math"><math' in out and 'display="inline"' in out
    assert '<div class="math"><math' in out and 'display="block"' in out
    assert "&#x003B2;" in out and "arithmatex" not in out  # beta, and nothing left for JavaScript


def test_latex_escapes_in_text_render_as_the_character():
    html = '<span class="arithmatex">\\(\\text{decay\\_rate} \\cdot \\text{50\\%}\\)</span>'
    out = hooks.MATH.sub(hooks._mathml, html)
    assert "decay_rate" in out and "50%" in out and "\\" not in out


def test_dataclass_defaults_from_a_factory_read_as_the_value_they_make():
    import griffe

    plain = griffe.load("ferroptim.nn", search_paths=[str(ROOT / "python")])
    assert str(plain["History"]["__init__"].parameters["costs"].default) == "(lambda: np.empty(0))()"
    ours = griffe.load(
        "ferroptim.nn",
        search_paths=[str(ROOT / "python")],
        extensions=griffe.load_extensions(rst.ReSTToMarkdown),
    )
    history = ours["History"]
    assert str(history["__init__"].parameters["costs"].default) == "np.empty(0)"
    assert str(history["epochs"].value) == "np.empty(0, dtype=np.int64)"
    assert str(history["timing"].value) == "dict()"


def test_a_page_sees_its_own_file_so_it_can_read_the_benchmark_results(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("```python\nfrom pathlib import Path\nassert Path(__file__).name == 'p.md'\n```\n")
    hooks.run_page(page.read_text(), tmp_path, "p.md", page)
    with pytest.raises(hooks.CodeBlockError, match="NameError"):
        hooks.run_page(page.read_text(), tmp_path, "p.md")  # without the path, no __file__


def test_the_benchmark_results_the_benchmarks_page_draws_are_in_the_repository():
    import json

    run = json.loads((ROOT / "benches" / "results" / "train_compare.json").read_text())
    assert "AMD EPYC" in run["machine"]
    assert [r["workload"] for r in run["results"]] == ["W1", "W2", "W3", "W4"]
    assert all(r["contenders"]["fit"]["seconds"] > 0 for r in run["results"])
