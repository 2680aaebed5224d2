"""An honest reading of an experiment: a two-proportion z-test of each variant against the
control (or the first variant), with the 95% interval of the difference in conversion rate.

Below a minimum number of visitors per variant no verdict is given at all: early numbers swing
wildly and a marketer acting on them would be acting on noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959964


@dataclass(frozen=True, slots=True)
class Verdict:
    difference: float | None  # variant rate minus baseline rate
    low: float | None
    high: float | None
    p_value: float | None
    text: str


def rate_interval(converted: int, visitors: int) -> tuple[float, float]:
    """95% Wilson interval of one conversion rate (sane at 0% and 100%)."""
    if visitors == 0:
        return 0.0, 0.0
    p = converted / visitors
    denominator = 1 + Z95**2 / visitors
    centre = (p + Z95**2 / (2 * visitors)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / visitors + Z95**2 / (4 * visitors**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def compare(
    base_converted: int, base_visitors: int, converted: int, visitors: int, min_visitors: int
) -> Verdict:
    if min(base_visitors, visitors) < min_visitors:
        return Verdict(
            None,
            None,
            None,
            None,
            f"Not enough data: each variant needs {min_visitors} visitors "
            f"(this one has {visitors}, the baseline {base_visitors}).",
        )
    p1, p2 = base_converted / base_visitors, converted / visitors
    difference = p2 - p1
    spread = math.sqrt(p1 * (1 - p1) / base_visitors + p2 * (1 - p2) / visitors)
    low, high = difference - Z95 * spread, difference + Z95 * spread
    pooled = (base_converted + converted) / (base_visitors + visitors)
    se = math.sqrt(pooled * (1 - pooled) * (1 / base_visitors + 1 / visitors))
    p_value = math.erfc(abs(difference / se) / math.sqrt(2)) if se > 0 else 1.0
    span = f"{difference:+.2%} (95% interval {low:+.2%} to {high:+.2%}, p = {p_value:.3f})"
    if p_value < 0.05:
        better = "better" if difference > 0 else "worse"
        text = f"Converts {better} than the baseline: {span}."
    else:
        text = f"No significant difference yet: {span}; the interval includes 0."
    return Verdict(difference, low, high, p_value, text)
