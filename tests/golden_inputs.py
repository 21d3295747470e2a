"""The parameters and gradients of the recorded torch.optim trajectories (tests/golden/).

A closed formula rather than a random generator, so that scripts/make_golden.py and
tests/test_golden.py produce the same float64 values on every NumPy version; the float32
cases round these to float32, as torch.tensor(x.astype(np.float32)) does.
"""

import numpy as np

SHAPES = {"W": (2, 3), "b": (4,)}
# RAdam's rectified branch starts at step 6 with the default betas: record past it.
STEPS = 10


def inputs(seed: int, dtype) -> tuple[dict, dict]:
    """(initial parameters, gradients[step]) per parameter name, in ``dtype``."""
    init, grads, offset = {}, {}, 0
    for name, shape in SHAPES.items():
        n = int(np.prod(shape))
        i = np.arange(offset, offset + n, dtype=np.float64)
        t = np.arange(1, STEPS + 1, dtype=np.float64)[:, None]
        init[name] = np.cos(1.3 * i + seed).reshape(shape).astype(dtype)
        g = np.sin(0.37 * (i + 1) * t + seed) * (1.0 + 0.5 * np.cos(i + 2.0 * seed))
        grads[name] = g.reshape((STEPS, *shape)).astype(dtype)
        offset += n
    return init, grads
