"""Plain NumPy transcriptions of each optimizer's formula, one step at a time.

Written from torch.optim's single-tensor implementations and the lecture's formulas, with
the same operation order as the Rust kernels (Python floats meet float32 arrays as float32
scalars, as in torch), so results are expected to match bit for bit.

That promotion rule holds on every supported NumPy for arrays of at least one dimension;
NumPy 1.x computes a 0-d float32 array with a Python float in float64 (NEP 50 changed that
in NumPy 2), so 0-d parameters are stepped through 1-element views.
"""

from __future__ import annotations

import numpy as np


class Reference:
    """Holds state per parameter and applies the formula to copies of the parameters."""

    def __init__(self, kind: str, params: list[np.ndarray], **h):
        self.kind = kind
        self.params = [p.copy() for p in params]
        self.h = h
        self.state = [dict(step=0) for _ in params]

    def step(self, grads: list[np.ndarray], **override) -> None:
        h = {**self.h, **override}
        for i, (p, g) in enumerate(zip(self.params, grads)):
            s = self.state[i]
            s["step"] += 1
            if p.ndim == 0:
                p, g = p.reshape(1), g.reshape(1)
            getattr(self, "_" + self.kind)(p, g.copy(), s, s["step"], **h)

    @staticmethod
    def _grad(p, g, maximize=False, weight_decay=0.0):
        g = -g if maximize else g
        return g + weight_decay * p if weight_decay != 0 else g

    def _sgd(
        self,
        p,
        g,
        s,
        t,
        lr=1e-3,
        momentum=0.0,
        dampening=0.0,
        nesterov=False,
        weight_decay=0.0,
        maximize=False,
    ):
        g = self._grad(p, g, maximize, weight_decay)
        if momentum != 0:
            if "momentum_buffer" not in s:
                s["momentum_buffer"] = g.copy()
            else:
                s["momentum_buffer"] = momentum * s["momentum_buffer"] + (1 - dampening) * g
            b = s["momentum_buffer"]
            g = g + momentum * b if nesterov else b
        p[...] = p + (-lr) * g

    def _momentum(self, p, g, s, t, lr, beta=0.9):
        v = s.setdefault("velocity", np.zeros_like(p))
        s["velocity"] = beta * v + (1 - beta) * g
        p[...] = p - lr * s["velocity"]

    def _rmsprop(
        self,
        p,
        g,
        s,
        t,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0.0,
        momentum=0.0,
        centered=False,
        maximize=False,
    ):
        g = self._grad(p, g, maximize, weight_decay)
        sq = s.setdefault("square_avg", np.zeros_like(p))
        s["square_avg"] = sq = alpha * sq + ((1 - alpha) * g) * g
        if centered:
            ga = s.setdefault("grad_avg", np.zeros_like(p))
            s["grad_avg"] = ga = alpha * ga + (1 - alpha) * g
            with np.errstate(invalid="ignore"):  # rounding can make the variance negative: NaN, as in torch
                avg = np.sqrt(sq - ga * ga) + eps
        else:
            avg = np.sqrt(sq) + eps
        if momentum > 0:
            b = s.setdefault("momentum_buffer", np.zeros_like(p))
            s["momentum_buffer"] = b = momentum * b + g / avg
            p[...] = p + (-lr) * b
        else:
            p[...] = p + ((-lr) * g) / avg

    def _adam(
        self,
        p,
        g,
        s,
        t,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        amsgrad=False,
        maximize=False,
        decoupled=False,
    ):
        b1, b2 = betas
        if decoupled:
            g = self._grad(p, g, maximize, 0.0)
            p[...] = p * (1 - lr * weight_decay)
        else:
            g = self._grad(p, g, maximize, weight_decay)
        m = s.setdefault("exp_avg", np.zeros_like(p))
        v = s.setdefault("exp_avg_sq", np.zeros_like(p))
        s["exp_avg"] = m = b1 * m + (1 - b1) * g
        s["exp_avg_sq"] = v = b2 * v + ((1 - b2) * g) * g
        if amsgrad:
            vmax = s.setdefault("max_exp_avg_sq", np.zeros_like(p))
            s["max_exp_avg_sq"] = v = np.maximum(vmax, v)
        # torch's m / (sqrt(v) / c + eps) * lr / bc1, with numerator and denominator
        # multiplied by c = sqrt(1 - beta2**t) (one division instead of two)
        step_size = lr / (1 - b1**t)
        c = (1 - b2**t) ** 0.5
        p[...] = p + ((-(step_size * c)) * m) / (np.sqrt(v) + eps * c)

    def _adamw(self, p, g, s, t, **h):
        h.setdefault("weight_decay", 1e-2)
        self._adam(p, g, s, t, decoupled=True, **h)

    def _adagrad(
        self,
        p,
        g,
        s,
        t,
        lr=1e-2,
        lr_decay=0.0,
        weight_decay=0.0,
        initial_accumulator_value=0.0,
        eps=1e-10,
        maximize=False,
    ):
        g = self._grad(p, g, maximize, weight_decay)
        acc = s.setdefault("sum", np.full_like(p, initial_accumulator_value))
        s["sum"] = acc = acc + g * g
        clr = lr / (1 + (t - 1) * lr_decay)
        p[...] = p + ((-clr) * g) / (np.sqrt(acc) + eps)

    def _adadelta(self, p, g, s, t, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
        g = self._grad(p, g, maximize, weight_decay)
        sq = s.setdefault("square_avg", np.zeros_like(p))
        acc = s.setdefault("acc_delta", np.zeros_like(p))
        s["square_avg"] = sq = rho * sq + ((1 - rho) * g) * g
        delta = np.sqrt(acc + eps) / np.sqrt(sq + eps) * g
        s["acc_delta"] = rho * acc + ((1 - rho) * delta) * delta
        p[...] = p + (-lr) * delta

    def _adamax(self, p, g, s, t, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False):
        b1, b2 = betas
        g = self._grad(p, g, maximize, weight_decay)
        m = s.setdefault("exp_avg", np.zeros_like(p))
        u = s.setdefault("exp_inf", np.zeros_like(p))
        s["exp_avg"] = m = b1 * m + (1 - b1) * g
        s["exp_inf"] = u = np.maximum(u * b2, np.abs(g) + eps)
        clr = lr / (1 - b1**t)
        p[...] = p + ((-clr) * m) / u

    def _nadam(
        self,
        p,
        g,
        s,
        t,
        lr=2e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        momentum_decay=4e-3,
        decoupled_weight_decay=False,
        maximize=False,
    ):
        b1, b2 = betas
        if decoupled_weight_decay:
            g = self._grad(p, g, maximize, 0.0)
            p[...] = p * (1 - lr * weight_decay)
        else:
            g = self._grad(p, g, maximize, weight_decay)
        bc2 = 1 - b2**t
        mu = b1 * (1.0 - 0.5 * (0.96 ** (t * momentum_decay)))
        mu_next = b1 * (1.0 - 0.5 * (0.96 ** ((t + 1) * momentum_decay)))
        # torch keeps mu_product as a float32 scalar tensor
        s["mu_product"] = float(np.float32(s.get("mu_product", 1.0)) * np.float32(mu))
        mp = s["mu_product"]
        m = s.setdefault("exp_avg", np.zeros_like(p))
        v = s.setdefault("exp_avg_sq", np.zeros_like(p))
        s["exp_avg"] = m = b1 * m + (1 - b1) * g
        s["exp_avg_sq"] = v = b2 * v + ((1 - b2) * g) * g
        denom = np.sqrt(v / bc2) + eps
        p[...] = p + ((-lr * (1.0 - mu) / (1.0 - mp)) * g) / denom
        p[...] = p + ((-lr * mu_next / (1.0 - mp * mu_next)) * m) / denom

    def _radam(
        self,
        p,
        g,
        s,
        t,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        decoupled_weight_decay=False,
        maximize=False,
    ):
        b1, b2 = betas
        if decoupled_weight_decay:
            g = self._grad(p, g, maximize, 0.0)
            p[...] = p * (1 - lr * weight_decay)
        else:
            g = self._grad(p, g, maximize, weight_decay)
        m = s.setdefault("exp_avg", np.zeros_like(p))
        v = s.setdefault("exp_avg_sq", np.zeros_like(p))
        s["exp_avg"] = m = b1 * m + (1 - b1) * g
        s["exp_avg_sq"] = v = b2 * v + ((1 - b2) * g) * g
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        corrected = m / bc1
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * (b2**t) / bc2
        if rho_t > 5.0:
            rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
            adaptive = (bc2**0.5) / (np.sqrt(v) + eps)
            p[...] = p - corrected * lr * adaptive * rect
        else:
            p[...] = p - corrected * lr

    def _lion(self, p, g, s, t, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        b1, b2 = betas
        m = s.setdefault("exp_avg", np.zeros_like(p))
        c = b1 * m + (1 - b1) * g
        p[...] = p + (-lr) * (np.sign(c) + weight_decay * p)
        s["exp_avg"] = b2 * m + (1 - b2) * g

    def _rprop(self, p, g, s, t, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0), maximize=False):
        # torch's single-tensor Rprop, with np.where for its masked assignments
        etaminus, etaplus = (p.dtype.type(e) for e in etas)
        g = -g if maximize else g
        prev = s.setdefault("prev", np.zeros_like(p))
        step_size = s.setdefault("step_size", np.full_like(p, lr))
        sign = np.sign(g * prev)
        sign = np.where(sign > 0, etaplus, sign)
        sign = np.where(sign < 0, etaminus, sign)
        sign = np.where(sign == 0, p.dtype.type(1), sign)
        with np.errstate(invalid="ignore"):
            step_size = np.clip(step_size * sign, *(p.dtype.type(b) for b in step_sizes))
        g = np.where(sign == etaminus, p.dtype.type(0), g)
        s["step_size"] = step_size
        s["prev"] = g
        p[...] = p - np.sign(g) * step_size

    def _asgd(self, p, g, s, t, lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0, maximize=False):
        # torch keeps eta and mu as float32 scalar tensors and reads eta with .item()
        g = self._grad(p, g, maximize, weight_decay)
        eta = s.setdefault("eta", float(np.float32(lr)))
        mu = s.setdefault("mu", 1.0)
        p[...] = p * (1 - lambd * eta)
        p[...] = p + (-eta) * g
        ax = s.setdefault("ax", np.zeros_like(p))
        s["ax"] = ax + (p - ax) * mu if mu != 1 else p.copy()
        s["eta"] = float(np.float32(lr / ((1 + lambd * lr * t) ** alpha)))
        s["mu"] = float(np.float32(1 / max(1, t - t0)))
