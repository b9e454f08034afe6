"""Monotonic rational-quadratic splines with linear tails (Durkan et al., "Neural Spline Flows").

The map is the identity outside ``[-bound, bound]`` and a monotonic piecewise rational-quadratic
function inside, with ``n`` bins whose widths, heights and inner knot derivatives come from
unconstrained network outputs; the derivative at both ends is 1 so the tails join smoothly.

Unlike the reference implementation this one is purely elementwise: it computes every element
(the out-of-range ones on clamped inputs) and selects with ``torch.where``. There is no boolean
indexing, no domain check over the whole tensor and no assert, so garbage in padded frames can
neither raise nor change the valid frames, and nothing forces a host sync.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3
# Added to the last bin edge so that an input exactly on the upper bound falls in the last bin.
_SEARCH_EPS = 1e-6


def rational_quadratic_spline(
    inputs: Tensor,
    raw_widths: Tensor,
    raw_heights: Tensor,
    raw_derivatives: Tensor,
    *,
    inverse: bool,
    bound: float = 5.0,
) -> Tensor:
    """Apply the spline (or its inverse) elementwise.

    Args:
        inputs: Any shape ``S``.
        raw_widths: ``S + [n]`` unnormalised bin widths.
        raw_heights: ``S + [n]`` unnormalised bin heights.
        raw_derivatives: ``S + [n - 1]`` unconstrained derivatives at the inner knots.
        inverse: Compute the inverse map.
        bound: Half-width of the spline's square domain; the identity applies outside.

    Returns:
        The transformed values, shape ``S``.
    """
    inside = (inputs >= -bound) & (inputs <= bound)
    x = inputs.clamp(-bound, bound)
    knots = _Knots.build(raw_widths, raw_heights, raw_derivatives, bound)
    out = knots.inverse(x) if inverse else knots.forward(x)
    return torch.where(inside, out, inputs)


def _bin_edges(raw: Tensor, min_size: float, bound: float) -> tuple[Tensor, Tensor]:
    """Bin sizes and their ``n + 1`` edges over ``[-bound, bound]``, each bin >= min_size."""
    n = raw.shape[-1]
    sizes = min_size + (1 - min_size * n) * raw.softmax(dim=-1)
    edges = F.pad(sizes.cumsum(dim=-1), (1, 0), value=0.0) * (2 * bound) - bound
    # Pin the ends exactly: the cumulative sum only reaches ``bound`` up to rounding.
    edges[..., 0] = -bound
    edges[..., -1] = bound
    return edges[..., 1:] - edges[..., :-1], edges


class _Bin(NamedTuple):
    """The spline bin an element falls in: its left edges, sizes and end derivatives."""

    x0: Tensor
    width: Tensor
    y0: Tensor
    height: Tensor
    d0: Tensor
    d1: Tensor


class _Knots:
    """All bins of a spline, per element."""

    def __init__(self, widths, cum_widths, heights, cum_heights, derivatives):
        self.widths = widths
        self.cum_widths = cum_widths
        self.heights = heights
        self.cum_heights = cum_heights
        self.derivatives = derivatives

    @classmethod
    def build(cls, raw_widths, raw_heights, raw_derivatives, bound: float) -> _Knots:
        widths, cum_widths = _bin_edges(raw_widths, MIN_BIN_WIDTH, bound)
        heights, cum_heights = _bin_edges(raw_heights, MIN_BIN_HEIGHT, bound)
        # Linear tails: the boundary derivatives are fixed so that they come out as exactly 1.
        edge = math.log(math.expm1(1 - MIN_DERIVATIVE))
        derivatives = MIN_DERIVATIVE + F.softplus(F.pad(raw_derivatives, (1, 1), value=edge))
        return cls(widths, cum_widths, heights, cum_heights, derivatives)

    def _select(self, edges: Tensor, x: Tensor) -> _Bin:
        search = edges.clone()
        search[..., -1] += _SEARCH_EPS
        index = torch.searchsorted(search, x.unsqueeze(-1), right=True) - 1
        index = index.clamp(0, self.widths.shape[-1] - 1)

        def take(t: Tensor) -> Tensor:
            return t.gather(-1, index).squeeze(-1)

        return _Bin(
            x0=take(self.cum_widths),
            width=take(self.widths),
            y0=take(self.cum_heights),
            height=take(self.heights),
            d0=take(self.derivatives),
            d1=take(self.derivatives[..., 1:]),
        )

    def forward(self, x: Tensor) -> Tensor:
        b = self._select(self.cum_widths, x)
        slope = b.height / b.width
        theta = (x - b.x0) / b.width
        theta_1m = theta * (1 - theta)
        numerator = b.height * (slope * theta.pow(2) + b.d0 * theta_1m)
        denominator = slope + (b.d0 + b.d1 - 2 * slope) * theta_1m
        return b.y0 + numerator / denominator

    def inverse(self, y: Tensor) -> Tensor:
        b = self._select(self.cum_heights, y)
        slope = b.height / b.width
        dy = y - b.y0
        curvature = b.d0 + b.d1 - 2 * slope
        qa = dy * curvature + b.height * (slope - b.d0)
        qb = b.height * b.d0 - dy * curvature
        qc = -slope * dy
        # The discriminant is >= 0 for in-range inputs; clamping only protects padded garbage.
        discriminant = (qb.pow(2) - 4 * qa * qc).clamp_min(0)
        root = (2 * qc) / (-qb - torch.sqrt(discriminant))
        return root * b.width + b.x0
