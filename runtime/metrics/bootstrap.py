"""Percentile bootstrap intervals over items, one job per metric and group.

A :class:`Job` holds one group's per-item sums ``S`` and weights ``C`` (items by columns:
one column for a plain metric, one per condition or language for the metrics that compare)
and a statistic ``fn`` of the column rates ``sum(S) / sum(C)``.  Its value is ``fn`` of the
full sums; its interval comes from resampling the items.

Bootstrap
---------
95% percentile intervals over ``n_boot`` resamples of the group's items with replacement.
Every metric draws, per group, a multiplicity vector over the group's items and applies it
to all sides at once, so metrics that compare conditions (delta, pivot_delta,
rank_stability, parity_*, consistency, paired agreement) resample the same items on every
side.  The generator is ``numpy.random.default_rng`` seeded with a blake2b digest of
(``seed``, metric label, group values): reproducible across runs and machines, and adding a
group does not move another group's interval (indices come from the generator's 32-bit
stream by multiply-shift, see ``_draw``).  Resamples in which a side has no defined item
are ignored (``nanpercentile``).  Where every item of a one-sided group is a success or a
failure of equal weight (accuracy, refusal rate, consistency, ...), the number of successes
in a resample is drawn from Binomial(n, successes / n), which is exactly the distribution
of drawing n items with replacement, at O(1) cost per resample instead of O(n).  Groups are
bootstrapped on a small thread pool (numpy releases the GIL); each group has its own
generator, so results do not depend on scheduling.

- A group with one item: the value, and ci_low = ci_high = value (every resample is that
  item).
- ``n_boot = 0``: no intervals (NaN).
- A test (``permutation_test``, ``sign_test``, ``axis_effect``, ``above_chance``) reports its
  p-value with no interval (NaN): a job with ``fixed`` values.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .columns import missing

_BLOCK = 2_000_000
"""Most resampled indices held at once (per thread)."""


@dataclass
class Job:
    label: str
    key: tuple
    S: np.ndarray  # (n_items, K)
    C: np.ndarray  # (n_items, K)
    fn: Callable  # (R, K) rates -> (R, m) statistics
    emit: Callable  # (value, lo, hi arrays) -> list of rows
    fixed: np.ndarray | None = None
    """Values computed without a bootstrap (a test's p-value): emitted with no interval."""


def _derive_seed(seed: int, label: str, key: tuple) -> int:
    text = json.dumps([str(seed), label, [None if missing(v) else str(v) for v in key]])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _draw(rng: np.random.Generator, B: int, n: int) -> np.ndarray:
    """(B, n) item indices drawn uniformly with replacement.

    32-bit draws of the generator's bit stream mapped to [0, n) by multiply-shift
    (``(u * n) >> 32``): a bias below n / 2**32, at half the cost of ``rng.integers``."""
    raw = rng.bit_generator.random_raw((B * n + 1) // 2)
    u = np.multiply(raw.view(np.uint32)[: B * n], np.uint64(n), dtype=np.uint64)
    u >>= np.uint64(32)
    return u.view(np.int64).reshape(B, n)


def run_job(job: Job, seed: int, n_boot: int):
    """(value, ci_low, ci_high) arrays of one job."""
    if job.fixed is not None:
        nan = np.full(len(job.fixed), np.nan)
        return np.asarray(job.fixed, dtype=float), nan, nan.copy()
    S, C, fn = job.S, job.C, job.fn
    # np.errstate is thread-local (numpy >= 1.25); nothing below raises a Python warning
    # (all-NaN columns are kept away from the nan-functions)
    with np.errstate(invalid="ignore", divide="ignore"):
        full = np.asarray(fn((S.sum(0) / C.sum(0))[None, :])[0], dtype=float)
        n = S.shape[0]
        if n_boot <= 0 or n == 0 or np.all(np.isnan(full)):
            nan = np.full(full.shape, np.nan)
            return full, nan, nan
        rng = np.random.default_rng(_derive_seed(seed, job.label, job.key))
        K = S.shape[1]
        c0 = C[0, 0]
        if K == 1 and np.all(C[:, 0] == c0) and np.all((S[:, 0] == 0) | (S[:, 0] == c0)):
            # every item a success or a failure of equal weight (accuracy, refusal rate, ...):
            # the number of successes among n items drawn with replacement is exactly
            # Binomial(n, successes / n), so draw that instead of n indices per resample
            k = np.count_nonzero(S[:, 0])
            num = (rng.binomial(n, k / n, size=n_boot) * c0)[:, None]
            den = np.full((n_boot, 1), c0 * n)
        else:
            # resampled index blocks of at most ~2M entries, so large item sets stay in memory
            step = max(1, _BLOCK // n)
            nums, dens = [], []
            for start in range(0, n_boot, step):
                b = min(step, n_boot - start)
                idx = _draw(rng, b, n)
                if K <= 2:
                    nums.append(np.stack([np.take(S[:, k], idx).sum(1) for k in range(K)], axis=1))
                    dens.append(
                        np.stack(
                            [np.full(b, C[0, k] * n) if np.all(C[:, k] == C[0, k]) else np.take(C[:, k], idx).sum(1) for k in range(K)],
                            axis=1,
                        )
                    )
                else:
                    flat = idx + (np.arange(b, dtype=np.int64) * n)[:, None]
                    W = np.bincount(flat.ravel(), minlength=b * n).reshape(b, n).astype(float)
                    nums.append(W @ S)
                    dens.append(W @ C)
            num, den = np.concatenate(nums), np.concatenate(dens)
        vals = np.asarray(fn(num / den), dtype=float)
        lo, hi = np.full(full.shape, np.nan), np.full(full.shape, np.nan)
        const = np.zeros(full.shape, dtype=bool)
        has = ~np.all(np.isnan(vals), axis=0)
        if has.all() and not np.isnan(vals).any():
            lo, hi = np.percentile(vals, [2.5, 97.5], axis=0)
            const = vals.max(0) == vals.min(0)
        elif has.any():
            v = vals[:, has]
            lo[has], hi[has] = np.nanpercentile(v, [2.5, 97.5], axis=0)
            const[has] = np.nanmax(v, axis=0) == np.nanmin(v, axis=0)
        # a one-item group (or a constant statistic): the interval is the value itself
        lo = np.where(const & ~np.isnan(full), full, lo)
        hi = np.where(const & ~np.isnan(full), full, hi)
        return full, lo, hi


def _workers() -> int:
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 8))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, min(os.cpu_count() or 1, 8))


def run_jobs(jobs: list[Job], seed: int, n_boot: int) -> list[dict]:
    """Every job's bootstrap, as output rows (threads: numpy releases the GIL in the heavy
    parts; each group has its own generator, so the result does not depend on scheduling)."""
    workers = _workers()
    if workers > 1 and len(jobs) > 4 and n_boot > 0:
        size = max(1, len(jobs) // (workers * 8))
        chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        with ThreadPoolExecutor(workers) as pool:
            parts = pool.map(lambda chunk: [run_job(j, seed, n_boot) for j in chunk], chunks)
            results = [r for part in parts for r in part]
    else:
        results = [run_job(j, seed, n_boot) for j in jobs]
    rows: list[dict] = []
    for job, (v, lo, hi) in zip(jobs, results):
        rows.extend(job.emit(v, lo, hi))
    return rows
