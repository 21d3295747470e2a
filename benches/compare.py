"""ferroptim's step() against its peers, measured in one run.

For Adam, AdamW, SGD-momentum and RMSprop (and, with ``--family``, Adagrad, Adadelta,
Adamax, NAdam, RAdam, Lion, Rprop and ASGD) on five parameter sets (one 100M-element tensor, one 10M
tensor, MLPs 784-512-512-10 and 64-256-256-10, and the lecture's [2, 5, 2, 1] network), all
float32, this times one optimizer step of:

- ferroptim (all cores);
- the NumPy code a person writes from the lecture's formulas (one tensor at a time,
  temporaries allocated by each expression; the lecture's four optimizers only);
- torch.optim with foreach=False (for-loop), foreach=True, and fused=True where torch has
  a fused CPU kernel -- only when torch is importable (a benchmark extra, never a
  dependency);
- a streaming pass over the same bytes (ferroptim's bandwidth reference), the time a
  memory-bound step cannot beat on large tensors -- only when ferroptim was built with the
  ``bench-refs`` cargo feature (``make bench-refs``; the wheel leaves it out).

Peers are interleaved round by round, each sample starting after a 20 ms pause (OpenMP
and rayon workers spin for a while after their last job; without the pause the previous
contender's spinning threads would take a core from the next one), and the median
per-step time is reported, with
elements/s, bytes/s, the fraction of the bandwidth reference, and ferroptim's speed-up
over each peer. Run: ``python benches/compare.py`` (``--quick`` for a smaller run,
``--markdown`` for a README table).

``--new`` adds the optimizers past torch.optim's element-wise ones: Adafactor (on the
matrix sets, with a 100M set of 25 matrices of 2000 x 2000), ScheduleFreeAdamW and
ScheduleFreeSGD (against the ``schedulefree`` package where installed), Muon (the 2-D
tensors of the MLP sets; its own peer is torch's bfloat16 iteration, and ours is timed in
bfloat16 and float32) and LBFGS (one iteration a step on a diagonal quadratic); what each
is compared with is described at ``NEW`` below.

``--half`` measures Adam with bfloat16 state instead (``state_dtype="bfloat16"``) on the
large tensors: against ferroptim's float32 state, torch's fused float32 Adam, and the
bandwidth reference moving the same 20 bytes per element (and the 28 of float32 state);
the "speed-up" column is bfloat16 state's, and the resident memory each state takes is
printed (RSS growth over the first step).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

import numpy as np

import ferroptim as fo
from ferroptim import _core

from _common import machine

# The bandwidth reference: only in an extension built with the bench-refs feature.
STREAM = getattr(_core, "stream_reference", None)
NO_STREAM = (
    "(this ferroptim was built without the bench-refs cargo feature: the bandwidth reference "
    "rows and percentages are skipped; `make bench-refs` installs a build with them)"
)

try:
    import torch
except ImportError:  # torch is optional
    torch = None

SETS = {
    "1x100M": [(100_000_000,)],
    "1x10M": [(10_000_000,)],
    "25x2000x2000": [(2000, 2000)] * 25,
    "MLP 784-512-512-10": [(512, 784), (512,), (512, 512), (512,), (10, 512), (10,)],
    "MLP 64-256-256-10": [(256, 64), (256,), (256, 256), (256,), (10, 256), (10,)],
    "net [2,5,2,1]": [(5, 2), (5, 1), (2, 5), (2, 1), (1, 2), (1, 1)],
}

# name -> (ferroptim factory, torch class and kwargs, state arrays read-and-written per element)
OPTIMIZERS = {
    "Adam": (lambda p: fo.Adam(p, lr=1e-3), ("Adam", {"lr": 1e-3}), 2),
    "AdamW": (lambda p: fo.AdamW(p, lr=1e-3), ("AdamW", {"lr": 1e-3}), 2),
    "SGD-momentum": (lambda p: fo.SGD(p, lr=1e-3, momentum=0.9), ("SGD", {"lr": 1e-3, "momentum": 0.9}), 1),
    "RMSprop": (lambda p: fo.RMSprop(p, lr=1e-3), ("RMSprop", {"lr": 1e-3}), 1),
}
FAMILY = {
    "Adagrad": (fo.Adagrad, ("Adagrad", {}), 1),
    "Adadelta": (fo.Adadelta, ("Adadelta", {}), 2),
    "Adamax": (fo.Adamax, ("Adamax", {}), 2),
    "NAdam": (fo.NAdam, ("NAdam", {}), 2),
    "RAdam": (fo.RAdam, ("RAdam", {}), 2),
    "Lion": (fo.Lion, (None, {}), 1),
    "Rprop": (fo.Rprop, ("Rprop", {}), 2),
    "ASGD": (fo.ASGD, ("ASGD", {}), 1),
}
# The optimizers past torch.optim's element-wise ones (``--new``), each with its own peers
# (make_new_runners). Their bandwidth reference is the bytes the algorithm must move per
# element, float32:
# - Adafactor (matrices: the row and column statistics are a few numbers per row): the
#   update's RMS caps the step, so every element of the update is known before the first
#   parameter changes: one pass reading p and g (p's RMS, g's row and column statistics),
#   one reading g (the update's RMS), one reading p and g and writing p; 24 B, two
#   12-byte streams.
# - ScheduleFreeAdamW: y, z and the second moment read and written, g read (28 B);
#   ScheduleFreeSGD: y and z read and written, g read (20 B).
# - Muon (the 2-D tensors only, as torch takes) and LBFGS (one iteration per step,
#   history_size=5, on a diagonal quadratic whose gradient each side computes with its own
#   library) are not element-wise: no reference.
NEW = ("Adafactor", "ScheduleFreeAdamW", "ScheduleFreeSGD", "Muon", "LBFGS")
# the element-wise ones' reference: (arrays read and written, passes) of streams that also
# read one array (the gradient)
REFERENCE = {"Adafactor": (1, 2), "ScheduleFreeAdamW": (3, 1), "ScheduleFreeSGD": (2, 1)}
LBFGS_HISTORY = 5
ALL = {**OPTIMIZERS, **FAMILY}


class LectureNumPy:
    """The update as written from the lecture's formulas, tensor by tensor, in NumPy."""

    def __init__(self, name, params):
        self.name, self.params, self.t = name, params, 0
        self.v = [np.zeros_like(p) for p in params]
        self.s = [np.zeros_like(p) for p in params]

    def step(self, grads):
        self.t += 1
        lr, b1, b2, eps, t = 1e-3, 0.9, 0.999, 1e-8, self.t
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if self.name in ("Adam", "AdamW"):
                if self.name == "AdamW":
                    p -= lr * 1e-2 * p
                self.v[i] = b1 * self.v[i] + (1 - b1) * g
                self.s[i] = b2 * self.s[i] + (1 - b2) * np.square(g)
                v_corr = self.v[i] / (1 - b1**t)
                s_corr = self.s[i] / (1 - b2**t)
                p -= lr * v_corr / (np.sqrt(s_corr) + eps)
            elif self.name == "SGD-momentum":
                self.v[i] = 0.9 * self.v[i] + (1 - 0.9) * g
                p -= lr * self.v[i]
            else:  # RMSprop
                self.s[i] = 0.99 * self.s[i] + (1 - 0.99) * np.square(g)
                p -= lr * g / (np.sqrt(self.s[i]) + eps)


