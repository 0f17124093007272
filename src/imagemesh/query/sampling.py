"""Random samples: one sampler for the CLI, the API and Python.

A seed fixes one permutation of the matching rows (numpy ``default_rng(seed).permutation``);
a sample of ``n`` at ``offset`` is the slice ``[offset, offset + n)`` of it, so pages never
repeat an image and ``imagemesh random DIR --seed 0``, ``/api/random?seed=0`` and
``Collection.random(seed=0)`` return the same rows.
"""

from __future__ import annotations

import numpy as np

from imagemesh.query.filtering import Selection

__all__ = ["sample_rows"]


def sample_rows(selection: Selection, n_total: int, n: int, seed: int | None = None, offset: int = 0) -> tuple[np.ndarray, int]:
    """``min(n, matches - offset)`` distinct matching row ids, uniformly at random.

    Args:
        selection: the filter's rows.
        n_total: rows in the collection.
        n: sample size (``>= 0``).
        seed: fixes the permutation (``None``: fresh randomness).
        offset: position in the permutation (paging).

    Returns:
        ``(int64[m] row ids, matches)``.

    Raises:
        ValueError: ``n`` or ``offset`` negative, or ``seed`` negative.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset!r}")
    if seed is not None and seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed!r}")
    rows = selection.rows(n_total)
    perm = np.random.default_rng(seed).permutation(rows)
    return perm[offset : offset + int(n)].astype(np.int64), int(rows.size)
