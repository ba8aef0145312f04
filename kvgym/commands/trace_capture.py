"""``kvgym trace capture``: decode with a real model and record attention mass per KV page as a trace."""

from __future__ import annotations

from pathlib import Path


def _find_tokenizer(checkpoint: Path, vocab: int) -> Path | None:
    for name in (f"tok{vocab}.bin", "tokenizer.bin"):
        if (checkpoint.parent / name).is_file():
            return checkpoint.parent / name
    return None


def _llama2c_record(args):
    from kvgym.errors import ConfigError
    from kvgym.traces.llama2c import Tokenizer, generate, load_checkpoint

    model = load_checkpoint(args.checkpoint)
    model.geometry(args.tokens_per_page, args.heads_per_page)  # fail before decoding, not after
    tok_path = Path(args.tokenizer) if args.tokenizer else _find_tokenizer(Path(args.checkpoint), model.config.vocab_size)
    tok = Tokenizer.load(tok_path, model.config.vocab_size) if tok_path else None
    if args.prompt and tok is None:
        raise ConfigError(f"--prompt needs a tokenizer: none beside {args.checkpoint}; pass --tokenizer")
    prompt = tok.encode(args.prompt) if args.prompt else []
    rec = generate(model, args.tokens, prompt=prompt, tokens_per_page=args.tokens_per_page,
                   temperature=args.temperature, seed=args.seed)
    rec.meta.update(generator="llama2c-capture", tokenizer=tok.name if tok else None)
    text = tok.decode(rec.tokens) if tok else None
    return rec, text


def _hf_record(args):
    from kvgym.traces.hf_capture import capture_hf, load_model, load_tokenizer, model_geometry

    model = load_model(args.hf, device=args.device, dtype=args.dtype)
    model_geometry(model.config, args.tokens_per_page).with_(heads_per_page=args.heads_per_page)  # fail early
    tok = load_tokenizer(args.hf) if args.prompt else None
    if tok is not None:
        ids = tok(args.prompt, return_tensors="pt").input_ids[0].tolist()
    else:
        bos = model.config.bos_token_id
        ids = [bos if bos is not None else 0]
    # A local directory is named by its last component: no machine paths in trace metadata.
    name = Path(args.hf).name if Path(args.hf).exists() else args.hf
    rec = capture_hf(model, ids, args.tokens, tokens_per_page=args.tokens_per_page,
                     prefill_chunk=args.prefill_chunk, name=name)
    text = tok.decode(rec.tokens) if tok is not None else None
    return rec, text


def _run(args) -> int:
    from kvgym.errors import ConfigError
    from kvgym.files import check_outputs
    from kvgym.traces.capture import (
        parse_select,
        plot_record,
        record_stats,
        record_to_trace,
        write_json,
    )
    from kvgym.traces.parquet import pages_path, write_trace

    parse_select(args.select)  # fail before loading or decoding anything
    check_outputs(args.output, pages_path(args.output), args.stats, args.plot)
    if bool(args.checkpoint) == bool(args.hf):
        raise ConfigError("give exactly one of --checkpoint PATH (llama2.c) or --hf MODEL (transformers)")
    rec, text = _llama2c_record(args) if args.checkpoint else _hf_record(args)
    meta = {"text": text} if text is not None else {}
    trace = record_to_trace(rec, args.select, heads_per_page=args.heads_per_page, meta=meta)
    out = write_trace(trace, args.output)
    stats = record_stats(rec, args.k)
    print(f"{out}: {rec.model}, {rec.steps} steps, {len(trace)} accesses, {len(trace.pages)} pages of "
          f"{int(trace.pages.fp16_bytes[0])} fp16 bytes, select {trace.meta['params']['select']}")
    print(f"attention (mean over layers): recent page {stats['recent_page_share']:.3f}, first page "
          f"{stats['first_page_share'] if stats['first_page_share'] is None else round(stats['first_page_share'], 3)}, "
          f"top-{args.k} coverage {stats['topk_coverage'] if stats['topk_coverage'] is None else round(stats['topk_coverage'], 3)}")
    if text is not None:
        print(f"text: {text[:300]!r}{'...' if len(text) > 300 else ''}")
    if args.record:
        print(f"record: {rec.save(args.record)}")
    if args.stats:
        print(f"stats: {write_json({'model': rec.model, 'select': trace.meta['params']['select'], **stats}, args.stats)}")
    if args.plot:
        print(f"plot: {plot_record(rec, args.plot, args.k)}")
    return 0


def _positive(v: str) -> int:
    import argparse

    try:
        n = int(v)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v!r}")
    return n


def register_trace(sub) -> None:
    p = sub.add_parser("capture", help="decode with a real model and record attention mass per KV page",
                       description="Run a llama2.c checkpoint (numpy) or a Hugging Face causal LM, record at "
                                   "every decode step the attention mass each layer and KV head puts on each KV "
                                   "page, and write the trace of the pages a selection rule picks (weights = mass).")
    src = p.add_argument_group("model")
    src.add_argument("--checkpoint", help="llama2.c checkpoint (e.g. ../shared/models/stories260K.bin)")
    src.add_argument("--tokenizer", help="llama2.c tokenizer (default: tok<vocab>.bin or tokenizer.bin beside the checkpoint)")
    src.add_argument("--hf", metavar="MODEL", help="transformers model id or local directory (needs kvgym[hf])")
    src.add_argument("--device", default="cpu", help="--hf only: torch device (cpu, cuda, cuda:1...)")
    src.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="--hf only")
    src.add_argument("--prefill-chunk", type=_positive, default=64, help="--hf only: prompt tokens per forward call")
    p.add_argument("--tokens", type=_positive, required=True, help="decode steps (positions fed, BOS and prompt included)")
    p.add_argument("--prompt", default="", help="text to feed after BOS before generating")
    p.add_argument("--temperature", type=float, default=0.0, help="llama2.c only: 0 = greedy (default)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (temperature > 0)")
    p.add_argument("--select", default="topk:8", help="pages a step accesses: all, topk:K, mass:P (default topk:8)")
    p.add_argument("--tokens-per-page", type=_positive, default=16, help="tokens per KV page (default 16)")
    p.add_argument("--heads-per-page", type=_positive, default=None,
                   help="KV heads per page (default: all heads of a layer in one page)")
    p.add_argument("-k", type=_positive, default=8, help="k of the top-k coverage statistic (default 8)")
    p.add_argument("-o", "--output", required=True, help="output trace (.parquet)")
    p.add_argument("--record", help="also save the full attention record (.npz)")
    p.add_argument("--stats", help="also write attention statistics (.json)")
    p.add_argument("--plot", help="also write a plot of the record (.png)")
    p.set_defaults(func=_run)