def bytes_per_element(state_arrays: int) -> int:
    # parameter and state read and written, gradient read; float32
    return (2 * (1 + state_arrays) + 1) * 4


def make_runners(opt_name, shapes, with_numpy):
    """(label, step function) for every implementation of one optimizer on one set."""
    rng = np.random.default_rng(0)
    n = sum(int(np.prod(s)) for s in shapes)
    make_fo, (tname, tkw), state_arrays = ALL[opt_name]

    def arrays():
        ps = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        gs = [rng.standard_normal(s, dtype=np.float32) * 1e-2 for s in shapes]
        return ps, gs

    runners = []
    ps, gs = arrays()
    opt = make_fo(ps)
    runners.append(("ferroptim", lambda: opt.step(gs)))

    dst = [np.ones(n, np.float32) for _ in range(1 + state_arrays)]
    src = np.full(n, 1e-7, np.float32)
    if STREAM is not None:
        runners.append(("bandwidth reference", lambda: STREAM(dst, src)))

    if with_numpy and opt_name in OPTIMIZERS:
        nps, ngs = arrays()
        lecture = LectureNumPy(opt_name, nps)
        runners.append(("NumPy (lecture code)", lambda: lecture.step(ngs)))

    if torch is not None and tname is not None:
        variants = [
            ("torch for-loop", {"foreach": False}),
            ("torch foreach", {"foreach": True}),
            ("torch fused", {"fused": True}),
        ]
        for label, kw in variants:
            tps, tgs = arrays()
            tparams = [torch.from_numpy(p).requires_grad_() for p in tps]
            for tp, g in zip(tparams, tgs):
                tp.grad = torch.from_numpy(g)
            try:
                topt = getattr(torch.optim, tname)(tparams, **tkw, **kw)
                topt.step()
            except (RuntimeError, TypeError, ValueError):  # no fused CPU kernel for it
                continue
            runners.append((label, topt.step))
    return n, bytes_per_element(state_arrays), runners


