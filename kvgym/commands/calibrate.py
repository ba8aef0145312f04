"""``kvgym calibrate check``: the tier model against every measured copy of the calibration file."""

from __future__ import annotations


def _cmd(args) -> int:
    from kvgym.bench.cli_common import invocation
    from kvgym.files import write_json, write_text
    from kvgym.sim.calibration import default_calibration, fidelity

    path = args.calibration or default_calibration()
    rows = fidelity(path)
    head = f"{'kind':18s} {'link':15s} {'bytes':>10s} {'measured µs':>12s} {'model µs':>10s} {'error':>7s}" \
           f" {'α-β µs':>10s} {'error':>7s}"
    lines = [head]
    for r in rows:
        lines.append(f"{r['kind']:18s} {r['link']:15s} {r['bytes']:>10,} {r['measured_us']:>12.3f} "
                     f"{r['model_us']:>10.3f} {r['error']:>+7.1%} {r['alpha_beta_us']:>10.3f} "
                     f"{r['alpha_beta_error']:>+7.1%}")
    bad = [r for r in rows if abs(r["error"]) > args.tolerance]
    bad_ab = [r for r in rows if abs(r["alpha_beta_error"]) > args.tolerance]
    summary = (f"{len(rows)} measured points; the model is outside ±{args.tolerance:.0%} on {len(bad)}, "
               f"the α-β fit alone on {len(bad_ab)}.")
    print("\n".join(lines))
    print(summary)
    if args.out:
        cmd = invocation("calibrate") or "kvgym calibrate check"
        md = ["# Tier model against the H200 calibration", "", f"Made by `{cmd}`.", "",
              ("Copies: one copy of each size on an idle link (the model's measured curve, interpolated) "
              "and the α-β fit of the same link. Batches: N page copies of 64 KiB issued back to back "
              "(each queued behind the previous one: `max(issue_us, bytes / wire)`). "
              "Error = model / measured - 1."), "", summary, "",
              "| kind | link | bytes | measured µs | model µs | error | α-β µs | α-β error |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            md.append(f"| {r['kind']} | {r['link']} | {r['bytes']:,} | {r['measured_us']:.3f} | {r['model_us']:.3f} "
                      f"| {r['error']:+.1%} | {r['alpha_beta_us']:.3f} | {r['alpha_beta_error']:+.1%} |")
        write_text(f"{args.out}/check.md", "\n".join(md) + "\n")
        write_json(f"{args.out}/check.json", {"command": cmd, "tolerance": args.tolerance, "rows": rows})
    return 1 if bad else 0


def register(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="check the tier model against the measured H200 copies",
                              description="Compare the h200-measured profile's link model with every measured "
                                          "copy time and page-copy batch of the calibration file. Exits 1 if a "
                                          "point is outside the tolerance.")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="print (and write) the model against every measured point")
    c.add_argument("--calibration", help="calibration JSON (default: the one shipped with kvgym)")
    c.add_argument("-o", "--out", help="write check.md and check.json into this folder")
    c.add_argument("--tolerance", type=float, default=0.10, help="relative error allowed (default 0.10)")
    c.set_defaults(func=_cmd)
