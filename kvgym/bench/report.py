"""``report.html``: one self-contained page per sweep, for reading in a browser.

The page holds, with no external resource (CSS and JavaScript inline, plots embedded as
``data:`` URIs, so it can be mailed or opened from disk):

- the exact command that made the sweep (``manifest.json``'s ``command``), the kvgym version,
  git commit, cells and wall time;
- the leaderboard (:mod:`kvgym.bench.leaderboard`), overall and per scenario, each a table that
  sorts by any column when its header is clicked (ranks sort by number, ties stay together);
- each scenario's description (profile, tier capacities, cost model, quantization, prefetch) and
  each trace source's (its workload generator's docstring, or the trace file);
- every plot in ``plots/``;
- the serving section, when the sweep has one (``serving/``: :func:`kvgym.bench.serving_board.html_section`).

Everything shown is computed from the sweep's own files (``results.parquet``, ``manifest.json``,
``plots/*.png``); the page is rewritten atomically.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from kvgym.bench import leaderboard
from kvgym.bench.results import read_records
from kvgym.errors import ConfigError, KvgymError
from kvgym.files import write_text

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1200px;
 padding:0 1rem;color:#1a1a1a;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ccc}h3{font-size:1.05rem}
pre{background:#f4f4f4;padding:.6rem .8rem;overflow-x:auto;border-radius:4px}
table{border-collapse:collapse;margin:.6rem 0 1.2rem;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem}td.num{text-align:right;font-variant-numeric:tabular-nums}
th.sortable{cursor:pointer;background:#eef;user-select:none}th.sortable:hover{background:#dde}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
tr.oracle td{color:#555;font-style:italic}.note{color:#444;font-size:.9rem}
img{max-width:100%;border:1px solid #ddd;margin:.4rem 0}
"""

JS = """
function cellValue(td){const v=td.getAttribute('data-sort');if(v!==null&&v!==''){const n=Number(v);
 if(!Number.isNaN(n))return n;}return td.textContent.trim();}
function sortTable(th){const table=th.closest('table');const body=table.tBodies[0];
 const idx=Array.prototype.indexOf.call(th.parentNode.children,th);
 const dir=th.getAttribute('aria-sort')==='ascending'?'descending':'ascending';
 table.querySelectorAll('th').forEach(h=>h.removeAttribute('aria-sort'));th.setAttribute('aria-sort',dir);
 const rows=Array.from(body.rows);const sign=dir==='ascending'?1:-1;
 rows.sort((a,b)=>{const x=cellValue(a.cells[idx]),y=cellValue(b.cells[idx]);
  if(typeof x==='number'&&typeof y==='number')return sign*(x-y);
  if(typeof x==='number')return -1;if(typeof y==='number')return 1;return sign*String(x).localeCompare(String(y));});
 rows.forEach(r=>body.appendChild(r));}
document.querySelectorAll('th.sortable').forEach(th=>th.addEventListener('click',()=>sortTable(th)));
"""

#: (header, row key, number format) of the leaderboard tables; ``None`` format: text.
COLUMNS = [("rank", "rank", None), ("policy", "policy", None), ("time vs {ref}", "time_vs_ref", ".4f"),
           ("95% CI", "time_ci", None), ("misses vs {ref}", "misses_vs_ref", ".3f"),
           ("bytes vs {ref}", "bytes_vs_ref", ".3f"), ("tier-0 hit rate", "hit_rate", ".4f"),
           ("stall ms", "stall_ms", ".3f"), ("prefetch useful", "prefetch_usefulness", ".3f"),
           ("gap closed", "gap_closed", ".1f")]


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _cell(r: dict, key: str, fmt: str | None) -> str:
    if key == "rank":
        if r["kind"] == "oracle":
            return '<td class="num" data-sort="1000000">oracle</td>'
        return f'<td class="num" data-sort="{r["rank"]}">{_e(leaderboard._rank_label(r))}</td>'
    if key == "policy":
        return f"<td>{_e(r['policy'])}{' (reads the future)' if r['kind'] == 'oracle' else ''}</td>"
    if key == "time_ci":
        ci = r.get("time_ci")
        return "<td>–</td>" if not ci else f'<td class="num" data-sort="{ci[1] - ci[0]!r}">[{ci[0]:.4f}, {ci[1]:.4f}]</td>'
    v = r.get(key)
    if v is None:
        return '<td class="num" data-sort="">–</td>'
    text = leaderboard._gap(r) if key == "gap_closed" else f"{v:{fmt}}"
    return f'<td class="num" data-sort="{float(v)!r}">{_e(text)}</td>'


