"""Keeping a network: :func:`save` / :func:`load` (``MLP.save`` and ``ferroptim.nn.load``) in a
safe file format, written atomically.

The file is a NumPy ``.npz`` archive (a zip of ``.npy`` arrays, read with
``allow_pickle=False``: loading it runs no code): one entry per array — the parameters
``params/W1, params/b1, ...``, any other array of the model's ``state_dict`` and, when an
optimizer is saved with the model, its state's arrays — and the entry ``__ferroptim__``,
a JSON header (UTF-8 bytes) naming the format and its version, the architecture (layer
sizes, activations, dtype, L2 ``alpha``, initialisation), ``epoch``, ``position``,
``seed`` and the rest of the state.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from .._files import write_atomically

if TYPE_CHECKING:
    from .model import MLP

FORMAT = "ferroptim.nn.MLP"
VERSION = 1  # the newest format version this ferroptim writes and reads
_HEADER = "__ferroptim__"


def _encode(obj: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    """``obj`` as JSON, its arrays moved to ``arrays`` under ``key``-derived names."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise TypeError(f"{key}: an array of dtype {obj.dtype} cannot be saved in the safe format")
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"{key}: a key of type {type(k).__name__} cannot be saved")
            items.append([k, _encode(v, f"{key}/{k}", arrays)])
        return {"__dict__": items}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{key}/{i}", arrays) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{key}/{i}", arrays) for i, v in enumerate(obj)]
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"{key}: a {type(obj).__name__} cannot be saved in the safe format")


def _decode(obj: Any, arrays: Any) -> Any:
    if isinstance(obj, dict):
        if "__array__" in obj:
            return arrays[obj["__array__"]]
        if "__tuple__" in obj:
            return tuple(_decode(v, arrays) for v in obj["__tuple__"])
        return {k: _decode(v, arrays) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    return obj


def _optimizer_state(optimizer: Any) -> dict:
    """What of an optimizer's ``state_dict`` is kept with the model: the per-parameter
    ``state`` (step counts, moment buffers) and ``skipped_steps``; the hyper-parameters and
    schedules are the code's (rebuild the optimizer with them)."""
    from ..optim import Optimizer

    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a ferroptim optimizer, got {type(optimizer).__name__}")
    sd = optimizer.state_dict()
    return {"state": sd["state"], "skipped_steps": sd.get("skipped_steps", 0)}


def save(model: MLP, path: Any, optimizer: Optional[Any] = None) -> None:
    """See :meth:`ferroptim.nn.MLP.save`."""
    model._param_list()  # the parameters fit the architecture
    arch = dict(model.__getstate__()["architecture"])
    arch["dtype"] = np.dtype(arch["dtype"]).name
    arrays: dict[str, np.ndarray] = {}
    sd = model.state_dict()
    header = {
        "format": FORMAT,
        "version": VERSION,
        "architecture": _encode(arch, "architecture", arrays),
        "init": model.init,
        "state_dict": _encode(sd, "state_dict", arrays),
        "optimizer": None if optimizer is None else _encode(_optimizer_state(optimizer), "optimizer", arrays),
    }
    arrays[_HEADER] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    write_atomically(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def _read(path: Any) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and every array of a model file, all read (so a truncated file fails here)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f, np.load(f, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError) as e:
        raise ValueError(
            f"{name!r} is not a readable ferroptim model file (truncated, damaged or another "
            f"format): {type(e).__name__}: {e}"
        ) from None
    raw = arrays.pop(_HEADER, None)
    if raw is None:
        raise ValueError(f"{name!r} is not a ferroptim model file: it has no {_HEADER!r} header")
    try:
        header = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{name!r}: its ferroptim header is damaged ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        fmt = header.get("format") if isinstance(header, dict) else None
        raise ValueError(f"{name!r} holds {fmt!r}, not a {FORMAT} file")
    version = header.get("version")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"{name!r}: its format version {version!r} is not valid")
    if version > VERSION:
        raise ValueError(
            f"{name!r} was written by a newer ferroptim (file format version {version}; this "
            f"one reads versions up to {VERSION}): upgrade ferroptim to load it"
        )
    return header, arrays


def load(path: Any) -> MLP:
    """See :func:`ferroptim.nn.load`."""
    from .model import MLP

    header, arrays = _read(path)
    try:
        arch = _decode(header["architecture"], arrays)
        sd = _decode(header["state_dict"], arrays)
        params = {k: np.require(v, requirements=["C", "A", "W"]) for k, v in sd["params"].items()}
        model = MLP.__new__(MLP)
        model.__setstate__(
            {
                "architecture": arch,
                "state_dict": {
                    "params": params,
                    "epoch": sd["epoch"],
                    "position": sd["position"],
                    "seed": sd["seed"],
                },
                "extra": {"init": header.get("init", "he")},
            }
        )
        model.load_state_dict({**sd, "params": params})
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{os.fspath(path)!r}: its content does not describe a valid model: {e}") from None
    return model


def load_optimizer_state(path: Any, optimizer: Any) -> None:
    """See :func:`ferroptim.nn.load_optimizer_state`."""
    header, arrays = _read(path)
    if header.get("optimizer") is None:
        raise ValueError(
            f"{os.fspath(path)!r} holds no optimizer state (save it with model.save(path, optimizer=opt))"
        )
    saved = _decode(header["optimizer"], arrays)
    sd = optimizer.state_dict()
    sd["state"] = saved["state"]
    if "skipped_steps" in sd:
        sd["skipped_steps"] = saved["skipped_steps"]
    optimizer.load_state_dict(sd)
