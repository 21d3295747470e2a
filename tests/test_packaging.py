"""Packaging promises: a missing cargo is a clear error, the version and Rust minimum are
each stated once, the license travels with the package."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ferroptim as fo

ROOT = Path(__file__).resolve().parent.parent


def backend(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Runs `code` with the in-tree build backend imported as `b` and no cargo on PATH."""
    pytest.importorskip("maturin")
    env = {k: v for k, v in os.environ.items() if k != "MATURIN_NO_INSTALL_RUST"}
    env["PATH"] = str(tmp_path)  # an empty directory: no cargo, rustup or anything else
    prog = f"import sys; sys.path.insert(0, 'build_backend'); import ferroptim_build as b\n{code}"
    return subprocess.run(
        [sys.executable, "-c", prog, str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True
    )


@pytest.mark.slow
def test_without_cargo_the_build_stops_with_what_to_install_instead_of_downloading_rust(tmp_path):
    requires = backend("print(b.get_requires_for_build_wheel())", tmp_path)
    assert requires.returncode == 0, requires.stderr
    assert "puccinialin" not in requires.stdout  # maturin's Rust downloader
    for hook in ("prepare_metadata_for_build_wheel(sys.argv[1])", "build_wheel(sys.argv[1])"):
        out = backend(f"b.{hook}", tmp_path)
        assert out.returncode == 1
        assert "needs Rust >= 1.89 and cargo" in out.stderr
        assert "rustup.rs" in out.stderr and "pip install --only-binary" in out.stderr


def test_the_rust_minimum_is_the_one_cargo_toml_declares():
    sys.path.insert(0, str(ROOT / "build_backend"))
    import ferroptim_build

    cargo = (ROOT / "Cargo.toml").read_text()
    assert re.search(r'^rust-version = "([\d.]+)"', cargo, re.M).group(1) == ferroptim_build.RUST_MINIMUM
    assert f"Rust >= {ferroptim_build.RUST_MINIMUM}" in (ROOT / "README.md").read_text()


def test_the_version_comes_from_cargo_toml_alone():
    cargo = (ROOT / "Cargo.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', cargo, re.M).group(1)
    assert fo.__version__ == version
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and not re.search(r"^version\s*=", pyproject, re.M)
    assert f"## {version}" in (ROOT / "CHANGELOG.md").read_text()


def test_the_installed_metadata_has_license_urls_and_python_classifiers():
    from importlib.metadata import metadata

    meta = metadata("ferroptim")
    assert meta["License-Expression"] == "MIT"
    assert {u.split(",")[0] for u in meta.get_all("Project-URL")} >= {"Repository", "Changelog"}
    classifiers = meta.get_all("Classifier")
    for minor in range(9, 14):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert "MIT License" in (ROOT / "LICENSE").read_text()
