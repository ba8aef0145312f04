"""The candidate scorer: one small torch network that scores each of the K candidates.

Both learned agents use it (imitation trains it directly; PPO uses it as its policy head), so
an agent works with any ``k`` (the same weights score 4 or 4096 candidates) and does not care
in which slot a page is shown beyond the rank feature below.

Input per candidate ``i`` (of ``n`` valid ones, slots sorted least recently used first):

- its ``F`` env features (:data:`kvgym.envs.observation.FEATURES`, all in ``[0, 1]``);
- the same features minus their mean over the valid candidates (how it compares to the others);
- its LRU rank ``i / (n - 1)`` (0 = least recently used, 1 = most recently used);
- the decision's ``G`` context values.

Architecture (DeepSets-style, permutation-equivariant apart from the rank input): ``phi`` maps
each candidate's input to ``hidden`` units; a masked mean and max over the valid candidates
summarise the set; ``rho`` maps ``[phi_i, mean, max]`` to a score. The policy is a softmax of the
scores over the valid slots. About 19k parameters at ``hidden=64`` with the history features
(an 80 KB state dict).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

NEG = -1e9  # logit of a masked slot (finite, so a softmax over an all-masked row stays defined)


@dataclass(frozen=True)
class ScorerConfig:
    """Shape of a :class:`CandidateScorer` (saved beside its weights as JSON)."""

    n_features: int
    n_context: int
    hidden: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


class CandidateScorer(nn.Module):
    """``scores(candidates[B, K, F], context[B, G], mask[B, K]) -> [B, K]`` (masked slots = NEG)."""

    def __init__(self, cfg: ScorerConfig):
        super().__init__()
        self.cfg = cfg
        f, g, h = cfg.n_features, cfg.n_context, cfg.hidden
        self.phi = nn.Sequential(nn.Linear(2 * f + 1 + g, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.rho = nn.Sequential(nn.Linear(3 * h, h), nn.ReLU(), nn.Linear(h, 1))

    def embed(self, cand: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor):
        """Per-candidate embeddings ``[B, K, H]`` and the set summary ``[B, 2H]``."""
        m = mask.to(cand.dtype).unsqueeze(-1)  # [B, K, 1]
        n = m.sum(1, keepdim=True).clamp(min=1.0)  # [B, 1, 1]
        mean = (cand * m).sum(1, keepdim=True) / n
        k = cand.shape[1]
        slot = torch.arange(k, dtype=cand.dtype, device=cand.device).view(1, k, 1)
        rank = slot / (n - 1.0).clamp(min=1.0)
        x = torch.cat([cand, (cand - mean) * m, rank * m, ctx.unsqueeze(1).expand(-1, k, -1)], -1)
        h = self.phi(x) * m
        pooled_mean = h.sum(1) / n.squeeze(1)
        pooled_max = (h + (m - 1.0) * 1e4).amax(1).clamp(min=0.0)  # h >= 0 (ReLU); empty rows -> 0
        return h, torch.cat([pooled_mean, pooled_max], -1)

    def forward(self, cand: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h, pooled = self.embed(cand, ctx, mask)
        k = cand.shape[1]
        s = self.rho(torch.cat([h, pooled.unsqueeze(1).expand(-1, k, -1)], -1)).squeeze(-1)
        return s.masked_fill(~mask.bool(), NEG)


def obs_tensors(obs: dict, mask=None):
    """Batched tensors ``(candidates, context, mask)`` from one observation dict (or a batch)."""
    c = torch.as_tensor(np.asarray(obs["candidates"], np.float32))
    g = torch.as_tensor(np.asarray(obs["context"], np.float32))
    m = torch.as_tensor(np.asarray(obs["action_mask"] if mask is None else mask).astype(bool))
    if c.dim() == 2:
        c, g, m = c.unsqueeze(0), g.unsqueeze(0), m.unsqueeze(0)
    return c, g, m


class NumpyScorer:
    """The same forward pass as :class:`CandidateScorer` for one decision, in numpy.

    Acting calls the scorer once per decision on a handful of candidates, where torch's per-call
    overhead (milliseconds on a busy machine) dwarfs the arithmetic; this copy of the weights
    runs it in tens of microseconds. Equal to the torch forward up to float32 rounding (tested).
    """

    def __init__(self, model: CandidateScorer):
        sd = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
        f, h = model.cfg.n_features, model.cfg.hidden
        w0 = sd["phi.0.weight"].T  # rows: [cand (f), cand - mean (f), rank (1), ctx (g)]
        self.w0c, self.w0d, self.w0r, self.w0g = (w0[:f].copy(), w0[f:2 * f].copy(), w0[2 * f].copy(),
                                                  w0[2 * f + 1:].copy())
        self.b0 = sd["phi.0.bias"]
        self.w1, self.b1 = sd["phi.2.weight"].T.copy(), sd["phi.2.bias"]
        v0 = sd["rho.0.weight"].T  # rows: [h (H), pooled mean (H), pooled max (H)]
        self.v0h, self.v0p, self.c0 = v0[:h].copy(), v0[h:].copy(), sd["rho.0.bias"]
        self.v1, self.c1 = sd["rho.2.weight"][0].copy(), float(sd["rho.2.bias"][0])

    def __call__(self, cand: np.ndarray, ctx: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Scores ``[K]`` of one decision (masked slots = ``NEG``)."""
        mask = np.asarray(mask, bool)
        k = cand.shape[0]
        n = max(int(mask.sum()), 1)
        m = mask[:, None].astype(np.float32)
        cand = np.asarray(cand, np.float32)
        mean = (cand * m).sum(0) / n
        rank = np.arange(k, dtype=np.float32) / max(n - 1.0, 1.0)
        # The first layer of [cand, cand - mean, rank, ctx] without building the concatenation.
        x = cand @ (self.w0c + self.w0d) + (self.b0 + np.asarray(ctx, np.float32) @ self.w0g - mean @ self.w0d)
        x = np.where(mask[:, None], x, cand @ self.w0c + self.b0 + np.asarray(ctx, np.float32) @ self.w0g)
        x += (rank * mask)[:, None] * self.w0r
        h = np.maximum(np.maximum(x, 0.0) @ self.w1 + self.b1, 0.0) * m
        pooled = np.concatenate([h.sum(0) / n, np.maximum((h + (m - 1.0) * 1e4).max(0), 0.0)])
        z = np.maximum(h @ self.v0h + (pooled @ self.v0p + self.c0), 0.0)
        s = z @ self.v1 + self.c1
        return np.where(mask, s, NEG).astype(np.float32)
