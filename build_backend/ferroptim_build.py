"""PEP 517 build backend: maturin's, except that a missing cargo is a clear error.

maturin's own backend silently downloads a whole Rust toolchain into a temporary directory
when `cargo` is not on PATH. This one says what is needed instead: Rust >= 1.89 (rustup.rs or
the system's package manager), or no Rust at all by installing a prebuilt wheel. Set
MATURIN_NO_INSTALL_RUST=0 to get maturin's download back.
"""

import os
import shutil
import sys

import maturin

RUST_MINIMUM = "1.89"

MESSAGE = f"""
ferroptim: building from source needs Rust >= {RUST_MINIMUM} and cargo, and `cargo` is not on PATH.
  - install Rust with https://rustup.rs (or the system's package manager; check `cargo --version`), or
  - install a prebuilt wheel instead, which needs no Rust:  pip install --only-binary ferroptim ferroptim
    (or `pip install ferroptim-*.whl` from `make wheels`).
"""

if os.environ.get("MATURIN_NO_INSTALL_RUST") == "0":
    del os.environ["MATURIN_NO_INSTALL_RUST"]
else:
    os.environ["MATURIN_NO_INSTALL_RUST"] = "1"


def _require_cargo() -> None:
    if "MATURIN_NO_INSTALL_RUST" in os.environ and shutil.which("cargo") is None:
        sys.stderr.write(MESSAGE)
        raise SystemExit(1)


def get_requires_for_build_wheel(config_settings=None):
    return maturin.get_requires_for_build_wheel(config_settings)


def get_requires_for_build_sdist(config_settings=None):
    return maturin.get_requires_for_build_sdist(config_settings)


def get_requires_for_build_editable(config_settings=None):
    return maturin.get_requires_for_build_editable(config_settings)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    _require_cargo()
    return maturin.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _require_cargo()
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _require_cargo()
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory, config_settings=None):
    _require_cargo()
    return maturin.build_sdist(sdist_directory, config_settings)


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel
