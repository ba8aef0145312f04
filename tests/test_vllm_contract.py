"""The vLLM interface kvgym relies on, as in the pinned version. If this fails, vLLM changed its
CachePolicy or CPUOffloadingManager: re-read them and update kvgym.integrations (and the pin)."""

from __future__ import annotations

import warnings

import pytest

from kvgym.integrations import vllm_compat
from kvgym.integrations.vllm_compat import (
    VLLM_VERSION,
    VllmMissing,
    VllmVersionWarning,
    require_vllm,
)

try:
    vllm = require_vllm()
except VllmMissing as e:
    pytest.skip(str(e), allow_module_level=True)


def test_pinned_version_installed():
    assert vllm.__version__ == VLLM_VERSION


def test_cache_policy_and_manager_signatures_unchanged():
    diffs = vllm_compat.contract_differences()
    assert diffs == [], "vLLM's interface changed:\n" + "\n".join(diffs)


def test_kvgym_policies_implement_the_whole_contract():
    from kvgym.integrations.vllm_policy import KvgymCachePolicy
    from kvgym.integrations.vllm_record import RecordingPolicy

    for cls in (KvgymCachePolicy, RecordingPolicy):
        assert not cls.__abstractmethods__
        for name, params in vllm_compat.CACHE_POLICY_CONTRACT.items():
            own = vllm_compat._params(getattr(cls, name))
            assert own[:len(params)] == params, (cls.__name__, name, own)


def test_contract_check_detects_a_change(monkeypatch):
    from vllm.v1.kv_offload.cpu.policies.base import CachePolicy

    monkeypatch.setattr(CachePolicy, "evict", lambda self, n, protected, hint: None)
    monkeypatch.setattr(CachePolicy, "on_prefetch", lambda self, keys: None, raising=False)
    assert vllm_compat.contract_differences() == [
        "CachePolicy.on_prefetch('keys',) is new",
        "CachePolicy.evict('n', 'protected', 'hint') was evict('n', 'protected')",
    ]


def test_other_version_warns_once_naming_both(monkeypatch):
    monkeypatch.setattr(vllm, "__version__", "0.34.1")
    monkeypatch.setattr(vllm_compat, "_warned", False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        require_vllm()
        require_vllm()
    msgs = [str(x.message) for x in w if issubclass(x.category, VllmVersionWarning)]
    assert len(msgs) == 1 and "vLLM 0.33.0" in msgs[0] and "vLLM 0.34.1" in msgs[0]


def test_missing_extra_is_one_line(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_vllm(name, *a, **k):
        if name == "vllm" or name.startswith("vllm."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    monkeypatch.setattr(vllm_compat.importlib, "import_module", lambda n: no_vllm(n))
    with pytest.raises(VllmMissing) as e:
        require_vllm()
    assert "\n" not in str(e.value) and "kvgym[vllm] extra" in str(e.value)
