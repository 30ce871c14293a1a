"""Identifiability of the continuous axes at a fit: what the recorded data can and cannot tell apart.

The Gauss-Newton curvature `J'J` of the replay residuals at the fit,
in `u` (range half-widths), and the fit's covariance: from a jackknife over episodes (each episode left
out in turn, the fit polished again) - the estimator's own spread, which a local, linearized estimate
understates badly on short, noisy episodes - widened along any direction where a sandwich estimator
clustered by episode (the residuals of one episode are far from independent) is wider: along a direction
the error barely depends on, the jackknife's local refits do not move and would read it as pinned down.
Under three episodes, the sandwich estimator alone. Along each
eigenvector of `J'J`, a direction whose standard deviation exceeds `FLAT` (or whose curvature vanishes
next to the largest) is one the data cannot pin down: if one
axis carries it, that axis is unidentified (its range is kept); if several do, they are confounded and
the combination across them that the data does fix is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.linalg import qr as scipy_qr

from simreal.simulation.calibration.model import CalAxis
from simreal.simulation.calibration.replay import Replay

FLAT = 0.5
"""A direction is unidentified when its standard deviation exceeds this, in range half-widths."""
RELATIVE = 1e-8
"""...or when its curvature is below this share of the largest (an exact symmetry: noise-free data)."""
LOADING = 0.3
"""An axis takes part in a flat direction when its share of the eigenvector is at least this."""


@dataclass
class AxisFit:
    """What the fit says of one axis."""

    axis: CalAxis
    value: float
    std: float | None = None  # in the axis's units (None: unidentified)
    identified: bool = False
    confounded_with: list[str] = field(default_factory=list)
    note: str = ""
    at_edge: bool = False  # pressed against the search's bounds: nothing measured


def identifiability(
    replay: Replay, u: np.ndarray, discrete: dict[str, float], jackknife: np.ndarray | None
) -> tuple[list[AxisFit], list[dict[str, Any]]]:
    axes = replay.continuous
    if not axes:
        return [], []
    setting = replay.setting(u, discrete)
    starts = replay.starts(setting.obs_delay)
    base = replay.residuals(setting, starts)
    owners = np.repeat([e for e, _ in starts], base[0].size)
    step = 0.02
    jac = np.empty((base.size, len(axes)))
    for i in range(len(axes)):
        up, down = u.copy(), u.copy()
        up[i] += step
        down[i] -= step
        r_up = replay.residuals(replay.setting(up, discrete), starts).ravel()
        r_down = replay.residuals(replay.setting(down, discrete), starts).ravel()
        jac[:, i] = (r_up - r_down) / (2 * step)
    cov, lam, vecs = _cluster_covariance(jac, base.ravel(), owners)
    if jackknife is not None:  # the jackknife, widened wherever the local estimate is wider
        cov = jackknife + excess(cov, jackknife, vecs)
    cov = cov + _exact_flats(lam, vecs)
    dir_std = np.sqrt(np.maximum(np.einsum("ik,ij,jk->k", vecs, cov, vecs), 0.0))
    flat = (dir_std > FLAT) | (lam < RELATIVE * lam.max())
    keep = vecs[:, ~flat]
    cov = keep @ (keep.T @ cov @ keep) @ keep.T  # the identified subspace's covariance
    marginal = np.sqrt(np.maximum(np.diag(cov), 0.0))
    fits = [AxisFit(a, a.value(float(x))) for a, x in zip(axes, u, strict=True)]
    groups = _groups(vecs[:, flat], len(axes))
    combinations = []
    in_group = {i for g, _ in groups for i in g}
    for g, ks in groups:
        if len(g) == 1:
            fits[g[0]].note = "the replay error is flat along it: the data do not tell its value"
            continue
        names = [axes[i].name for i in g]
        for i in g:
            fits[i].confounded_with = [n for n in names if n != axes[i].name]
            fits[i].note = (
                "confounded: only a combination with " + ", ".join(fits[i].confounded_with) + " is identified"
            )
        combinations.append(_combination(axes, g, vecs[:, flat][:, ks], u, cov))
    for i, axis in enumerate(axes):  # a fit pressed against the search's edge measured nothing
        low, high = axis.search_bounds()
        if min(u[i] - low, high - u[i]) < 1e-3:
            in_group.add(i)
            fits[i].at_edge = True
            fits[i].note = (
                f"at the edge of the search ({axis.value(low):.4g} .. {axis.value(high):.4g}): the data push "
                "it past any plausible value - too few or too noisy steps to tell it"
            )
    for i, f in enumerate(fits):  # a confounded axis keeps the fitted member of its class: its value
        if i in in_group:  # is the one the calibrated sim uses, not a measurement of it
            f.identified = False
            f.std = None
        else:
            f.identified = True
            f.std = _std_in_units(axes[i], float(u[i]), float(marginal[i]))
    return fits, combinations


def _cluster_covariance(
    jac: np.ndarray, residuals: np.ndarray, owners: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fit's covariance in `u`, robust to any correlation within an episode (a sandwich estimator
    clustered by episode, with the small-sample factor G / (G - 1)), and the eigenpairs of `J'J`."""
    lam, vecs = np.linalg.eigh(jac.T @ jac)
    lam = np.maximum(lam, 0.0)
    usable = lam > RELATIVE * max(lam.max(), 1e-300)
    inverse = (vecs[:, usable] / lam[usable]) @ vecs[:, usable].T
    clusters = np.unique(owners)
    meat = np.zeros((jac.shape[1], jac.shape[1]))
    for c in clusters:
        rows = owners == c
        g = jac[rows].T @ residuals[rows]
        meat += np.outer(g, g)
    factor = len(clusters) / (len(clusters) - 1) if len(clusters) > 1 else 1.0
    return factor * inverse @ meat @ inverse, lam, vecs


