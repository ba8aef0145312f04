"""The findings report: the published findings replayed on the original traces (parity mode)."""

from __future__ import annotations

import pytest

from kvgym.bench.findings import PARITY_CELLS, _figures, run_parity, write_report
from kvgym.bundled import parity_dir
from kvgym.errors import ConfigError


def test_parity_findings_figures_and_verdicts(tmp_path):
    run = run_parity(parity_dir(), PARITY_CELLS)
    assert run.mismatches == []  # every record equals expected_fixed.json
    k = _figures(run.records)
    assert (k["F1"]["regret_aware_misses"], k["F1"]["lru_misses"]) == (152, 212)
    assert k["F1"]["bytes_cut"] == pytest.approx(0.2637548179585226, abs=1e-12)
    assert k["F2"]["lowest"] == "regret_aware"
    assert k["F2"]["regret_aware_latency_ms"] == pytest.approx(3.350415781250001, abs=1e-9)
    assert k["F2"]["lru_latency_ms"] == pytest.approx(3.598274531249994, abs=1e-9)
    assert k["F3"]["predictive_miss_cut"] == pytest.approx(1 - 97 / 240)
    assert k["F3"]["predictive_latency_over_cost_aware"] == pytest.approx(0.3236392987974308, abs=1e-9)
    assert (round(k["F4"]["fp16_hit_rate"], 3), round(k["F4"]["int4_hit_rate"], 3)) == (0.459, 0.771)
    # the original's own results reproduce the published figures
    o = _figures(run.original)
    assert (o["F1"]["regret_aware_misses"], round(o["F1"]["bytes_cut"], 3)) == (152, 0.263)
    assert (round(o["F2"]["regret_aware_latency_ms"], 3), round(o["F2"]["lru_latency_ms"], 3)) == (3.365, 3.664)
    path, res = write_report(tmp_path, realistic=False)
    text = path.read_text()
    assert res["parity"]["verdicts"] == {"F1": True, "F2": True, "F3": True, "F4": True}
    assert "| F1: regret_aware beats LRU on rag_burst (misses, bytes) | holds |" in text
    assert "| regret_aware misses | 152 | 152 | 152 |" in text
    assert "| regret_aware avg latency (ms) | 3.365 | 3.365 | 3.350 |" in text


def test_a_missing_parity_folder_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no_parity_here: no parity data here"):
        write_report(tmp_path / "out", tmp_path / "no_parity_here", realistic=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_realistic_questions_run(tmp_path):
    from kvgym.bench.findings import realistic_section

    lines, res = realistic_section(seeds=(0,))
    assert len(res["q1"]) == len(res["q4"]) == 4
    assert any(line.startswith("### Q4") for line in lines)
