"""The one place serving mode computes a transfer time (swap this function to change the link model).

A batch of ``n`` block copies issued back to back over a link (:class:`kvgym.sim.tiers.Link`,
the measured curve of the profile where it has one, else α-β) takes
``link.time_us(block_bytes, busy) + (n - 1) * link.time_us(block_bytes, queued=True)`` µs: the
first copy as issued on an idle link, or queued behind earlier traffic when the link is still busy
at issue (``busy``); the others queued behind it (float64, in that order). One copy moves one whole
block (all layers). With the α-β form a queued copy costs the same as an idle one.
"""

from __future__ import annotations

from kvgym.sim.tiers import Link


def transfer_us(link: Link, block_bytes: int, n_blocks: int, busy: bool = False) -> float:
    """µs to copy ``n_blocks`` blocks of ``block_bytes`` bytes back to back over ``link``."""
    if n_blocks == 0:
        return 0.0
    return link.time_us(block_bytes, busy) + (n_blocks - 1) * link.time_us(block_bytes, True)