def excess(local: np.ndarray, jackknife: np.ndarray, vecs: np.ndarray) -> np.ndarray:
    """What the local (sandwich) covariance has beyond the jackknife's along each eigenvector of `J'J`.
    The jackknife's refits start from the full fit and are polished locally: along a direction the error
    barely depends on, they do not move, and its spread there reads near zero - a parameter the data
    cannot see would pass as pinned down. The local estimate, one over the curvature, sees it."""
    d_local = np.einsum("ik,ij,jk->k", vecs, local, vecs)
    d_jack = np.einsum("ik,ij,jk->k", vecs, jackknife, vecs)
    return (vecs * np.maximum(d_local - d_jack, 0.0)) @ vecs.T


def _exact_flats(lam: np.ndarray, vecs: np.ndarray) -> np.ndarray:
    """Directions `J'J` cannot resolve at all carry no information: a huge variance along them."""
    out = np.zeros((len(lam), len(lam)))
    for k in np.flatnonzero(lam <= RELATIVE * max(lam.max(), 1e-300)):
        out += 1e6 * np.outer(vecs[:, k], vecs[:, k])
    return out


def _std_in_units(axis: CalAxis, u: float, std_u: float) -> float:
    """A standard deviation in `u` as one in the axis's own units (delta method in log space)."""
    std_z = std_u * axis.half_z
    return abs(axis.value(u)) * std_z if axis.axis.log else std_z


def _groups(flats: np.ndarray, n: int) -> list[tuple[list[int], list[int]]]:
    """Flat directions (columns) joined where they share axes: each group's axes (those loading at least
    `LOADING` on one of its directions) and its directions."""
    groups: list[tuple[set[int], set[int]]] = []
    for k in range(flats.shape[1]):
        members = {i for i in range(n) if abs(flats[i, k]) >= LOADING} or {
            int(np.argmax(np.abs(flats[:, k])))
        }
        joined = [g for g in groups if g[0] & members]
        for g in joined:
            groups.remove(g)
        groups.append((members.union(*(g[0] for g in joined)), {k}.union(*(g[1] for g in joined))))
    return [(sorted(m), sorted(ks)) for m, ks in groups]


def _combination(
    axes: list[CalAxis], group: list[int], flat: np.ndarray, u: np.ndarray, cov: np.ndarray
) -> dict[str, Any]:
    """What the data fix across a confounded group with flat directions `flat` (columns): as many
    reference axes as directions (pivoted QR on the loadings), and for every other member `i` the
    combination `z_i - sum_j p_j z_ref_j` (z: the axis in its log or linear coordinate) that does not move
    along any of them. Where every term is a log axis this is a ratio (`actuator_gain / body_mass^1.00`)."""
    loadings = flat[group]  # (members, k)
    k = loadings.shape[1]
    if len(group) <= k:
        return {"axes": [axes[i].name for i in group], "identified": []}
    _, _, pivots = scipy_qr(loadings.T, pivoting=True)
    refs = [group[j] for j in pivots[:k]]
    rows = flat[refs]  # (k, k)
    out = []
    for i in group:
        if i in refs:
            continue
        q = np.linalg.solve(rows.T, flat[i])  # moving along the flat directions leaves u_i - q.u_refs fixed
        a = axes[i]
        powers = [float(q[j] * a.half_z / axes[r].half_z) for j, r in enumerate(refs)]
        z = a.to_z(a.value(float(u[i]))) - sum(
            p * axes[r].to_z(axes[r].value(float(u[r]))) for p, r in zip(powers, refs, strict=True)
        )
        grad = np.zeros(len(axes))
        grad[i] = a.half_z
        for p, r in zip(powers, refs, strict=True):
            grad[r] -= p * axes[r].half_z
        var = max(float(grad @ cov @ grad), 0.0)
        all_log = a.axis.log and all(axes[r].axis.log for r in refs)
        if all_log:
            below = " x ".join(f"{axes[r].name}^{p:.2f}" for p, r in zip(powers, refs, strict=True))
            expr = f"{a.name} / {below if k == 1 else '(' + below + ')'}"
        else:
            term = [f"ln {x.name}" if x.axis.log else x.name for x in (a, *(axes[r] for r in refs))]
            expr = term[0] + "".join(f" - {p:.2f} x {t}" for p, t in zip(powers, term[1:], strict=True))
        value = math.exp(z) if all_log else z
        out.append(
            {
                "combination": expr,
                "value": value,
                "std": value * math.sqrt(var) if all_log else math.sqrt(var),
            }
        )
    return {"axes": [axes[i].name for i in group], "identified": out}
