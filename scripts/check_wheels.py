"""Tests the release wheels (`make wheels`) where a user installs them. Run by `make test-wheels`.

1. The manylinux x86_64 wheel in a fresh venv on every CPython 3.9-3.13 found: a smoke test
   (import, each optimizer one step, one MiniBatches epoch) and the tests of error messages
   (tests/test_errors.py, the bad-argument test of tests/test_ewa.py) and of torch parity
   (tests/test_golden.py).
2. The declared NumPy floor and the newest NumPy, on one Python: the core parity tests.
3. The aarch64 build under qemu-user: the Rust core's tests (`cargo test`), and the aarch64
   wheel's smoke test (which checks `simd_level() == "neon"`) and a pytest subset, run by
   Debian 12's aarch64 CPython 3.11 and NumPy 1.24, unpacked from deb.debian.org into
   dist/aarch64-sysroot (nothing is installed on the machine).

Dependencies come from dist/wheelhouse without the network when they are there; otherwise
they are downloaded into it once. Offline, with nothing cached, a step is skipped (with the
reason), not failed. FERROPTIM_PYTHONS (paths separated by ":") overrides the search; FERROPTIM_PYTHON_VERSIONS
("3.9 3.13") keeps only those versions, and FERROPTIM_WHEEL_ARCHS ("x86_64") leaves out the
aarch64 checks (CI runs that subset: see .ci/run).
Prints one line per step and exits 1 if any step failed.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / "dist" / "wheels"
WHEELHOUSE = ROOT / "dist" / "wheelhouse"
NUMPY_FLOOR = "1.24"
# pytest-timeout: the pytest config sets `timeout`, an unknown option (an error) without it.
TEST_DEPS = ["pytest>=7", "hypothesis>=6", "pytest-timeout>=2"]
ERROR_TESTS = [
    "tests/test_errors.py",
    "tests/test_ewa.py::test_bad_arguments_are_refused_with_a_clear_message",
    "tests/test_golden.py",
]
PARITY_TESTS = ["tests/test_parity.py", "tests/test_family.py", "tests/test_golden.py", "tests/test_ewa.py"]
NETWORK_ERRORS = re.compile(
    r"NewConnectionError|Network is unreachable|Temporary failure in name resolution|"
    r"Name or service not known|Failed to establish a new connection|ConnectTimeout|ProxyError|"
    r"No matching distribution found|Could not find a version that satisfies"
)

SMOKE = r"""
import numpy as np, ferroptim as fo
assert fo.__file__.startswith(SITE), fo.__file__
for name in ["SGD", "Momentum", "RMSprop", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax",
             "NAdam", "RAdam", "Lion"]:
    for dtype in (np.float32, np.float64):
        W = np.ones((3, 2), dtype)
        opt = getattr(fo, name)({"W": W}, lr=0.1)
        opt.step({"W": np.full((3, 2), 0.5, dtype)})
        assert np.all(W < 1), (name, W)
