"""Bjontegaard delta metrics (VCEG-M33): the average gap between two rate-distortion curves.

Each curve is fitted by a polynomial (cubic with 4+ points, lower order with fewer) in the log10
of the rate, and the gap is averaged over the interval both curves cover. Small enough to write
here: the usual packages for it pull in video-codec tooling.

``interpolation="pchip"`` uses piecewise cubic Hermite interpolation (scipy's PCHIP) instead of one
polynomial, as later revisions of the method do: a polynomial through a curve that saturates (three
points, two of them close in PSNR) overshoots between them, and the BD-rate and BD-PSNR of the same
two curves can then disagree in sign; PCHIP stays monotone between the points.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np


def _fit_and_integrate(x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray,
                       interpolation: str = "cubic") -> Tuple[float, float]:
    """Mean of y over the common x interval, for each curve (y as a polynomial of x)."""
    lo, hi = max(x1.min(), x2.min()), min(x1.max(), x2.max())
    if not hi > lo:
        raise ValueError("the two rate-distortion curves do not overlap")
    means = []
    for x, y in ((x1, y1), (x2, y2)):
        # repeated x (e.g. two codebook sizes that both exceed the voxels to quantise give the same
        # file) would make the fit singular: one point per x, its y averaged
        x, inverse = np.unique(x, return_inverse=True)
        y = np.bincount(inverse, weights=y) / np.bincount(inverse)
        if len(x) < 2:
            raise ValueError("a rate-distortion curve needs two distinct points")
        if interpolation == "pchip":
            from scipy.interpolate import PchipInterpolator

            means.append(float(PchipInterpolator(x, y).integrate(lo, hi)) / (hi - lo))
            continue
        if interpolation != "cubic":
            raise ValueError(f"unknown interpolation {interpolation!r}: cubic or pchip")
        order = int(min(3, len(x) - 1))
        poly = np.polyint(np.polyfit(x, y, order))
        means.append((np.polyval(poly, hi) - np.polyval(poly, lo)) / (hi - lo))
    return means[0], means[1]


def bd_psnr(rate_anchor: Sequence[float], psnr_anchor: Sequence[float], rate_test: Sequence[float],
            psnr_test: Sequence[float], interpolation: str = "cubic") -> float:
    """Average PSNR gain (dB) of the test curve over the anchor at equal rate; positive = test better."""
    r1, p1 = np.log10(np.asarray(rate_anchor, float)), np.asarray(psnr_anchor, float)
    r2, p2 = np.log10(np.asarray(rate_test, float)), np.asarray(psnr_test, float)
    a, b = _fit_and_integrate(r1, p1, r2, p2, interpolation)
    return float(b - a)


def bd_rate(rate_anchor: Sequence[float], psnr_anchor: Sequence[float], rate_test: Sequence[float],
            psnr_test: Sequence[float], interpolation: str = "cubic") -> float:
    """Average rate change (%) of the test curve against the anchor at equal PSNR; negative = test smaller."""
    r1, p1 = np.log10(np.asarray(rate_anchor, float)), np.asarray(psnr_anchor, float)
    r2, p2 = np.log10(np.asarray(rate_test, float)), np.asarray(psnr_test, float)
    a, b = _fit_and_integrate(p1, r1, p2, r2, interpolation)
    return float((10 ** (b - a) - 1) * 100)
