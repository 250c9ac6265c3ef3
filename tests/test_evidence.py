"""The pooled tests behind the claim verdicts, against hand-computed binomial tails and Student-t bounds."""

import math

import pandas as pd
import pytest

from whywarmup.evidence import (
    CONTRADICTED,
    INCONCLUSIVE,
    SUPPORTED,
    BoundPart,
    SignPart,
    combine,
    mean_bounds,
    seed_spread,
    sign_test,
)


def test_sign_test_is_the_exact_binomial_tail():
    assert sign_test(9, 0) == (pytest.approx(1 / 512), pytest.approx(1.0))
    # P(X >= 3 | n = 5) = (10 + 5 + 1) / 32; P(X >= 2 | n = 5) = 26 / 32
    assert sign_test(3, 2) == (pytest.approx(16 / 32), pytest.approx(26 / 32))
    assert sign_test(0, 0) == (1.0, 1.0)


def test_mean_bounds_are_one_sided_95_percent_student_t():
    mean, low, high = mean_bounds([1.0, 2.0, 3.0, math.nan])
    half = 2.919985580 / math.sqrt(3)  # t_{0.95, 2} x sd 1 / sqrt(3)
    assert (mean, low, high) == (pytest.approx(2.0), pytest.approx(2 - half), pytest.approx(2 + half))
    assert math.isnan(mean_bounds([4.0])[1])


def _signs(per_seed: dict[int, list[int]]) -> pd.DataFrame:
    return pd.DataFrame([{"seed": s, "sign": v} for s, vs in per_seed.items() for v in vs])


def test_sign_part_pooled_and_per_seed():
    res = SignPart("x", _signs({0: [1, 1], 1: [1, 1, 0], 2: [1, 1]}), "units").decide()
    assert res.verdict == SUPPORTED and res.numbers["x_p_agree"] == pytest.approx(1 / 64)
    assert "6 of 6 units agree (1 ties), 3 seeds, sign test p = 0.016" == res.words
    against = SignPart("x", _signs({0: [-1, -1], 1: [-1, -1], 2: [-1, -1, -1]}), "units").decide()
    assert against.verdict == CONTRADICTED and against.per_seed == {0: CONTRADICTED, 1: CONTRADICTED, 2: CONTRADICTED}
    # 4 of 5 agree: p = 6/32, not significant, although every seed alone reads "supported"
    weak = SignPart("x", _signs({0: [1, 1], 1: [1, -1], 2: [1]}), "units").decide()
    assert weak.verdict == INCONCLUSIVE and weak.per_seed == {0: SUPPORTED, 1: INCONCLUSIVE, 2: SUPPORTED}
    # two seeds are too few however clear
    assert SignPart("x", _signs({0: [1] * 9, 1: [1] * 9}), "units").decide().verdict == INCONCLUSIVE


def test_bound_part_equivalence_and_non_inferiority():
    def part(values, low, high=None):
        units = pd.DataFrame({"seed": [i % 3 for i in range(len(values))], "value": values})
        return BoundPart("d", units, "difference", low, high).decide()

    close = [0.1, -0.1, 0.0, 0.05, -0.05, 0.0]
    assert part(close, -1.0, 1.0).verdict == SUPPORTED  # bounds inside (-1, 1)
    assert part([2.0, 2.2, 1.8, 2.1, 1.9, 2.0], -1.0, 1.0).verdict == CONTRADICTED  # wholly above 1
    assert part([0.0, 2.0, -1.5, 1.0, 0.5, -0.5], -1.0, 1.0).verdict == INCONCLUSIVE  # straddles a limit
    assert part(close, -1.0).verdict == SUPPORTED  # non-inferiority: lower bound above -1
    assert part([-3.0, -3.1, -2.9], -1.0).verdict == CONTRADICTED
    res = part([0.5, 1.5, 0.8], 1.0)
    assert res.per_seed == {0: CONTRADICTED, 1: SUPPORTED, 2: CONTRADICTED} and res.verdict == INCONCLUSIVE


def test_seed_spread_is_the_rms_of_the_per_cell_standard_deviations():
    runs = pd.DataFrame(
        {"cell": ["a", "a", "a", "b", "b", "b", "c"], "acc": [1.0, 2.0, 3.0, 0.0, 0.0, 6.0, 9.0]}
    )  # sd a = 1, sd b = sqrt(12); c has one seed
    assert seed_spread(runs, ["cell"], "acc") == pytest.approx(math.sqrt((1 + 12) / 2))


def test_combine():
    assert combine([SUPPORTED, SUPPORTED]) == SUPPORTED
    assert combine([SUPPORTED, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([INCONCLUSIVE, CONTRADICTED]) == CONTRADICTED
    assert combine([]) == INCONCLUSIVE
