"""The ``ferroptim`` command line (also ``python -m ferroptim``).

ferroptim demo trains NumPy networks with ferroptim and writes a report of the lecture's
comparisons; ferroptim bench runs the optimizer speed benchmark of a source checkout.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH_SCRIPT = Path("benches") / "compare.py"


BENCH_HELP = """usage: ferroptim bench [OPTIONS]

Runs the optimizer speed benchmark, benches/compare.py, of a source checkout of ferroptim
(run it from the checkout's root: the script ships with the repository, not with the
installed package). OPTIONS are passed on to the script; without any, --quick.
In a checkout, `ferroptim bench --help` prints the script's own options.
"""


def bench(args: list[str]) -> int:
    """Runs ``benches/compare.py`` (from the current directory, a source checkout) with
    ``args``, by default ``--quick``; returns its exit status. Outside a checkout,
    ``--help`` prints what the command does and anything else says where the script is."""
    script = Path.cwd() / BENCH_SCRIPT
    if not script.is_file() and any(a in ("-h", "--help") for a in args):
        print(BENCH_HELP, end="")
        return 0
    if not script.is_file():
        print(
            f"ferroptim bench: error: {BENCH_SCRIPT} is not in the current directory; the benchmark ships with "
            "the source repository, not the package: run `ferroptim bench` (or `python benches/compare.py`) "
            "from the root of a ferroptim checkout",
            file=sys.stderr,
        )
        return 2
    return subprocess.call([sys.executable, str(script), *(args or ["--quick"])])


def main(argv: list[str] | None = None) -> int:
    """Parses ``argv`` (default ``sys.argv[1:]``) and runs the sub-command; returns the exit
    status."""
    from . import __version__, demo

    parser = argparse.ArgumentParser(prog="ferroptim", description=__doc__.split("\n\n")[1])
    parser.add_argument("--version", action="version", version=f"ferroptim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,bench}")
    demo.add_arguments(sub.add_parser("demo", help=demo.__doc__.splitlines()[0]))
    sub.add_parser(
        "bench",
        help="run the optimizer speed benchmark benches/compare.py of a source checkout "
        "(options are passed on; default --quick)",
        add_help=False,
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return bench(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return demo.run(args)


if __name__ == "__main__":
    sys.exit(main())
