"""The fast sampler on arrays of more than 2**32 elements (two counter words).

Such arrays cannot be materialized here, so the hash is evaluated at chosen
elements with ``_sampling.hash_at(key, lo, hi)``; the first test ties it to
``hash_bits`` (at a lowered counter limit, where the same two-word scheme
covers a small array).

Bounds. Under the null hypothesis (independent uniform 32-bit words):

* a sample correlation of n pairs is approximately N(0, 1/n): |r| < 5/sqrt(n)
  (two-sided tail 5.7e-7);
* among two sets of n0 and n1 distinct indices, the number M of pairs (j0, j1)
  with equal words is Poisson(n0 n1 / 2**32), about 1024 here, and the offsets
  j0 ^ j1 (and j1 - j0 mod 2**32) of those pairs are independent and uniform on
  2**32 values, so the chance that some offset occurs 3 or more times is at most
  C(M, 3) / 2**64 < 1e-10. A row that is another row with its indices permuted
  by j -> j ^ c (or j + c) instead gives about n0 n1 / 2**32 pairs with the
  same offset c.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreg._stochastic import _sampling

N = 2**21  # elements sampled per row
KEYS = [jax.random.key(0), jax.random.key(1), jax.random.key(12345, impl="rbg")]
IDS = ["key0", "key1", "rbg"]


@functools.cache
def _indices(seed: int, n: int = N, high: int = 2**32) -> np.ndarray:
    """``n`` distinct random indices in [0, high), sorted."""
    rng = np.random.default_rng(seed)
    idx = _sorted_unique(rng.integers(0, high, size=n + n // 64, dtype=np.uint64))
    return rng.permutation(idx)[:n].astype(np.uint32)


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """``np.unique(a)`` by a sort (NumPy 2's hash-based ``unique`` is ~20x slower on 2**21 words)."""
    s = np.sort(a)
    return s[np.concatenate(([True], s[1:] != s[:-1]))]


def _first_occurrences(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct words of ``h`` and the index of each one's first occurrence.

    ``np.unique(h, return_index=True)``, by one sort of the ``uint64`` keys ``(h << 32) | index``:
    equal words sort by index, so the first of each run is the first occurrence.
    """
    s = np.sort((h.astype(np.uint64) << np.uint64(32)) | np.arange(h.size, dtype=np.uint64))
    v = (s >> np.uint64(32)).astype(np.uint32)
    first = np.concatenate(([True], v[1:] != v[:-1]))
    return v[first], (s[first] & np.uint64(0xFFFFFFFF)).astype(np.intp)


def _intersect_indices(h0: np.ndarray, h1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.intersect1d(h0, h1, return_indices=True)[1:]`` (the same arrays, in the same order), faster.

    For each word in both (ascending), the index of its first occurrence in ``h0`` and in ``h1``.
    """
    u0, f0 = _first_occurrences(h0)
    u1, f1 = _first_occurrences(h1)
    # The words in both (a sort of the two distinct-word arrays), then each one's place in each:
    # cheaper than looking up every word of one array in the other.
    common = np.intersect1d(u0, u1, assume_unique=True)
    return f0[np.searchsorted(u0, common)], f1[np.searchsorted(u1, common)]


def _words(key, lo, hi) -> np.ndarray:
    lo = jnp.asarray(lo, jnp.uint32)
    hi = jnp.broadcast_to(jnp.asarray(hi, jnp.uint32), lo.shape)
    return np.asarray(_sampling.hash_at(key, lo, hi))


def _corr(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, np.float64), np.asarray(b, np.float64))[0, 1])


def _max_offset_multiplicity(j0, h0, j1, h1) -> tuple[int, int, int]:
    """(matched pairs, count of the most frequent xor offset, of the most frequent difference).

    Pairs (j0, j1) with equal words; a word repeated within one row (about 512
    times among 2**21 words) counts once, which only lowers the counts.
    """
    i0, i1 = _intersect_indices(h0, h1)
    if i0.size == 0:
        return 0, 0, 0
    a, b = j0[i0].astype(np.uint64), j1[i1].astype(np.uint64)
    xor_counts = np.unique(a ^ b, return_counts=True)[1]
    diff_counts = np.unique((b - a) & np.uint64(0xFFFFFFFF), return_counts=True)[1]
    return a.size, int(xor_counts.max()), int(diff_counts.max())


