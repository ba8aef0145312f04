"""Seeded request-trace generators for serving mode, found by name.

A request workload is ``gen(rng, **params) -> list of _Req`` registered with
:func:`register_request_workload` and its documented defaults; :func:`make_requests` merges
overrides (unknown keys and wrongly typed values are errors naming the parameter), seeds a
``numpy.random.Generator(PCG64(seed))`` and builds a validated
:class:`~kvgym.traces.requests.RequestTrace` whose ``meta`` records generator, parameters and
seed. Same name, parameters and seed give identical arrays and files.

**How block ids arise.** A prompt is a list of token *segments* (a system prompt, a document, a
user message, an earlier output), each with a key naming its content. Blocks of ``block_tokens``
tokens are cut from the concatenation; a block's content is the list of (segment, start, end)
pieces it covers, and its id is looked up in a trie keyed by (parent id, content), so two
requests share a block exactly when they share every token up to its end (the rule of vLLM's
chained block hashes and of Mooncake's ``hash_ids``). A request's output blocks are the full
blocks of its prompt followed by its first ``output - 1`` output tokens (the KV it computed);
a later turn that re-sends the output finds them. Ids are renumbered densely in order of first
appearance in the final (arrival-ordered) trace.

Random draws: ``rng.integers(lo, hi + 1)`` for lengths (uniform, inclusive), exponential gaps
``rng.exponential(mean)`` for arrivals (Poisson processes) and think times, Zipf ranks by
inverse CDF of weights ``1 / k**alpha`` over ``k = 1..n`` from ``rng.random()``. Times are
drawn in seconds and stored in µs. Turn arrivals are drawn, not reactive: a turn sent before
the previous answer has finished in the simulation simply finds less of its prefix cached.

Workloads (every parameter in ``docs/serving.md``):

- ``chat``: multi-turn chat sessions: each turn re-sends the whole conversation plus a new user
  message; sessions share a system prompt.
- ``system_prompt``: independent requests behind a few shared system prompts of Zipf popularity.
- ``agent``: agent/tool loops: each step re-sends the growing context (previous call and a tool
  result appended); agents share a tool-schema prefix.
- ``rag``: retrieval-augmented questions over a document pool with Zipf popularity: a shared
  instruction prefix, ``docs_per_request`` documents (most relevant first), a question.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kvgym.errors import ConfigError, unknown_name
from kvgym.traces.requests import RequestTrace, validate_requests
from kvgym.workloads import _check_type
from kvgym.workloads._common import need_float, need_int

Segment = tuple[object, int]  # (content key, tokens)


@dataclass
class _Req:
    arrival_s: float
    prompt: list[Segment]
    output: int
    session: int = -1


@dataclass(frozen=True)
class RequestWorkload:
    name: str
    fn: Callable[..., list[_Req]]
    defaults: dict
    doc: str


_REQUEST_WORKLOADS: dict[str, RequestWorkload] = {}


def register_request_workload(name: str, **defaults):
    """Decorator: register ``fn(rng, **params) -> list[_Req]`` under ``name`` with its defaults."""
    def deco(fn):
        _REQUEST_WORKLOADS[name] = RequestWorkload(name, fn, dict(defaults), (fn.__doc__ or "").strip())
        return fn
    return deco


def request_workload_names() -> list[str]:
    return sorted(_REQUEST_WORKLOADS)


def make_requests(name: str, seed: int = 0, **params) -> RequestTrace:
    """Generate request workload ``name`` with ``params`` overriding its defaults."""
    if name not in _REQUEST_WORKLOADS:
        raise unknown_name("request workload", name, _REQUEST_WORKLOADS)
    w = _REQUEST_WORKLOADS[name]
    unknown = set(params) - set(w.defaults)
    if unknown:
        raise ConfigError(f"request workload {name!r}: unknown parameters {sorted(unknown)}; "
                          f"valid: {', '.join(sorted(w.defaults))}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"request workload {name!r}: seed must be an int >= 0, got {seed!r}")
    full = {k: _check_type(name, k, params[k], d) if k in params else d for k, d in w.defaults.items()}
    bt = need_int(name, "block_tokens", full["block_tokens"], 1)
    reqs = w.fn(np.random.Generator(np.random.PCG64(int(seed))), **{k: v for k, v in full.items() if k != "block_tokens"})
    trace = _build(reqs, bt, {"generator": name, "params": full, "seed": int(seed)})
    validate_requests(trace, f"request workload {name!r}")
    return trace


# -- building ----------------------------------------------------------------------------------
def _blocks(segments: list[Segment], n_tokens: int, B: int, trie: dict, parent: int, start_block: int) -> list[int]:
    """Ids of the blocks ``start_block ..`` of the first ``n_tokens`` tokens of ``segments``
    (the last one partial if ``n_tokens % B``), chained after ``parent``."""
    ids: list[int] = []
    bounds = []
    pos = 0
    for key, n in segments:
        bounds.append((pos, pos + n, key))
        pos += n
    for j in range(start_block, -(-n_tokens // B)):
        lo, hi = j * B, min((j + 1) * B, n_tokens)
        content = tuple((key, max(lo, a) - a, min(hi, b) - a) for a, b, key in bounds if a < hi and b > lo)
        parent = trie.setdefault((parent, content), len(trie))
        ids.append(parent)
    return ids


def _build(reqs: list[_Req], B: int, meta: dict) -> RequestTrace:
    order = sorted(range(len(reqs)), key=lambda i: reqs[i].arrival_s)  # stable: ties keep generation order
    trie: dict = {}
    chains, outs, prompt, output, arrival, session = [], [], [], [], [], []
    for i in order:
        q = reqs[i]
        P = sum(n for _, n in q.prompt)
        chain = _blocks(q.prompt, P, B, trie, -1, 0)
        F = P // B
        seq = q.prompt + [(("out", i), q.output)]
        full_after = (P + q.output - 1) // B if q.output > 0 else F
        out = _blocks(seq, full_after * B, B, trie, chain[F - 1] if F else -1, F) if full_after > F else []
        chains.append(chain)
        outs.append(out)
        prompt.append(P)
        output.append(q.output)
        arrival.append(q.arrival_s)
        session.append(q.session)
    flat = [b for c, o in zip(chains, outs) for b in c + o]
    dense: dict[int, int] = {}
    for b in flat:
        dense.setdefault(b, len(dense))
    arr = np.round(np.asarray(arrival, np.float64) * 1e6, 3)
    return RequestTrace.from_chains(arr, prompt, output, [[dense[b] for b in c] for c in chains], session=session,
                                    out_chains=[[dense[b] for b in o] for o in outs], block_tokens=B, meta=meta,
                                    source=f"request workload {meta['generator']!r}")


def _zipf(rng: np.random.Generator, n: int, alpha: float, size: int) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** alpha
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), n - 1)


def _len(rng, lo: int, hi: int) -> int:
    return int(rng.integers(lo, hi + 1))


def _check_range(wl: str, lo_name: str, lo: int, hi_name: str, hi: int, minimum: int = 0) -> None:
    need_int(wl, lo_name, lo, minimum)
    need_int(wl, hi_name, hi, lo, why=f"{lo_name}={lo}")


def _sessions(rng, wl: str, n: int, turns: tuple[int, int], system_tokens: int, first: tuple[int, int],
              step_in: tuple[int, int], output: tuple[int, int], rate: float, gap_mean: float) -> list[_Req]:
    """Sessions that re-send their whole history plus new input at each turn."""
    need_int(wl, "sessions", n, 1)
    need_float(wl, "rate_per_s", rate, 0.0, lo_open=True)
    need_float(wl, "gap_s_mean", gap_mean, 0.0)
    out: list[_Req] = []
    t = 0.0
    for s in range(n):
        t += float(rng.exponential(1.0 / rate))
        history: list[Segment] = [("system", system_tokens)] if system_tokens else []
        history = history + [(("in", s, 0), _len(rng, *first))]
        at = t
        for k in range(_len(rng, *turns)):
            if k:
                at += float(rng.exponential(gap_mean)) if gap_mean > 0 else 0.0
                history = history + [(("in", s, k), _len(rng, *step_in))]
            o = _len(rng, *output)
            out.append(_Req(at, list(history), o, s))
            history = history + [(("out", len(out) - 1), o)]
    return out


def _session_workload(rng, wl, sessions, turns_min, turns_max, system_tokens, first_min, first_max, user_min,
                      user_max, output_min, output_max, rate_per_s, gap_s_mean) -> list[_Req]:
    _check_range(wl, "turns_min", turns_min, "turns_max", turns_max, 1)
    _check_range(wl, "first_min", first_min, "first_max", first_max)
    _check_range(wl, "user_min", user_min, "user_max", user_max)
    _check_range(wl, "output_min", output_min, "output_max", output_max, 1)
    need_int(wl, "system_tokens", system_tokens, 0)
    return _sessions(rng, wl, sessions, (turns_min, turns_max), system_tokens, (first_min, first_max),
                     (user_min, user_max), (output_min, output_max), rate_per_s, gap_s_mean)


@register_request_workload("chat", sessions=40, turns_min=2, turns_max=6, system_tokens=2048, first_min=512,
                           first_max=4096, user_min=64, user_max=1024, output_min=128, output_max=1024,
                           rate_per_s=1.0, gap_s_mean=20.0, block_tokens=512)
def chat(rng, **p):
    """Multi-turn chat sessions re-sending the conversation at each turn, behind a shared system prompt
    (sessions start as a Poisson process of ``rate_per_s``; turns follow after ``gap_s_mean`` on average)."""
    return _session_workload(rng, "chat", **p)


@register_request_workload("agent", sessions=20, turns_min=4, turns_max=16, system_tokens=4096, first_min=256,
                           first_max=2048, user_min=128, user_max=4096, output_min=32, output_max=256,
                           rate_per_s=0.5, gap_s_mean=2.0, block_tokens=512)
def agent(rng, **p):
    """Agent/tool loops: each step re-sends the growing context with the last call and a tool result
    (``user_*`` sizes the tool results, ``output_*`` the calls); agents share a tool-schema prefix."""
    return _session_workload(rng, "agent", **p)


@register_request_workload("system_prompt", requests=400, prompts=4, zipf_alpha=1.0, system_tokens=4096,
                           user_min=64, user_max=1024, output_min=64, output_max=512, rate_per_s=4.0,
                           block_tokens=512)
def system_prompt(rng, requests, prompts, zipf_alpha, system_tokens, user_min, user_max, output_min, output_max,
                  rate_per_s):
    """Independent requests behind ``prompts`` shared system prompts chosen with Zipf popularity."""
    wl = "system_prompt"
    need_int(wl, "requests", requests, 1)
    need_int(wl, "prompts", prompts, 1)
    need_int(wl, "system_tokens", system_tokens, 0)
    need_float(wl, "zipf_alpha", zipf_alpha, 0.0)
    need_float(wl, "rate_per_s", rate_per_s, 0.0, lo_open=True)
    _check_range(wl, "user_min", user_min, "user_max", user_max)
    _check_range(wl, "output_min", output_min, "output_max", output_max, 1)
    which = _zipf(rng, prompts, zipf_alpha, requests)
    out, t = [], 0.0
    for i in range(requests):
        t += float(rng.exponential(1.0 / rate_per_s))
        segs = ([(("system", int(which[i])), system_tokens)] if system_tokens else []) + [(("user", i), _len(rng, user_min, user_max))]
        out.append(_Req(t, segs, _len(rng, output_min, output_max)))
    return out


@register_request_workload("rag", requests=400, docs=200, doc_tokens=1024, docs_per_request=4, zipf_alpha=1.1,
                           system_tokens=512, question_min=16, question_max=128, output_min=64, output_max=512,
                           rate_per_s=4.0, block_tokens=512)
def rag(rng, requests, docs, doc_tokens, docs_per_request, zipf_alpha, system_tokens, question_min, question_max,
        output_min, output_max, rate_per_s):
    """Retrieval-augmented questions: an instruction prefix, ``docs_per_request`` distinct documents drawn by
    Zipf popularity from a pool (most relevant first: drawn order), then a question."""
    wl = "rag"
    need_int(wl, "requests", requests, 1)
    need_int(wl, "docs", docs, 1)
    need_int(wl, "doc_tokens", doc_tokens, 1)
    need_int(wl, "docs_per_request", docs_per_request, 1, docs, why=f"docs={docs}")
    need_int(wl, "system_tokens", system_tokens, 0)
    need_float(wl, "zipf_alpha", zipf_alpha, 0.0)
    need_float(wl, "rate_per_s", rate_per_s, 0.0, lo_open=True)
    _check_range(wl, "question_min", question_min, "question_max", question_max)
    _check_range(wl, "output_min", output_min, "output_max", output_max, 1)
    out, t = [], 0.0
    for i in range(requests):
        t += float(rng.exponential(1.0 / rate_per_s))
        chosen: list[int] = []
        while len(chosen) < docs_per_request:
            d = int(_zipf(rng, docs, zipf_alpha, 1)[0])
            if d not in chosen:
                chosen.append(d)
        segs = ([("instructions", system_tokens)] if system_tokens else []) + [(("doc", d), doc_tokens) for d in chosen]
        segs.append((("question", i), _len(rng, question_min, question_max)))
        out.append(_Req(t, segs, _len(rng, output_min, output_max)))
    return out
