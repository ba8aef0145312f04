"""Bridges from kvgym to serving engines. Importing this package imports nothing heavy.

- :mod:`kvgym.integrations.vllm_compat`: the pinned vLLM version, the one-line error when the
  ``kvgym[vllm]`` extra is missing, and the ``CachePolicy`` contract kvgym relies on.
- :mod:`kvgym.integrations.vllm_driver`: runs a kvgym policy over an open-ended key stream
  (no vLLM import): the part of the vLLM adapter that holds kvgym's semantics.
- :mod:`kvgym.integrations.vllm_policy`: ``KvgymCachePolicy``, a vLLM ``CachePolicy`` that runs a
  kvgym policy (imports vLLM).
- :mod:`kvgym.integrations.vllm_record`: ``RecordingPolicy``, a vLLM ``CachePolicy`` wrapper that
  records the CPU tier's access stream as a kvgym trace (imports vLLM).
- :mod:`kvgym.integrations.vllm_replay`: ``replay_vllm``, which drives vLLM's real
  ``CPUOffloadingManager`` with a request stream the way vLLM's offloading connector does.
- :mod:`kvgym.integrations.vllm_export`: ``kvgym export vllm``, a module vLLM loads by path.
- :mod:`kvgym.integrations.vllm_peer`: vLLM's own counts on a Mooncake trace (the peer table).

See ``docs/vllm.md``.
"""
