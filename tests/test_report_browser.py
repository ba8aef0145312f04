"""The HTML report of a sweep: self-contained, and checked in a real browser (Debian's headless
Chromium driven by playwright; playwright never downloads a browser of its own here).

Needs the ``dev`` extra (playwright) and the ``chromium`` Debian package (``make test`` installs
both); with ``KVGYM_REQUIRE_EXTRAS`` naming ``browser`` a missing Chromium fails the test instead of
skipping it.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest
from _bench_helpers import small_config, tiny_traces
from conftest import missing, needs_extra

from kvgym.bench.report import render
from kvgym.bench.sweep import run_sweep
from kvgym.cli import main

CHROMIUM = os.environ.get("KVGYM_CHROMIUM", "/usr/bin/chromium")
#: Headless flags for a machine with no network and no GPU, run as root (see the project's notes).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    traces = tiny_traces(d)
    res = run_sweep(small_config(d, traces, plots=True, seeds=(0, 1)), command="kvgym sweep --config small.json")
    return res.out


def test_the_report_is_one_self_contained_page(sweep):
    page = (sweep / "report.html").read_text()
    assert page == render(sweep)  # run_sweep wrote it; rendering again gives the same page
    assert "<pre>kvgym sweep --config small.json</pre>" in page
    # No external resource: no stylesheet or script link, every image inline.
    assert not re.search(r"<link|<script[^>]+src=|src=\"(?!data:)", page)
    assert page.count('src="data:image/png;base64,') == len(list((sweep / "plots").glob("*.png"))) == 6
    assert page.count('<table id="scenario-table-') == 2 and 'id="overall"' in page
    assert "trace file" in page  # the sources are trace files here
    heads = re.findall(r'<th class="sortable" scope="col">([^<]*)</th>', page)[:10]
    assert heads == ["rank", "policy", "time vs lru", "95% CI", "misses vs lru", "bytes vs lru", "tier-0 hit rate",
                     "stall ms", "prefetch useful", "gap closed"]


def test_report_command_writes_one_page_per_sweep(sweep, tmp_path, capsys):
    root = tmp_path / "many"
    for name in ("a", "b"):
        shutil.copytree(sweep, root / name)
        (root / name / "report.html").unlink()
    assert main(["report", str(root)]) == 0
    assert capsys.readouterr().out.split() == [str(root / "a" / "report.html"), str(root / "b" / "report.html")]
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no sweep results here" in capsys.readouterr().err


def _browser(p):
    if not os.path.exists(CHROMIUM):
        missing("browser", f"no Chromium at {CHROMIUM} (Debian package chromium; `make test` installs it)")
    return p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)


def test_the_page_loads_without_errors_and_its_tables_sort(sweep, tmp_path):
    sync_api = needs_extra("dev", "playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems = []
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto((sweep / "report.html").as_uri())
            page.wait_for_load_state("load")
            assert problems == []
            assert page.title().startswith("kvgym sweep report")
            # Every embedded plot decoded into a real image.
            widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
            assert len(widths) == 6 and min(widths) > 100

            table = "#overall"
            policies = lambda: page.eval_on_selector_all(
                f"{table} tbody tr", "rows => rows.map(r => r.cells[1].textContent)")
            times = lambda: page.eval_on_selector_all(
                f"{table} tbody tr", "rows => rows.map(r => Number(r.cells[2].getAttribute('data-sort')))")
            before = policies()
            header = page.locator(f"{table} th", has_text="time vs lru").first
            header.click()
            asc = times()
            assert asc == sorted(asc) and header.get_attribute("aria-sort") == "ascending"
            header.click()
            desc = times()
            assert desc == sorted(desc, reverse=True) and header.get_attribute("aria-sort") == "descending"
            page.locator(f"{table} th", has_text="policy").first.click()
            names = policies()
            assert names == sorted(names) and sorted(names) == sorted(before)
            page.locator(f"{table} th", has_text="rank").first.click()  # ranks sort by number, oracle last
            assert policies()[-1].endswith("(reads the future)")
            assert problems == []
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=False)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        finally:
            browser.close()