X = np.arange(20.0).reshape(10, 2)
Y = np.arange(10)
seen = np.concatenate([yb for _, yb in fo.MiniBatches(X, Y, batch_size=3, seed=0)])
assert sorted(seen.tolist()) == list(range(10)), seen
print(fo.__version__, fo.simd_level(), np.__version__)
"""


class Skip(Exception):
    pass


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def pythons() -> dict[str, str]:
    """`3.X` -> an interpreter, for every CPython 3.9-3.13 found."""
    if os.environ.get("FERROPTIM_PYTHONS"):
        candidates = os.environ["FERROPTIM_PYTHONS"].split(":")
    else:
        candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3")))
        candidates += [shutil.which(f"python3.{m}") or "" for m in range(9, 14)]
    found = {}
    for py in filter(None, candidates):
        out = run([py, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        v = out.stdout.strip()
        if out.returncode == 0 and v in {f"3.{m}" for m in range(9, 14)} and v not in found:
            found[v] = py
    wanted = os.environ.get("FERROPTIM_PYTHON_VERSIONS", "").split()
    if wanted:
        found = {v: py for v, py in found.items() if v in wanted}
    return dict(sorted(found.items(), key=lambda kv: int(kv[0].split(".")[1])))


def install(py: Path, requirements: list[str]) -> None:
    """Installs into the venv of `py` from the wheelhouse, downloading into it if needed."""
    offline = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index"]
    offline += ["--find-links", str(WHEELHOUSE), *requirements]
    if run(offline).returncode == 0:
        return
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    download = [str(py), "-m", "pip", "download", "-q", "--disable-pip-version-check"]
    download += ["--timeout", "15", "--retries", "1", "--only-binary", ":all:", "-d", str(WHEELHOUSE)]
    download += [r for r in requirements if not r.endswith(".whl")]
    got = run(download)
    if got.returncode != 0:
        if NETWORK_ERRORS.search(got.stderr):
            raise Skip(f"offline and not in dist/wheelhouse: {' '.join(requirements)}")
        raise RuntimeError(got.stderr[-2000:])
    done = run(offline)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])


def fresh_venv(python: str, where: Path, requirements: list[str]) -> Path:
    made = run([python, "-m", "venv", str(where)])
    if made.returncode != 0:
        raise Skip(f"{python} cannot create a venv: {made.stderr.strip()[-300:]}")
    py = where / "bin" / "python"
    install(py, requirements)
    return py


def smoke(py: Path, cwd: Path, prefix: list[str] | None = None) -> str:
    site = run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    out = run([*(prefix or []), str(py), "-c", f"SITE = {site!r}\n{SMOKE}"], cwd=cwd)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return out.stdout.strip()


def pytest(py: Path, tests: list[str]) -> str:
    out = run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(out.stdout[-3000:])
    return out.stdout.strip().splitlines()[-1]


def wheel(arch: str) -> Path:
    found = sorted(WHEELS.glob(f"ferroptim-*-cp39-abi3-*manylinux_2_17_{arch}.whl"))
    if not found:
        raise RuntimeError(f"no manylinux_2_17 {arch} wheel in {WHEELS}: run `make wheels` first")
    return found[-1]


def license_travels() -> str:
    """The sdist builds (backend, lock file) and, like every wheel, carries the LICENSE."""
    import tarfile
    import zipfile

    sdists = sorted(WHEELS.glob("ferroptim-*.tar.gz"))
    if not sdists:
        raise RuntimeError(f"no sdist in {WHEELS}")
    with tarfile.open(sdists[-1]) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    missing = {"LICENSE", "CHANGELOG.md", "Cargo.lock", "build_backend/ferroptim_build.py"} - names
    for w in WHEELS.glob("*.whl"):
        with zipfile.ZipFile(w) as z:
            if not any(n.endswith(".dist-info/licenses/LICENSE") for n in z.namelist()):
                missing.add(f"LICENSE in {w.name}")
    if missing:
        raise RuntimeError(f"missing: {sorted(missing)}")
    return f"{sdists[-1].name} and {len(list(WHEELS.glob('*.whl')))} wheels carry LICENSE"


def steps(tmp: Path):
    """(name, thunk) for every check."""
    yield "sdist and wheels contents", license_travels
    found = pythons()
    x86 = wheel("x86_64")
    for v, python in found.items():

        def one(v=v, python=python):
            py = fresh_venv(python, tmp / f"py{v}", ["numpy", *TEST_DEPS, str(x86)])
            return f"{smoke(py, tmp)}; {pytest(py, ERROR_TESTS)}"

        yield f"x86_64 wheel, CPython {v} ({python})", one
    wanted = os.environ.get("FERROPTIM_PYTHON_VERSIONS", "").split() or [f"3.{m}" for m in range(9, 14)]
    missing = [v for v in wanted if v not in found]
    if missing:
        yield (
            f"x86_64 wheel, CPython {', '.join(missing)}",
            lambda: (_ for _ in ()).throw(Skip("not installed")),
        )

    floor_python = found.get("3.11") or next(iter(found.values()))
    for label, spec in (("floor", f"numpy=={NUMPY_FLOOR}.*"), ("newest", "numpy")):

        def numpy_check(label=label, spec=spec):
            py = fresh_venv(floor_python, tmp / f"numpy-{label}", [spec, *TEST_DEPS, str(x86)])
            version = run([str(py), "-c", "import numpy; print(numpy.__version__)"]).stdout.strip()
            return f"NumPy {version}: {pytest(py, PARITY_TESTS)}"

        yield f"NumPy {label} ({spec}) on {floor_python}", numpy_check

    if "aarch64" not in os.environ.get("FERROPTIM_WHEEL_ARCHS", "x86_64 aarch64").split():
        yield "aarch64", lambda: (_ for _ in ()).throw(Skip("left out by FERROPTIM_WHEEL_ARCHS"))
        return
    yield "aarch64: cargo test under qemu-aarch64", aarch64_cargo_test
    yield "aarch64 wheel: smoke test under qemu-aarch64", lambda: aarch64_wheel(tmp)


CROSS_PACKAGES = ["qemu-user", "gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"]


def cross_tools() -> tuple[str | None, str | None]:
    """qemu-aarch64 and the aarch64 gcc, installed from Debian's packages when missing and this
    runs as root with apt-get (as on CI); (None, ...) when they cannot be had."""
    qemu, gcc = shutil.which("qemu-aarch64"), shutil.which("aarch64-linux-gnu-gcc")
    if (not qemu or not gcc) and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if run(["apt-get", "update", "-qq"], env=env).returncode == 0:
            run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *CROSS_PACKAGES], env=env)
        qemu, gcc = shutil.which("qemu-aarch64"), shutil.which("aarch64-linux-gnu-gcc")
    return qemu, gcc


def aarch64_cargo_test() -> str:
    qemu, gcc = cross_tools()
    if not qemu or not gcc:
        raise Skip(
            f"needs qemu-aarch64 and aarch64-linux-gnu-gcc, not installable here (apt: {' '.join(CROSS_PACKAGES)})"
        )
    targets = run(["rustup", "target", "list", "--installed"]).stdout.split()
    if "aarch64-unknown-linux-gnu" not in targets:
        raise Skip("the Rust target aarch64-unknown-linux-gnu is not installed (rustup target add)")
    env = dict(os.environ)
    env["CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER"] = gcc
    env["CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER"] = f"{qemu} -L /usr/aarch64-linux-gnu"
    # optimized (debug code is far too slow under emulation), without the wheel's fat LTO
    env["CARGO_PROFILE_RELEASE_LTO"] = "off"
    env["CARGO_PROFILE_RELEASE_CODEGEN_UNITS"] = "16"
    # qemu-user itself aborts in a child forked from a threaded process (an assertion in its
    # TCG), so the fork test runs natively only.
    skip = "a_child_forked_while_other_threads_take_the_locks"
    cmd = ["cargo", "test", "--quiet", "--release", "--target", "aarch64-unknown-linux-gnu"]
    cmd += ["--", "--skip", skip]
    out = run(cmd, cwd=ROOT, env=env)
    if out.returncode != 0:
        raise RuntimeError((out.stdout + out.stderr)[-3000:])
    passed = sum(int(n) for n in re.findall(r"test result: ok\. (\d+) passed", out.stdout))
    return f"{passed} Rust tests passed on aarch64 (qemu; {skip} skipped: qemu-user cannot fork threaded processes)"


SYSROOT = ROOT / "dist" / "aarch64-sysroot"
DEBIAN = "http://deb.debian.org/debian/"
# Debian 12's aarch64 CPython 3.11 and NumPy with the libraries they load
AARCH64_DEBS = [
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "python3-numpy",
    "libblas3",
    "liblapack3",
    "libgfortran5",
    "zlib1g",
    "libexpat1",
    "libffi8",
    "libssl3",
    "libbz2-1.0",
    "liblzma5",
    "libgcc-s1",
    "libstdc++6",
    "libsqlite3-0",
    "libuuid1",
    "libncursesw6",
    "libtinfo6",
    "libreadline8",
    "libdb5.3",
    "libcrypt1",
    "libnsl2",
    "libtirpc3",
]
AARCH64_TESTS = ["tests/test_golden.py", "tests/test_errors.py"]


def aarch64_sysroot() -> Path:
    """dist/aarch64-sysroot: glibc from the cross toolchain, CPython and NumPy from Debian."""
    python = SYSROOT / "usr" / "bin" / "python3.11"
    if python.exists():
        return python
    import lzma
    import urllib.request

    try:
        with urllib.request.urlopen(DEBIAN + "dists/bookworm/main/binary-arm64/Packages.xz", timeout=30) as r:
            index = lzma.decompress(r.read()).decode()
    except OSError as e:
        raise Skip(f"no aarch64 CPython: deb.debian.org unreachable ({e})") from None
    files = {}
    for stanza in index.split("\n\n"):
        fields = dict(re.findall(r"^(Package|Filename): (.+)$", stanza, re.M))
        if fields.get("Package") in AARCH64_DEBS:
            files[fields["Package"]] = fields["Filename"]
    staging = SYSROOT.with_name("aarch64-sysroot.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree("/usr/aarch64-linux-gnu/lib", staging / "lib")
    for name in AARCH64_DEBS:
        deb = staging / f"{name}.deb"
        urllib.request.urlretrieve(DEBIAN + files[name], deb)
        if run(["dpkg-deb", "-x", str(deb), str(staging)]).returncode != 0:
            raise RuntimeError(f"dpkg-deb could not unpack {deb}")
        deb.unlink()
    staging.rename(SYSROOT)
    return python


def aarch64_wheel(tmp: Path) -> str:
    qemu, _ = cross_tools()
    if not qemu or not Path("/usr/aarch64-linux-gnu/lib").is_dir():
        raise Skip("needs qemu-aarch64 and the aarch64 glibc (apt: qemu-user libc6-dev-arm64-cross)")
    python = aarch64_sysroot()
    libs = ":".join(
        str(SYSROOT / d)
        for d in (
            "usr/lib/aarch64-linux-gnu",
            "usr/lib/aarch64-linux-gnu/blas",
            "usr/lib/aarch64-linux-gnu/lapack",
            "lib/aarch64-linux-gnu",
        )
    )
    prefix = [qemu, "-L", str(SYSROOT), "-E", f"LD_LIBRARY_PATH={libs}"]
    site = tmp / "aarch64-site"
    unpack = run([sys.executable, "-m", "zipfile", "-e", str(wheel("aarch64")), str(site)])
    if unpack.returncode != 0:
        raise RuntimeError(unpack.stderr)
    # pytest, hypothesis and pytest-timeout are pure Python: the x86-64 download serves.
    deps = tmp / "aarch64-deps"
    got = run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--only-binary",
            ":all:",
            "--python-version",
            "3.11",
            "--platform",
            "manylinux2014_aarch64",
            "--find-links",
            str(WHEELHOUSE),
            "-d",
            str(WHEELHOUSE),
            *TEST_DEPS,
        ]
    )
    if got.returncode != 0 and not NETWORK_ERRORS.search(got.stderr):
        raise RuntimeError(got.stderr[-2000:])
    for w in WHEELHOUSE.glob("*-none-any.whl"):
        run([sys.executable, "-m", "zipfile", "-e", str(w), str(deps)])
    path = f"{site}:{deps}:/usr/lib/python3/dist-packages"
    env = {**os.environ, "PYTHONPATH": path, "PYTHONNOUSERSITE": "1"}
    out = run([*prefix, str(python), "-c", f"SITE = {str(site)!r}\n{SMOKE}"], cwd=tmp, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    if out.stdout.split()[1] != "neon":
        raise RuntimeError(f"expected simd_level() == 'neon': {out.stdout}")
    tests = run(
        [*prefix, str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *AARCH64_TESTS],
        cwd=ROOT,
        env=env,
    )
    if tests.returncode != 0:
        raise RuntimeError((tests.stdout + tests.stderr)[-3000:])
    return f"{out.stdout.strip()}; {tests.stdout.strip().splitlines()[-1]}"


def main() -> int:
    failed = 0
    with tempfile.TemporaryDirectory(prefix="ferroptim-wheels-") as d:
        for name, check in steps(Path(d)):
            start = time.monotonic()
            try:
                result = f"PASS {name}: {check()}"
            except Skip as e:
                result = f"SKIP {name}: {e}"
            except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
                failed += 1
                result = f"FAIL {name}:\n{e}"
            print(f"{result} [{time.monotonic() - start:.0f} s]", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
