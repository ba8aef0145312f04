"""The one place serving mode computes a transfer time (swap this function to change the link model).

Today's model is the α-β link of :func:`kvgym.sim.tiers.transfer_alpha_beta`: a batch of
``n`` block copies issued back to back over the link from ``src`` to ``dst`` takes
``n * (α + block_bytes / β)`` µs, computed as ``per = α + block_bytes / β`` then ``n * per``
(float64, in that order). One copy moves one whole block (all layers).
"""

from __future__ import annotations

from kvgym.sim.tiers import Tier, transfer_alpha_beta


def transfer_us(src: Tier, dst: Tier, block_bytes: int, n_blocks: int) -> float:
    """µs to copy ``n_blocks`` blocks of ``block_bytes`` bytes from ``src`` to ``dst``, back to back."""
    if n_blocks == 0:
        return 0.0
    alpha, beta = transfer_alpha_beta(src, dst)
    per = alpha + block_bytes / beta
    return n_blocks * per
