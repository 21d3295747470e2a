"""Records torch.optim trajectories as golden files for tests/test_golden.py.

For every optimizer ferroptim shares with torch.optim and every CPU configuration torch's
own optimizer tests use (``optim_db`` in torch/testing/_internal/common_optimizers.py), in
float32 and float64: the parameters torch.optim computes after each of the steps whose
gradients tests/golden_inputs.py defines. The test replays those gradients through
ferroptim and compares, without torch installed.

Run (needs torch and expecttest, which torch's test helpers import):

    python scripts/make_golden.py            # writes tests/golden/torch_optim.{json,npz}
                                             # and tests/golden/torch_closures.{json,npz}
    python scripts/make_golden.py --closures # only the second: LBFGS (closures) and Muon
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from golden_inputs import SHAPES, STEPS, inputs  # noqa: E402

try:
    import torch
    from torch.testing._internal.common_optimizers import optim_db
except ImportError as e:  # pragma: no cover - a developer tool
    sys.exit(f"make_golden.py needs torch and expecttest ({e}); pip install torch expecttest")

OUT = Path(__file__).resolve().parent.parent / "tests" / "golden"
OPTIMIZERS = [
    "SGD",
    "RMSprop",
    "Adam",
    "AdamW",
    "Adagrad",
    "Adadelta",
    "Adamax",
    "NAdam",
    "RAdam",
    "Rprop",
    "ASGD",
]


def plain(value):
    """A JSON-able copy of a torch optimizer argument (tensor lr and betas become floats)."""
    if isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    return value


def record(name: str, kwargs: dict, dtype: np.dtype, seed: int, arrays: dict) -> dict:
    init, grads = inputs(seed, dtype)
    params = {k: torch.tensor(v) for k, v in init.items()}
    for p in params.values():
        p.requires_grad_(True)
    opt = getattr(torch.optim, name)(list(params.values()), **kwargs)
    trajectory = {k: np.empty_like(g) for k, g in grads.items()}
    for t in range(STEPS):
        for k, p in params.items():
            p.grad = torch.tensor(grads[k][t])
        opt.step()
        for k, p in params.items():
            trajectory[k][t] = p.detach().numpy()
    key = f"{name}.{seed}.{np.dtype(dtype).name}"
    # one (steps, all elements) array per case: the parameters in SHAPES' order, flattened
    arrays[key] = np.concatenate([trajectory[k].reshape(STEPS, -1) for k in SHAPES], axis=1)
    return {"key": key, "seed": seed, "optimizer": name, "dtype": np.dtype(dtype).name}


def main() -> None:
    torch.manual_seed(0)
    cases, arrays = [], {}
    infos = {info.optim_cls.__name__: info for info in optim_db}
    seed = 0
    for name in OPTIMIZERS:
        for inp in infos[name].optim_inputs_func(device="cpu", dtype=torch.float32):
            kwargs = {k: plain(v) for k, v in inp.kwargs.items()}
            for dtype in (np.float32, np.float64):
                case = record(name, dict(inp.kwargs), dtype, seed, arrays)
                cases.append({**case, "kwargs": kwargs, "desc": inp.desc})
            seed += 1
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "steps": STEPS,
        "shapes": {k: list(s) for k, s in SHAPES.items()},
        "cases": cases,
    }
    head = json.dumps({k: v for k, v in meta.items() if k != "cases"})[:-1]
    rows = ",\n  ".join(json.dumps(c) for c in cases)
    (OUT / "torch_optim.json").write_text(f'{head}, "cases": [\n  {rows}\n]}}\n')
    np.savez_compressed(OUT / "torch_optim.npz", **arrays)
    print(f"{len(cases)} trajectories from torch {torch.__version__} -> {OUT}")
    record_closures()


def record_closures() -> None:
    """LBFGS on the objectives of tests/golden_closures.py (parameters and loss after each
    step) and Muon on its gradients, float32 and float64, to torch_closures.{json,npz}."""
    import golden_closures as gc

    cases, arrays = [], {}
    for problem, objective in gc.PROBLEMS.items():
        for ci, kwargs in enumerate(gc.LBFGS_CONFIGS):
            for dtype in (np.float32, np.float64):
                params = [torch.tensor(p) for p in gc.lbfgs_init(problem, dtype)]
                opt = torch.optim.LBFGS(params, **kwargs)

                def closure(params=params, objective=objective):
                    loss, grads = objective([p.detach().numpy() for p in params])
                    for p, g in zip(params, grads):
                        p.grad = torch.from_numpy(g)
                    return torch.tensor(loss, dtype=torch.float64)

                path, losses = [], []
                for _ in range(gc.LBFGS_STEPS):
                    losses.append(float(opt.step(closure)))
                    path.append(np.concatenate([p.detach().numpy().ravel() for p in params]))
                key = f"LBFGS.{problem}.{ci}.{np.dtype(dtype).name}"
                arrays[key] = np.array(path)
                arrays[key + ".loss"] = np.array(losses)
                cases.append({"key": key, "optimizer": "LBFGS", "problem": problem, "kwargs": kwargs,
                              "dtype": np.dtype(dtype).name})  # fmt: skip
    for shape in gc.MUON_SHAPES:
        for ci, kwargs in enumerate(gc.MUON_CONFIGS):
            for dtype in (np.float32, np.float64):
                init, grads = gc.muon_inputs(shape, dtype)
                p = torch.tensor(init)
                opt = torch.optim.Muon([p], **kwargs)
                path = []
                for g in grads:
                    p.grad = torch.from_numpy(g)
                    opt.step()
                    path.append(p.detach().numpy().copy())
                key = f"Muon.{shape[0]}x{shape[1]}.{ci}.{np.dtype(dtype).name}"
                arrays[key] = np.array(path)
                cases.append({"key": key, "optimizer": "Muon", "shape": list(shape), "kwargs": kwargs,
                              "dtype": np.dtype(dtype).name})  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    head = json.dumps({"torch": torch.__version__})[:-1]
    rows = ",\n  ".join(json.dumps(c) for c in cases)
    (OUT / "torch_closures.json").write_text(f'{head}, "cases": [\n  {rows}\n]}}\n')
    np.savez_compressed(OUT / "torch_closures.npz", **arrays)
    print(f"{len(cases)} LBFGS and Muon trajectories from torch {torch.__version__} -> {OUT}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--closures"]:
        record_closures()
    else:
        main()
