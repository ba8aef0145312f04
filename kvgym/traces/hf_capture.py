"""Capture attention records from a Hugging Face transformers causal LM (optional extra ``hf``).

For a decoder-only model on any device (CPU, CUDA, ...), :func:`capture_hf` feeds a prompt and
greedily decodes, asking the model for its attention probabilities (``output_attentions=True``,
which needs the ``eager`` attention implementation: SDPA and flash attention never materialise
them), and reduces them on the device to the same record the numpy llama2.c model makes
(:class:`kvgym.traces.capture.AttentionRecord`): per step, layer and KV head, the attention mass
per KV page, the mean over the KV head's query heads (Hugging Face's ``repeat_kv`` gives query
head ``h`` the KV head ``h // (n_heads / n_kv_heads)``, as llama2.c does). Only the reduced
masses leave the device.

The prompt is prefilled in chunks of ``prefill_chunk`` tokens, each chunk's rows being steps of
the record (row ``t`` attends to tokens ``0..t``, exactly as if fed one at a time); attention
memory per chunk is ``layers * heads * chunk * context`` elements, so lower the chunk for long
prompts on a small GPU.

torch and transformers are imported inside the functions, never when kvgym is imported.
"""

from __future__ import annotations

import inspect

import numpy as np

from kvgym.errors import ConfigError
from kvgym.traces.capture import AttentionRecord
from kvgym.traces.geometry import ModelGeometry


def _need_transformers():
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ConfigError(f"the Hugging Face capture needs the optional extra: pip install 'kvgym[hf]' ({e})") from None
    return transformers


def model_geometry(config, tokens_per_page: int = 16, name: str = "hf") -> ModelGeometry:
    """KV geometry of a transformers config (Llama-style attribute names)."""
    heads = int(config.num_attention_heads)
    kv = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return ModelGeometry(name, layers=int(config.num_hidden_layers), kv_heads=kv, head_dim=head_dim,
                         q_heads=heads, tokens_per_page=tokens_per_page)


def _ensure_eager(model) -> None:
    impl = getattr(model.config, "_attn_implementation", None)
    if impl == "eager":
        return
    if hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation("eager")
            return
        except (ValueError, ImportError, AttributeError):
            pass
    raise ConfigError(f"model attention implementation is {impl!r}; attention probabilities need 'eager': "
                      "load it with attn_implementation='eager'")


def capture_hf(model, input_ids, steps: int, *, tokens_per_page: int = 16, prefill_chunk: int = 64,
               name: str | None = None) -> AttentionRecord:
    """Record attention mass per KV page while greedily decoding ``steps`` positions.

    Args:
        model: a transformers causal LM (``AutoModelForCausalLM``), on any device; its attention
            implementation is switched to ``eager`` when possible.
        input_ids: prompt token ids (1-D sequence or ``[1, n]`` tensor; BOS included if the model
            wants one), ``1 <= n <= steps``.
        steps: positions fed in all (prompt plus generated tokens but the last), as in
            :func:`kvgym.traces.llama2c.generate`.
        tokens_per_page: tokens per KV page.
        prefill_chunk: prompt tokens per forward call.
        name: model label for the record (default: the config's ``_name_or_path``).
    """
    _need_transformers()
    import torch

    if not isinstance(tokens_per_page, int) or tokens_per_page <= 0:
        raise ConfigError(f"tokens_per_page must be a positive int, got {tokens_per_page!r}")
    if not isinstance(prefill_chunk, int) or prefill_chunk <= 0:
        raise ConfigError(f"prefill_chunk must be a positive int, got {prefill_chunk!r}")
    prompt = [int(x) for x in torch.as_tensor(input_ids).reshape(-1).tolist()]
    if not isinstance(steps, int) or not 1 <= len(prompt) <= steps:
        raise ConfigError(f"need 1 <= prompt length ({len(prompt)}) <= steps ({steps!r})")
    _ensure_eager(model)
    model.eval()
    cfg = model.config
    geo = model_geometry(cfg, tokens_per_page, name or getattr(cfg, "_name_or_path", "") or "hf")
    L, H, Hq = geo.layers, geo.kv_heads, geo.q_heads
    rep = Hq // H
    n_pages = -(-steps // tokens_per_page)
    mass = np.zeros((steps, L, H, n_pages), np.float32)
    device = next(model.parameters()).device
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    tokens = list(prompt)
    cache, pos = None, 0

    def run(chunk: list[int]):
        nonlocal cache, pos
        ids = torch.tensor([chunk], dtype=torch.long, device=device)
        kw = {cache_arg: cache} if cache is not None else {}
        out = model(input_ids=ids, use_cache=True, output_attentions=True, **kw)
        cache = getattr(out, "cache", None)
        if cache is None:
            cache = out.past_key_values
        if out.attentions is None or any(a is None for a in out.attentions):
            raise ConfigError("the model returned no attention probabilities; load it with attn_implementation='eager'")
        q, kv = len(chunk), pos + len(chunk)
        P = -(-kv // tokens_per_page)
        for layer, a in enumerate(out.attentions):
            a = a[0].float().reshape(H, rep, q, kv).mean(dim=1)  # [H, q, kv]
            a = torch.nn.functional.pad(a, (0, P * tokens_per_page - kv))
            pm = a.reshape(H, q, P, tokens_per_page).sum(dim=-1).permute(1, 0, 2)  # [q, H, P]
            mass[pos:pos + q, layer, :, :P] = pm.cpu().numpy()
        pos = kv
        return out.logits[0, -1]

    with torch.inference_mode():
        logits = None
        for i in range(0, len(prompt), prefill_chunk):
            logits = run(prompt[i:i + prefill_chunk])
        while True:
            nxt = int(torch.argmax(logits).item())
            tokens.append(nxt)
            if pos >= steps:
                break
            logits = run([nxt])
    return AttentionRecord(tokens=np.array(tokens, np.int64), mass=mass, tokens_per_page=tokens_per_page,
                           geometry=geo, prompt_len=len(prompt), model=geo.name,
                           meta={"generator": "hf-capture", "device": str(device),
                                 "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
                                 "transformers": _need_transformers().__version__})


def load_model(name_or_path: str, *, device: str = "cpu", dtype: str = "float32"):
    """``AutoModelForCausalLM.from_pretrained`` with eager attention, moved to ``device``.

    ``dtype``: ``float32``, ``bfloat16`` or ``float16``. A local directory works offline; a hub id
    downloads the weights (needs network and, for gated models, a token).
    """
    transformers = _need_transformers()
    import torch

    if dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"dtype {dtype!r}; valid: float32, bfloat16, float16")
    transformers.utils.logging.disable_progress_bar()
    dkey = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            name_or_path, attn_implementation="eager", **{dkey: getattr(torch, dtype)})
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load model {name_or_path!r}: {str(e).splitlines()[0]}") from None
    return model.to(device)


def load_tokenizer(name_or_path: str):
    transformers = _need_transformers()
    try:
        return transformers.AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load a tokenizer for {name_or_path!r}: {str(e).splitlines()[0]}") from None
