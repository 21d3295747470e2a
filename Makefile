# `make test` and `make demo` work on a fresh machine with Python >= 3.9 and cargo:
# they create .venv, install the Python dependencies, build the extension (release) and
# install it, then run.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.deps-installed
PKG_STAMP := $(VENV)/.ferroptim-installed
SOURCES := $(shell find src benches -name "*.rs") Cargo.toml Cargo.lock pyproject.toml README.md \
	$(shell find python -type f -not -path '*/__pycache__/*' -not -name '*.so')

# The Python that runs the comparison benchmarks: point it at an environment that also has
# torch (and ferroptim: pip install dist/ferroptim-*.whl) to get the torch columns.
BENCH_PYTHON ?= $(PY)

RELEASE_STAMP := $(VENV)/.release-tools-installed
WHEEL_TARGETS := x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu

.PHONY: setup test test-fast test-rust test-python demo bench bench-refs lint docs wheels test-wheels clean

setup: $(PKG_STAMP)

$(DEPS_STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# `pip wheel .` builds exactly what `pip install .` builds; the wheel in dist/ is also the
# one tests/test_wheel.py installs into a brand-new virtual environment.
$(PKG_STAMP): $(DEPS_STAMP) $(SOURCES)
	rm -f dist/ferroptim-*.whl
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir dist .
	$(PY) -m pip install --quiet --force-reinstall --no-deps dist/ferroptim-*.whl
	touch $@

# torch, for tests/test_torch*.py, the schedulefree package (torch's schedule-free
# optimizers) for tests/test_schedulefree.py, and PyTorch Lightning, transformers and
# accelerate for tests/test_torch_frameworks.py (ferroptim.torch inside their trainers; about
# 25 s more to install from wheels); those tests skip without them (CI installs them, `make
# test` does not need them). PyPI's Linux wheel of torch is its CUDA build, which imports
# only with its nvidia-* dependencies (about 3 GB), on CPU-only machines too.
TORCH_STAMP := $(VENV)/.torch-installed
.PHONY: deps-torch
deps-torch: $(TORCH_STAMP)

$(TORCH_STAMP): $(DEPS_STAMP)
	$(PY) -m pip install --quiet "torch>=2.1" "schedulefree>=1.4" "lightning>=2.1" "transformers>=4.40" "accelerate>=0.26"
	touch $@

test: test-rust test-python

# The inner loop: cargo test and every pytest test but those marked `slow` (subprocesses,
# MPI jobs, wheel and demo runs end to end, the further cases of the conformance sweeps), on
# every core (pytest-xdist); `make test` runs them all.
test-fast: setup
	cargo test --quiet --features bench-refs
	$(PY) -m pytest -q -m "not slow" -n auto

test-rust:
	cargo test --quiet --features bench-refs

test-python: setup
	$(PY) -m pytest -q

demo: setup
	$(VENV)/bin/ferroptim demo

# The memory-bandwidth references are not in the wheel: the kernels bench builds them with the
# `bench-refs` cargo feature; benches/compare.py prints its reference rows only on an extension
# built with it (`make bench-refs` installs one into .venv), and skips them otherwise.
bench: setup
	cargo bench --features bench-refs --bench kernels
	cargo bench --bench gather
	cargo bench --bench nn
	$(BENCH_PYTHON) benches/compare.py --family
	FERROPTIM_NUM_THREADS=1 $(VENV)/bin/mpiexec -n 2 $(PY) benches/distributed_compare.py

# The extension with the benchmarks' bandwidth reference (`_core.stream_reference`), into .venv
# in place of the wheel's; `rm $(PKG_STAMP)` and `make setup` put the wheel's back.
bench-refs: $(DEPS_STAMP)
	MATURIN_PEP517_ARGS="--features python,bench-refs" $(PY) -m pip install --quiet --force-reinstall --no-deps .

# The Python sources ruff checks and formats (README.md's examples keep their aligned comments).
PY_SOURCES := python tests benches examples scripts build_backend docs/hooks

# Clippy's pedantic group and its allow-list are in Cargo.toml ([lints.clippy]) and clippy.toml;
# mypy type-checks the package (pyproject.toml's [tool.mypy]); the stub
# python/ferroptim/_core.pyi is checked against the built extension. .pre-commit-config.yaml
# runs the fast steps (ruff, cargo fmt, mypy) before each commit.
lint: setup
	cargo fmt --check
	cargo clippy --all-targets --features python -- -D warnings
	cargo clippy --all-targets --features python,bench-refs -- -D warnings
	$(VENV)/bin/ruff check $(PY_SOURCES)
	$(VENV)/bin/ruff format --check $(PY_SOURCES)
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest ferroptim._core --allowlist stubtest-allowlist.txt
	$(MAKE) docs

# The site (mkdocs.yml, docs/) into site/: fails on any warning (a broken link, a docstring
# that does not render, a code block that raises); the tutorial's figures are drawn by its
# code during the build. tests/test_docs.py runs the same code blocks under pytest.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

$(RELEASE_STAMP): $(DEPS_STAMP) requirements-release.txt
	$(PY) -m pip install --quiet -r requirements-release.txt
	touch $@

# manylinux2014 (glibc >= 2.17) abi3 wheels for x86_64 and aarch64, and the sdist, in
# dist/wheels/. zig (the ziglang wheel) links against glibc 2.17: no manylinux container.
wheels: $(RELEASE_STAMP)
	rm -rf dist/wheels
	rustup target add $(WHEEL_TARGETS)
	for t in $(WHEEL_TARGETS); do \
		PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/maturin build --quiet --release --zig \
			--compatibility manylinux2014 --target $$t --out dist/wheels || exit 1; \
	done
	$(VENV)/bin/maturin sdist --out dist/wheels
	for w in dist/wheels/*.whl; do $(VENV)/bin/auditwheel show $$w || exit 1; done

# The wheels where users install them: every CPython 3.9-3.13 found, the NumPy floor and
# the newest NumPy, aarch64 under qemu-user (scripts/check_wheels.py says what it skips).
test-wheels: wheels
	$(PY) scripts/check_wheels.py

clean:
	rm -rf $(VENV) dist target site