def make_new_runners(opt_name, shapes):
    """(n, bytes per element of the reference or None, [(label, step function)]) for one of
    NEW on one set: ferroptim, the bandwidth reference and torch's (or the schedulefree
    package's) implementations."""
    rng = np.random.default_rng(0)
    if opt_name == "Muon":
        shapes = [s for s in shapes if len(s) == 2]
    n = sum(int(np.prod(s)) for s in shapes)

    def arrays():
        ps = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        gs = [rng.standard_normal(s, dtype=np.float32) * 1e-2 for s in shapes]
        return ps, gs

    def tensors(ps, gs):
        tps = [torch.from_numpy(p).requires_grad_() for p in ps]
        for tp, g in zip(tps, gs):
            tp.grad = torch.from_numpy(g)
        return tps

    runners = []
    ps, gs = arrays()
    if opt_name == "LBFGS":
        # a diagonal quadratic f(p) = sum(d p^2) / 2: the closures compute d * p into
        # preallocated gradients, NumPy's for ferroptim, torch's for torch
        ds = [np.abs(g) * 100 + 0.5 for g in gs]
        opt = fo.LBFGS(ps, max_iter=1, history_size=LBFGS_HISTORY)

        def closure():
            for p, d, g in zip(ps, ds, gs):
                np.multiply(d, p, out=g)
            return 0.0, gs

        runners.append(("ferroptim", lambda: opt.step(closure)))
        if torch is not None:
            tps, _ = arrays()
            tps = tensors(tps, [np.empty_like(p) for p in tps])
            tds = [torch.from_numpy(d) for d in ds]
            topt = torch.optim.LBFGS(tps, max_iter=1, history_size=LBFGS_HISTORY)

            def tclosure():
                for p, d in zip(tps, tds):
                    torch.mul(d, p.detach(), out=p.grad)
                return torch.zeros(())

            runners.append(("torch", lambda: topt.step(tclosure)))
        return n, None, runners
    kwargs = {"Muon": {"lr": 0.02}, "Adafactor": {}}.get(opt_name, {"lr": 1e-3})
    opt = getattr(fo, opt_name)(ps, **kwargs)
    if opt_name.startswith("ScheduleFree"):
        opt.train()
    runners.append(("ferroptim", lambda: opt.step(gs)))
    if opt_name == "Muon":
        opt32 = fo.Muon(arrays()[0], ns_dtype="float32", **kwargs)
        runners.append(("ferroptim ns_dtype=float32", lambda: opt32.step(gs)))
    bpe = None
    if opt_name in REFERENCE:
        arrays_rw, passes = REFERENCE[opt_name]
        bpe = passes * bytes_per_element(arrays_rw - 1)
        if STREAM is not None:
            dst = [np.ones(n, np.float32) for _ in range(arrays_rw)]
            src = np.full(n, 1e-7, np.float32)
            runners.append(("bandwidth reference", lambda: [STREAM(dst, src) for _ in range(passes)]))
    if torch is not None:
        if opt_name.startswith("ScheduleFree"):
            try:
                import schedulefree
            except ImportError:
                print("  (schedulefree is not importable: its columns skipped)")
                return n, bpe, runners
            make = getattr(schedulefree, opt_name[len("ScheduleFree") :] + "ScheduleFree")
            variants = [
                ("schedulefree for-loop", {"foreach": False}),
                ("schedulefree foreach", {"foreach": True}),
            ]
        else:
            make = getattr(torch.optim, opt_name)
            variants = (
                [("torch", {})]
                if opt_name == "Muon"
                else [("torch for-loop", {"foreach": False}), ("torch foreach", {"foreach": True})]
            )
        for label, kw in variants:
            tp, tg = arrays()
            try:
                topt = make(tensors(tp, tg), **kwargs, **kw)
                if hasattr(topt, "train"):
                    topt.train()
                topt.step()
            except (RuntimeError, TypeError, ValueError) as e:
                print(f"  {label} {opt_name}: not available ({e})")
                continue
            runners.append((label, topt.step))
    return n, bpe, runners


