"""The demo runs at a tiny size, its cost falls, and bad options exit cleanly."""

import subprocess
import sys

from ferroptim.__main__ import main


def test_tiny_demo_cost_falls(capsys):
    assert main(["demo", "--examples", "4000", "--epochs", "3", "--batch-size", "256", "--lr", "0.01"]) == 0
    costs = [float(line.split("cost ")[1].split()[0]) for line in capsys.readouterr().out.splitlines() if "cost" in line]
    assert len(costs) == 3 and costs[-1] < costs[0]


def test_bad_options_exit_non_zero_without_a_traceback():
    out = subprocess.run(
        [sys.executable, "-m", "ferroptim", "demo", "--epochs", "0"], capture_output=True, text=True
    )
    assert out.returncode != 0 and "Traceback" not in out.stderr + out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "ferroptim", "demo", "--epochs", "many"], capture_output=True, text=True
    )
    assert out.returncode != 0 and "Traceback" not in out.stderr