def table(rows: list[dict], table_id: str, reference: str) -> str:
    head = "".join(f'<th class="sortable" scope="col">{_e(h.format(ref=reference))}</th>' for h, _, _ in COLUMNS)
    body = "".join(f'<tr class="{"oracle" if r["kind"] == "oracle" else "ranked"}">'
                   + "".join(_cell(r, k, f) for _, k, f in COLUMNS) + "</tr>" for r in rows)
    return f'<table id="{_e(table_id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _scenario_lines(manifest: dict) -> dict[str, str]:
    from kvgym.bench.scenarios import describe, resolve_scenarios, scenario_line

    try:
        scen = resolve_scenarios(manifest.get("config", {}).get("scenarios", []))
    except KvgymError:  # e.g. a sweep made by another kvgym version naming scenarios it no longer has
        return {}
    return {s.name: scenario_line(describe(s)) for s in scen}


def _source_line(source: str) -> str:
    from kvgym.workloads import get_workload, workload_names

    name = source.split("(", 1)[0]
    if name in workload_names():
        return f"workload generator {name}: {get_workload(name).summary}"
    return "trace file"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{_e(path.stem)}" src="data:image/png;base64,{data}"><figcaption>{_e(path.name)}</figcaption></figure>'


def render(out: Path, title: str | None = None) -> str:
    """The HTML page of the sweep in ``out``."""
    out = Path(out)
    records = read_records(out)
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{out}/manifest.json: cannot read the sweep's manifest ({e})") from None
    board = leaderboard.build(records)
    ref = board["reference"]
    name = manifest.get("config", {}).get("name") or out.name
    title = title or f"kvgym sweep report: {name}"
    command = manifest.get("command")
    cmd_html = f"<pre>{_e(command)}</pre>" if command else (
        '<p class="note">The command was not recorded (the sweep predates kvgym recording it); its full '
        f"configuration:</p><pre>{_e(json.dumps(manifest.get('config', {}), indent=1))}</pre>")
    parts = [f"<h1>{_e(title)}</h1>",
             "<h2>How it was made</h2>", cmd_html,
             (f'<p class="note">kvgym {_e(manifest.get("kvgym_version", "?"))}, git commit '
             f'{_e(manifest.get("git_commit") or "unknown")}; {_e(manifest.get("cells", len(records)))} cells '
             f'({_e(manifest.get("cells_run", "?"))} run, {_e(manifest.get("cells_reused", "?"))} reused), '
             f'{_e(manifest.get("wall_time_s", "?"))} s wall.</p>'),
             "<h2>Leaderboard</h2>", (f'<p class="note">{_e(leaderboard.explanation(board))} Click a column '
             "header to sort by it; click again to reverse.</p>"),
             "<h3>Overall</h3>", table(board["overall"]["ranked"] + board["overall"]["oracle"], "overall", ref)]
    scen_lines = _scenario_lines(manifest)
    for k, sc in enumerate(board["scenarios"]):
        parts.append(f"<h3 id=\"scenario-{k}\">{_e(sc['scenario'])}</h3>")
        if sc["scenario"] in scen_lines:
            parts.append(f'<p class="note">{_e(scen_lines[sc["scenario"]])}</p>')
        if sc["infeasible"]:
            parts.append(f'<p class="note">Infeasible here (a step does not fit tier 0): {_e(", ".join(sc["infeasible"]))}</p>')
        parts.append(table(sc["ranked"] + sc["oracle"], f"scenario-table-{k}", ref))
    plots = sorted((out / "plots").glob("*.png")) if (out / "plots").is_dir() else []
    if plots:
        parts += ["<h2>Plots</h2>"] + [_img(p) for p in plots]
    parts += ["<h2>Scenarios</h2>", "<table><thead><tr><th>scenario</th><th>description</th></tr></thead><tbody>"]
    parts += [f"<tr><td>{_e(s['scenario'])}</td><td>{_e(scen_lines.get(s['scenario'], '–'))}</td></tr>"
              for s in board["scenarios"]]
    parts += ["</tbody></table>", "<h2>Trace sources</h2>",
              "<table><thead><tr><th>source</th><th>description</th></tr></thead><tbody>"]
    sources = list(dict.fromkeys(r["source"] for r in records))
    parts += [f"<tr><td><code>{_e(s)}</code></td><td>{_e(_source_line(s))}</td></tr>" for s in sources]
    parts += ["</tbody></table>"]
    from kvgym.bench.serving_board import html_section

    parts.append(html_section(out / "serving"))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(parts) + f"\n<script>{JS}</script>\n</body></html>\n")


def sweep_dirs(root: Path) -> list[Path]:
    """``root`` if it holds a sweep's results, else its sub-folders that do (one level down)."""
    root = Path(root)
    if (root / "results.parquet").is_file():
        return [root]
    found = sorted(d for d in root.iterdir() if (d / "results.parquet").is_file()) if root.is_dir() else []
    if not found:
        raise ConfigError(f"{root}: no sweep results here or in its sub-folders (run `kvgym sweep` first)")
    return found


def write(out: Path) -> Path:
    """Write ``out/report.html`` for the sweep in ``out``."""
    return write_text(Path(out) / "report.html", render(Path(out)))