def time_runners(runners, target_s, rounds):
    """Median seconds per call of each runner, interleaved round by round."""
    for _, fn in runners:  # warm up: state allocation, first-touch page faults
        fn()
        fn()
    calls = {}
    for label, fn in runners:
        t0 = time.perf_counter()
        fn()
        calls[label] = max(1, int(target_s / max(time.perf_counter() - t0, 1e-7)))
    samples = {label: [] for label, _ in runners}
    for _ in range(rounds):
        for label, fn in runners:
            k = calls[label]
            time.sleep(0.02)  # let the previous contender's spinning threads park
            gc.disable()
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            samples[label].append((time.perf_counter() - t0) / k)
            gc.enable()
    return {label: statistics.median(s) for label, s in samples.items()}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def state_rss(n, state_dtype):
    """Resident bytes the Adam state of an n-element float32 tensor adds (its first step)."""
    p, g = np.ones(n, np.float32), np.ones(n, np.float32)  # touched: only the state grows
    opt = fo.Adam([p], lr=1e-3, state_dtype=state_dtype)
    gc.collect()
    before = rss_bytes()
    opt.step([g])
    grown = rss_bytes() - before
    del opt
    gc.collect()
    return grown


def make_half_runners(shapes):
    """Adam with bfloat16 and float32 state, torch fused float32, and the two references."""
    rng = np.random.default_rng(0)
    n = sum(int(np.prod(s)) for s in shapes)

    def arrays():
        return (
            [rng.standard_normal(s, dtype=np.float32) for s in shapes],
            [rng.standard_normal(s, dtype=np.float32) * 1e-2 for s in shapes],
        )

    runners = []
    for label, state_dtype in (("ferroptim bfloat16 state", "bfloat16"), ("ferroptim float32 state", None)):
        ps, gs = arrays()
        opt = fo.Adam(ps, lr=1e-3, state_dtype=state_dtype)
        runners.append((label, lambda opt=opt, gs=gs: opt.step(gs)))
    src = np.full(n, 1e-7, np.float32)
    d32 = [np.ones(n, np.float32) for _ in range(3)]
    d16 = [np.zeros(n, np.uint16) for _ in range(2)]
    if STREAM is not None:
        runners.append(("bandwidth reference 20 B", lambda: STREAM(d32[:1], src, d16)))
        runners.append(("bandwidth reference 28 B", lambda: STREAM(d32, src)))
    if torch is not None:
        tps, tgs = arrays()
        tparams = [torch.from_numpy(p).requires_grad_() for p in tps]
        for tp, g in zip(tparams, tgs):
            tp.grad = torch.from_numpy(g)
        topt = torch.optim.Adam(tparams, lr=1e-3, fused=True)
        runners.append(("torch fused float32", topt.step))
    return n, runners


def half_rows(sets, rounds):
    rows = []
    for set_name in sets:
        n, runners = make_half_runners(SETS[set_name])
        times = time_runners(runners, target_s=0.2, rounds=rounds)
        ours, ref = times["ferroptim bfloat16 state"], times.get("bandwidth reference 20 B")
        for label, t in times.items():
            bpe = 28 if ("float32" in label or "28" in label) else 20
            rows.append(
                [
                    set_name,
                    "Adam",
                    label,
                    fmt_time(t),
                    f"{n / t:.3g}",
                    f"{n * bpe / t / 1e9:.1f}",
                    f"{100 * ref / t:.0f}%" if ref else "—",
                    "—" if label == "ferroptim bfloat16 state" else f"{t / ours:.2f}x",
                ]
            )
        del runners
        gc.collect()
        print(f"  measured {set_name} / Adam, bfloat16 state", flush=True)
    return rows


