"""confidence.scores (every signal row scored in one pass) gives, bit for bit, what `beyond`,
`toward` and `within` give one row at a time, as the assessment used them."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from reallocator.core.pacing import confidence as conf

_EDGES = [0.0, -0.0, np.nan, 50.0, -50.0, 1e-300, -1e-300, 5e-324, 0.0953, -0.105]


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 60),
    tol_over=st.sampled_from([np.log(1.1), np.log(1.5), 1e-3]),
    tol_under=st.sampled_from([-np.log(0.9), -np.log(0.5), 2.0]),
)
def test_scores_are_beyond_toward_and_within_row_by_row(
    seed: int, n: int, tol_over: float, tol_under: float
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, rng.choice([0.05, 0.3, 5.0]), (3, n)).clip(-50.0, 50.0)
    edges = rng.random((3, n)) < 0.3
    x[edges] = rng.choice(_EDGES, int(edges.sum()))
    over = rng.random(n) < 0.3
    judged = over | (rng.random(n) < 0.3)
    direction = np.where(over, 1.0, -1.0)

    got = conf.scores(x, judged, over, np.array([[1.0], [1.0], [0.0]]), tol_over, tol_under)

    want = np.array(
        [
            np.where(
                judged,
                conf.beyond(x[0], direction, tol_over, tol_under),
                conf.within(x[0], tol_over, tol_under),
            ),
            np.where(
                judged,
                conf.beyond(x[1], direction, tol_over, tol_under),
                conf.within(x[1], tol_over, tol_under),
            ),
            np.where(
                judged,
                conf.toward(x[2], direction, tol_over, tol_under),
                conf.within(x[2], tol_over, tol_under),
            ),
        ]
    )
    assert got.tobytes() == want.tobytes()
