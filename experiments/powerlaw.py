"""The saturating power law E(C) = a·(C + d)^(−b) + c, fit with a standard error per constant.

A law fit to as many points as it has constants passes through every one of them whatever the
data, and its constants mean nothing (the default study's 3 frontier points once gave b = 0.44
on one CPU and b = 1.3 on another). So a fit always keeps at least one degree of freedom: with n
points it frees at most n − 1 constants (d is fixed at 0 first, then c), and with fewer than 3
points it is underdetermined: no fit, and callers say so and draw no curve. Each constant's
standard error comes from the fit's Jacobian (the covariance s²·(JᵀJ)⁻¹, s² the residual
variance in log E), carried to the caller's units by the delta method.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize

CONSTANTS = ("a", "b", "c", "d")
MIN_POINTS = 3  # Two constants (a, b) and one degree of freedom for their uncertainty.


def saturating_power_law(c, a, b, irreducible, d):
    """E(C) = a·(C + d)^(−b) + c."""
    return a * np.power(np.asarray(c, float) + d, -b) + irreducible


def underdetermined_message(points: int) -> str:
    return (
        f"No power-law fit: {points} point(s) are too few (a fit needs ≥ {MIN_POINTS}: two "
        "constants and a degree of freedom for their uncertainty), so no curve is drawn."
    )


def fit_power_law(compute, error) -> dict | None:
    """Fits E(C) in log space; None when underdetermined (fewer than 3 usable points).

    Returns the constants, their standard errors (`a_err`, ...; 0 for a constant held fixed,
    inf where the data cannot pin it), `free` (the constants fitted), `points` and `rmse_log`.
    Compute is rescaled to start at 1 for conditioning; several starts guard against local minima.
    """
    c_, e = np.asarray(compute, float), np.asarray(error, float)
    if len(c_) < MIN_POINTS or np.any(c_ <= 0) or np.any(e <= 0):
        return None
    scale = c_.min()
    x, log_e = c_ / scale, np.log(e)
    free = min(4, len(x) - 1)  # a, b, then c, then d: never as many constants as points.
    free_c, free_d = free >= 3, free >= 4
    best = None
    for c0 in (0.0, 0.3, 0.6, 0.9) if free_c else (0.0,):
        for d0 in (0.0, 0.3, 3.0) if free_d else (0.0,):
            fit = _fit_from(x, log_e, c0=c0 * e.min(), d0=d0, free=free)
            if fit is not None and (best is None or fit[1] < best[1]):
                best = fit
    if best is None:
        return None
    params, sse, cov = best
    out = _to_caller_units(params, cov, scale=scale)
    names = CONSTANTS[:free]
    return out | {"free": names, "points": len(x), "rmse_log": float(np.sqrt(sse / len(x)))}


def _fit_from(x, log_e, *, c0, d0, free: int):
    """One start of the fit of the first `free` of (log a, b, c, d); the rest held at 0."""
    e = np.exp(log_e)
    slope, intercept = np.polyfit(np.log(x + d0), np.log(np.maximum(e - c0, 1e-12)), 1)
    p0 = [float(intercept), float(np.clip(-slope, 1e-3, 4.0)), c0, d0][:free]
    lo = [-50.0, 0.0, 0.0, 0.0][:free]
    hi = [50.0, 5.0, float(e.min()) * 0.999, 10 * float(x.max())][:free]
    p0 = list(np.clip(p0, lo, hi))

    def model(x, *p):
        log_a, b, c, d = (*p, 0.0, 0.0, 0.0)[:4]
        return np.log(np.exp(log_a) * np.power(x + d, -b) + c)

    try:
        with warnings.catch_warnings():  # A covariance it cannot estimate comes back as inf.
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            p, cov = optimize.curve_fit(model, x, log_e, p0=p0, bounds=(lo, hi), maxfev=20_000)
    except (RuntimeError, ValueError):
        return None
    sse = float(np.sum((model(x, *p) - log_e) ** 2))
    full = np.zeros((4, 4))
    full[:free, :free] = cov
    return (*p, 0.0, 0.0, 0.0)[:4], sse, full


def _to_caller_units(params, cov, *, scale: float) -> dict:
    """(log a, b, c, d) in rescaled compute → a, b, c, d and their standard errors.

    a·(x + d)^−b with x = C/s is a·s^b·(C + d·s)^−b: so a' = exp(log a)·s^b, d' = d·s.
    """
    log_a, b, c, d = map(float, params)
    a = np.exp(log_a) * scale**b
    # Jacobian of (a', b, c, d') with respect to (log a, b, c, d).
    jac = np.diag([a, 1.0, 1.0, scale])
    jac[0, 1] = a * np.log(scale)
    with np.errstate(invalid="ignore"):
        var = np.diag(jac @ cov @ jac.T)
    err = [float(np.sqrt(v)) if np.isfinite(v) and v >= 0 else float("inf") for v in var]
    values = dict(zip(CONSTANTS, (float(a), b, c, d * scale), strict=True))
    return values | {f"{k}_err": e for k, e in zip(CONSTANTS, err, strict=True)}


def describe(fit: dict | None, *, points: int, x_key: str, what: str = "Frontier") -> str:
    """One markdown line: the constants ± standard errors, or why there is no fit."""
    if fit is None:
        return f"{what}: " + underdetermined_message(points)
    held = [k for k in CONSTANTS if k not in fit["free"]]
    parts = [f"{k} = {_pm(fit[k], fit[k + '_err'])}" for k in fit["free"]]
    fixed = f"; {', '.join(held)} held at 0 (too few points to free them)" if held else ""
    return (
        f"{what} fit E(C) = a·(C + d)^(−b) + c with C = {x_key}: {', '.join(parts)}{fixed} "
        f"({fit['points']} points, {fit['points'] - len(fit['free'])} degree(s) of freedom, "
        f"RMSE of log E = {fit['rmse_log']:.3g}; ± one standard error)."
    )


def _pm(value: float, err: float) -> str:
    return f"{value:.3g} ± {err:.2g}" if np.isfinite(err) else f"{value:.3g} ± (not identifiable)"