def test_fast_set_helpers_are_numpys():
    # The helpers above replace np.unique and np.intersect1d (same results, faster on 2**21 words);
    # checked here on words with many repeats within and across the two arrays.
    rng = np.random.default_rng(0)
    h0, h1 = (rng.integers(0, 3000, size=5000, dtype=np.uint64).astype(np.uint32) for _ in range(2))
    np.testing.assert_array_equal(_sorted_unique(h0), np.unique(h0))
    want = np.intersect1d(h0, h1, assume_unique=False, return_indices=True)
    assert want[0].size > 1000
    got = _intersect_indices(h0, h1)
    for g, w in zip(got, want[1:], strict=True):
        np.testing.assert_array_equal(g, w)
    assert _intersect_indices(h0, h1 + np.uint32(3000))[0].size == 0


def test_hash_at_is_hash_bits_with_two_counter_words(monkeypatch):
    # With a counter limit of 2**8 a (64, 32) array splits into lo = the index
    # over axis 1 and hi = the index over axis 0 (the documented split), the
    # same code path as a (2, 2**32) array at the real limit.
    key = KEYS[0]
    monkeypatch.setattr(_sampling, "_COUNTER_LIMIT", 2**8)
    w = np.asarray(_sampling.hash_bits(key, (64, 32)))
    lo = np.broadcast_to(np.arange(32, dtype=np.uint32), (64, 32))
    hi = np.broadcast_to(np.arange(64, dtype=np.uint32)[:, None], (64, 32))
    np.testing.assert_array_equal(w, _words(key, lo, hi))
    # Below the limit the one-word path is hash_at without a high word.
    small = np.asarray(_sampling.hash_bits(key, (8, 32)))
    np.testing.assert_array_equal(small.ravel(), np.asarray(_sampling.hash_at(key, np.arange(256))))


@pytest.mark.parametrize("key", KEYS, ids=IDS)
@pytest.mark.parametrize(("row_a", "row_b"), [(0, 1), (1, 2), (0, 2**31), (5, 5 ^ 0x45669832)])
def test_rows_are_not_permutations_of_each_other(key, row_a, row_b):
    # Rows of a (R, 2**32) mask: element (r, j) has lo = j and hi = r.
    j0, j1 = _indices(1), _indices(2)
    h0, h1 = _words(key, j0, row_a), _words(key, j1, row_b)
    pairs, xor_max, diff_max = _max_offset_multiplicity(j0, h0, j1, h1)
    assert pairs < 1024 + 5 * 32  # Poisson(1024): mean + 5 sd
    assert xor_max <= 2, (pairs, xor_max)
    assert diff_max <= 2, (pairs, diff_max)


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_no_correlation_between_rows_at_the_same_index(key):
    # Rows 0 and 1 of a (2, 2**32) mask, and rows r and r + 2 of a (4, 2**31)
    # mask (the two halves of its flat index, i and i + 2**32).
    j = _indices(3)
    u = {r: _words(key, j, r) / 2.0**32 for r in (0, 1, 2, 3)}
    bound = 5 / math.sqrt(N)
    for a, b in [(0, 1), (0, 2), (1, 3), (2, 3)]:
        assert abs(_corr(u[a], u[b])) < bound, (a, b)
        keep_a, keep_b = u[a] < 0.5, u[b] < 0.5  # masks at rate 0.5 (top bit)
        assert abs(_corr(keep_a, keep_b)) < bound, (a, b)


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_no_correlation_between_halves_of_a_long_leading_axis(key):
    # A (2**31, 4) mask: hi = the index over axis 0, lo over axis 1. The halves
    # of axis 0 are rows i and i + 2**30; compare them at every lo.
    i = _indices(4, N // 4, 2**30)
    rows = np.repeat(i, 4)
    lo = np.tile(np.arange(4, dtype=np.uint32), i.size)
    first = _words(key, lo, rows) / 2.0**32
    second = _words(key, lo, rows + np.uint32(2**30)) / 2.0**32
    bound = 5 / math.sqrt(first.size)
    assert abs(_corr(first, second)) < bound
    # And neighbouring rows of the same half, and neighbouring columns.
    assert abs(_corr(first, _words(key, lo, rows + np.uint32(1)) / 2.0**32)) < bound
    assert abs(_corr(first, _words(key, lo ^ np.uint32(1), rows) / 2.0**32)) < bound
