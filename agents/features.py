"""History features: what each candidate's own past accesses say about its next use.

The env's features (:data:`kvgym.envs.observation.FEATURES`) describe a page's recency,
frequency, age and eviction history, but not the *rhythm* of its reuse, which is what predicts
its next use on looping and phased workloads (a page read every 9 steps and last read 2 steps
ago comes back in 7; LRU and the env's features cannot tell it from a page read once). Parrot
reads a history of past accesses for the same reason. Per candidate, from the episode's
accesses **before** the decision (never after; ``tests/test_agents.py`` checks that changing
the future leaves them unchanged), in decode steps:

====  ==========  ===================================================================
 #    name        definition
====  ==========  ===================================================================
 0    interval    squash(steps between its last two accesses, 16); 1.0 if read once
 1    interval2   squash(steps between the two accesses before those, 16); 1.0 if none
 2    due         0.5 + 0.5 * tanh((interval - steps since last access) / 16): above 0.5
                  when the last interval has not yet elapsed (reuse still ahead);
                  1.0 if read once
====  ==========  ===================================================================

``squash(x, τ) = x / (x + τ)`` as in the env. The features are appended to the env's
candidate rows (``candidates`` becomes ``(K, F + 3)``) by :func:`augment`; agents compute them
in ``act`` from the env they are attached to, so they work through the harness's
``evaluate`` like any agent.
"""

from __future__ import annotations

import numpy as np

HISTORY_FEATURES = ("interval", "interval2", "due")
TAU = 16.0


def episode_arrays(env) -> tuple[np.ndarray, np.ndarray]:
    """``(step, page)`` of the current episode (its window)."""
    return env.unwrapped.episode_accesses()


class PastView:
    """Previous accesses of pages before a position, O(log n) per page, vectorized."""

    def __init__(self, step: np.ndarray, page: np.ndarray):
        page = np.ascontiguousarray(page, np.int64)
        self.n = n = len(page)
        order = np.argsort(page, kind="stable").astype(np.int64)
        self.keys = page[order] * (n + 1) + order  # sorted by (page, position)
        self.step = np.ascontiguousarray(step, np.int64)

    def last_steps(self, pages: np.ndarray, pos: int, depth: int = 3) -> np.ndarray:
        """``[len(pages), depth]``: steps of each page's last ``depth`` accesses before ``pos``
        (most recent first; -1 where there are fewer)."""
        pages = np.asarray(pages, np.int64)
        n = self.n
        i = np.searchsorted(self.keys, pages * (n + 1) + pos)  # first access at or after pos
        out = np.full((len(pages), depth), -1, np.int64)
        for d in range(depth):
            j = i - 1 - d
            ok = j >= 0
            k = self.keys[np.maximum(j, 0)]
            ok &= (k // (n + 1)) == pages
            out[:, d] = np.where(ok, self.step[k % (n + 1)], -1)
        return out


def history_rows(view: PastView, pages: np.ndarray, pos: int, now: int) -> np.ndarray:
    """The :data:`HISTORY_FEATURES` of ``pages`` at position ``pos`` (decode step ``now``)."""
    ls = view.last_steps(pages, pos, 3).astype(np.float64)
    has1, has2 = ls[:, 1] >= 0, ls[:, 2] >= 0
    iv1 = ls[:, 0] - ls[:, 1]
    iv2 = ls[:, 1] - ls[:, 2]
    rec = now - ls[:, 0]
    out = np.ones((len(pages), len(HISTORY_FEATURES)), np.float32)
    out[has1, 0] = iv1[has1] / (iv1[has1] + TAU)
    out[has2, 1] = iv2[has2] / (iv2[has2] + TAU)
    out[has1, 2] = 0.5 + 0.5 * np.tanh((iv1[has1] - rec[has1]) / TAU)
    return out


class HistoryTracker:
    """Per-env helper: rebuilds its :class:`PastView` when a new episode starts."""

    def __init__(self):
        self._sim = None
        self.view = None

    def augment(self, env, obs: dict) -> dict:
        """``obs`` with the history features appended to the candidate rows (a new dict)."""
        u = env.unwrapped
        sim = u._sim
        if sim is not self._sim:
            self._sim = sim
            self.view = PastView(*episode_arrays(env))
        cand = np.asarray(obs["candidates"], np.float32)
        extra = np.zeros((cand.shape[0], len(HISTORY_FEATURES)), np.float32)
        pages = u.candidate_pages()
        valid = pages >= 0
        if valid.any() and u.phase == "evict":
            extra[valid] = history_rows(self.view, pages[valid], sim.pos, sim.step)
        out = dict(obs)
        out["candidates"] = np.concatenate([cand, extra], 1)
        return out