def fmt_time(s):
    return f"{s * 1e6:.1f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the 100M set, fewer rounds")
    ap.add_argument("--sets", nargs="*", choices=list(SETS), help="parameter sets (default: all)")
    ap.add_argument(
        "--optimizers", nargs="*", choices=list(ALL) + list(NEW), help="default: the lecture's four"
    )
    ap.add_argument(
        "--family",
        action="store_true",
        help="also Adagrad, Adadelta, Adamax, NAdam, RAdam, Lion, Rprop, ASGD",
    )
    ap.add_argument(
        "--new",
        action="store_true",
        help="also Adafactor, ScheduleFreeAdamW, ScheduleFreeSGD, Muon, LBFGS",
    )
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds per measurement")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--half", action="store_true", help="Adam with bfloat16 state on the large tensors")
    args = ap.parse_args(argv)
    opts = args.optimizers or (
        list(OPTIMIZERS) + (list(FAMILY) if args.family else []) + (list(NEW) if args.new else [])
    )
    rounds = args.rounds or (3 if args.quick else 7)
    big_sets = ("1x100M", "25x2000x2000")
    # the matrices' 100M set only where an optimizer of NEW runs (Adafactor's subject)
    sets = args.sets or [
        s
        for s in SETS
        if not (args.quick and s in big_sets) and (s != "25x2000x2000" or any(o in NEW for o in opts))
    ]
    if torch is not None:
        torch.set_num_threads(os.cpu_count() or 1)

    print(f"Machine: {machine({'torch': torch} if torch is not None else {}, os.cpu_count() or 1)}")
    if torch is None:
        print("(torch is not importable: torch columns skipped)")
    if STREAM is None:
        print(NO_STREAM)
    header = [
        "set",
        "optimizer",
        "implementation",
        "time/step",
        "elements/s",
        "GB/s",
        "% of bandwidth ref",
        "ferroptim speed-up",
    ]
    rows = []
    if args.half:
        big = [s for s in (args.sets or ["1x100M", "1x10M"]) if s.startswith("1x")]
        sets, opts = [], []
        rows = half_rows([s for s in big if not (args.quick and s == "1x100M")], rounds)
        n = 10_000_000 if args.quick else 100_000_000
        for label, dtype in (("float32", None), ("bfloat16", "bfloat16")):
            print(
                f"Adam state of a {n:,}-element float32 tensor, {label}: {state_rss(n, dtype) / 2**20:.0f} MiB resident"
            )
    for set_name in sets:
        for opt_name in opts:
            if opt_name in NEW:
                if set_name.startswith("1x") and opt_name in ("Adafactor", "Muon"):
                    continue  # their subject is matrices: a vector has no rows and columns
                if set_name == "25x2000x2000" and opt_name == "Muon":
                    # minutes a step (Newton-Schulz is 5 x 3 products of 2000 x 2000 matrices
                    # per matrix): one matrix's step is in benches/lbfgs_muon_compare.py
                    print("  Muon on 25x2000x2000: skipped, see benches/lbfgs_muon_compare.py")
                    continue
                n, bpe, runners = make_new_runners(opt_name, SETS[set_name])
            else:
                n, bpe, runners = make_runners(opt_name, SETS[set_name], with_numpy=True)
            big = n >= 10_000_000
            times = time_runners(runners, target_s=0.2 if big else 0.03, rounds=rounds)
            ref, ours = times.get("bandwidth reference"), times["ferroptim"]
            for label, t in times.items():
                rows.append(
                    [
                        set_name,
                        opt_name,
                        label,
                        fmt_time(t),
                        f"{n / t:.3g}",
                        f"{n * bpe / t / 1e9:.1f}" if bpe else "—",
                        f"{100 * ref / t:.0f}%" if ref else "—",
                        "—" if label in ("ferroptim", "bandwidth reference") else f"{t / ours:.1f}x",
                    ]
                )
            del runners
            gc.collect()
            print(f"  measured {set_name} / {opt_name}", flush=True)
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for r in rows:
            print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
