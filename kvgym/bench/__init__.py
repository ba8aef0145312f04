"""The benchmark harness: named scenarios, the sweep runner (serial / process / Ray, resumable),
the results table, summary, plots and leaderboard, ablations and the findings report.

Modules: :mod:`~kvgym.bench.scenarios` (named scenarios, ``kvgym/data/scenarios.json``),
:mod:`~kvgym.bench.specs` (policy / workload / agent spec strings), :mod:`~kvgym.bench.config`
(``SweepConfig``, config files and ``--set``), :mod:`~kvgym.bench.cells` (cells, the single call
into the simulator), :mod:`~kvgym.bench.backends`, :mod:`~kvgym.bench.sweep` (resume, manifest),
:mod:`~kvgym.bench.results`, :mod:`~kvgym.bench.leaderboard`, :mod:`~kvgym.bench.plots`,
:mod:`~kvgym.bench.ablation`, :mod:`~kvgym.bench.findings`, :mod:`~kvgym.bench.demo` (the
default sweep), and :mod:`~kvgym.envs.evaluate` (agents through the env). See docs/harness.md.
"""
