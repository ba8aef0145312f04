"""Oracle bounds and regret analysis: how far from optimal a policy is, and where it loses.

Modules (import what you need; nothing heavy is imported here):

- :mod:`kvgym.oracle.nextuse`: next/previous-use arrays in O(n), an O(n) ``Future``.
- :mod:`kvgym.oracle.belady`: exact Belady MIN for one cache of uniform pages (flat or pinned steps).
- :mod:`kvgym.oracle.stack`: OPT and LRU miss-ratio curves for every cache size in one pass.
- :mod:`kvgym.oracle.lp`: LP (min-cost-flow) lower bound for variable page sizes.
- :mod:`kvgym.oracle.hierarchy`: cumulative-capacity lower bounds on misses, transfers, stall, time.
- :mod:`kvgym.oracle.prefetch`: Cao et al.'s conservative and aggressive prefetch references.
- :mod:`kvgym.oracle.observe`: run the engine with per-access / per-decision recording.
- :mod:`kvgym.oracle.regret`: gap closed, good-decision ratio, windowed regret, attribution.
- :mod:`kvgym.oracle.bounds`, :mod:`kvgym.oracle.report`, :mod:`kvgym.oracle.plots`: what the
  ``kvgym oracle`` and ``kvgym regret`` commands print and write (traces:
  :func:`kvgym.workloads.resolve_trace`; scenarios: :func:`kvgym.sim.catalog.resolve_scenario`).

See ``docs/oracle.md``.
"""
