"""The benchmarks' bandwidth reference is not part of the wheel: src/bandwidth.rs and
``_core.stream_reference`` exist only with the ``bench-refs`` cargo feature, and
benches/compare.py runs without them, saying which rows it skipped."""

import sys
from pathlib import Path

import pytest

import ferroptim as fo

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--sets", "net [2,5,2,1]", "--optimizers", "Adam", "--rounds", "1"]


@pytest.fixture
def compare(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benches"))
    for name in ("compare", "_common"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import compare

    return compare


def test_compare_skips_the_reference_rows_without_the_feature(compare, monkeypatch, capsys):
    monkeypatch.setattr(compare, "STREAM", None)
    labels = [label for label, _ in compare.make_runners("Adam", [(3, 2)], with_numpy=False)[2]]
    assert "ferroptim" in labels and not any("bandwidth" in label for label in labels)
    compare.main(TINY)
    out = capsys.readouterr().out
    assert compare.NO_STREAM in out and "bandwidth reference" not in out.replace(compare.NO_STREAM, "")


def test_compare_times_the_reference_with_the_feature(compare, capsys):
    if not hasattr(fo._core, "stream_reference"):
        pytest.skip("this extension was built without the bench-refs feature (make bench-refs)")
    compare.main(TINY)
    out = capsys.readouterr().out
    assert "bandwidth reference" in out and compare.NO_STREAM not in out
