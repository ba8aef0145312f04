"""Hugging Face capture hook on a tiny random Llama (no download), checked against the numpy llama2.c model."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs_extra

transformers, torch = needs_extra("hf", "transformers", "torch")

from kvgym.cli import main
from kvgym.traces.capture import AttentionRecord
from kvgym.traces.hf_capture import capture_hf
from kvgym.traces.llama2c import Llama2cConfig, Llama2cModel, generate
from kvgym.traces.parquet import read_trace


def _tiny_llama(seed: int = 0):
    cfg = transformers.LlamaConfig(vocab_size=48, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(cfg)
    with torch.no_grad():  # larger than the default init so attention is far from uniform
        for name, p in model.named_parameters():
            p.normal_(1.0 if "norm" in name else 0.0, 0.1 if "norm" in name else 0.35)
    return model.float().eval()


def _to_llama2c(model) -> Llama2cModel:
    """HF Llama -> llama2.c weights: undo HF's rotate-half permutation of wq/wk (as llama2.c's export does)."""
    c = model.config
    H, KV, D = c.num_attention_heads, c.num_key_value_heads, c.hidden_size

    def t(x):
        return x.detach().float().numpy().copy()

    def unpermute(w, heads):
        rows, cols = w.shape
        return w.reshape(heads, 2, rows // heads // 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)

    layers = model.model.layers
    cfg = Llama2cConfig(D, c.intermediate_size, len(layers), H, KV, c.vocab_size, c.max_position_embeddings, True)
    emb = t(model.model.embed_tokens.weight)
    return Llama2cModel(
        cfg, tok_emb=emb, rms_att=np.stack([t(x.input_layernorm.weight) for x in layers]),
        wq=np.stack([unpermute(t(x.self_attn.q_proj.weight), H) for x in layers]),
        wk=np.stack([unpermute(t(x.self_attn.k_proj.weight), KV) for x in layers]),
        wv=np.stack([t(x.self_attn.v_proj.weight) for x in layers]),
        wo=np.stack([t(x.self_attn.o_proj.weight) for x in layers]),
        rms_ffn=np.stack([t(x.post_attention_layernorm.weight) for x in layers]),
        w1=np.stack([t(x.mlp.gate_proj.weight) for x in layers]), w2=np.stack([t(x.mlp.down_proj.weight) for x in layers]),
        w3=np.stack([t(x.mlp.up_proj.weight) for x in layers]), rms_final=t(model.model.norm.weight),
        wcls=t(model.lm_head.weight), name="tiny-hf")


@pytest.mark.slow  # ~10 s, nearly all of it importing transformers' Llama code
def test_hf_capture_matches_numpy_llama2c(tmp_path, capsys):
    model = _tiny_llama()
    prompt = [1, 7, 30, 12, 5, 44, 9]  # BOS + 6 tokens, prefilled in chunks of 3
    rec = capture_hf(model, prompt, 24, tokens_per_page=4, prefill_chunk=3, name="tiny")
    ref = generate(_to_llama2c(model), 24, prompt=prompt[1:], tokens_per_page=4)
    assert rec.mass.shape == ref.mass.shape == (24, 2, 2, 6)
    # Same greedy tokens and the same attention mass per (step, layer, KV head, page).
    np.testing.assert_array_equal(rec.tokens, ref.tokens)
    np.testing.assert_allclose(rec.mass, ref.mass, atol=2e-5)
    np.testing.assert_allclose(rec.mass.sum(axis=-1), 1.0, atol=1e-5)
    assert rec.mass.max() > 0.5  # attention is peaked, so the comparison is not trivially uniform
    assert rec.geometry.kv_heads == 2 and rec.geometry.head_dim == 8 and rec.meta["device"] == "cpu"

    # End to end through the CLI, from a local model directory (works offline).
    model.save_pretrained(tmp_path / "tiny")
    out = tmp_path / "hf.parquet"
    assert main(["trace", "capture", "--hf", str(tmp_path / "tiny"), "--tokens", "24", "--tokens-per-page", "4",
                 "--select", "mass:0.9", "-o", str(out), "--record", str(tmp_path / "r.npz")]) == 0
    tr = read_trace(out)
    saved = AttentionRecord.load(tmp_path / "r.npz")
    np.testing.assert_allclose(saved.mass[:, :, :, :], generate(_to_llama2c(model), 24, tokens_per_page=4).mass,
                               atol=2e-5)
    assert tr.meta["generator"] == "hf-capture" and tr.meta["params"]["select"] == "mass:0.9"
    assert tr.meta["model"] == "tiny" and str(tmp_path) not in str(tr.meta)
