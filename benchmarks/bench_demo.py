"""The default sweep's cost: ``kvgym demo`` (every realistic scenario x the decode workloads x every
baseline x 2 seeds, then its serving section on the whole Mooncake synthetic trace) run from scratch
into a temporary folder, wall time and CPU time (all processes).

Target (issue 12): <= 60 s of CPU on 2 cores. Writes ``artifacts/perf/demo.json``.

    python benchmarks/bench_demo.py
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kvgym.files import write_json

TARGET_CPU_S = 60


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "artifacts/perf/demo.json"
    kvgym = Path(sys.executable).with_name("kvgym")
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([str(kvgym), "demo", "--out", tmp, "--quiet"], check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        manifest = json.loads((Path(tmp) / "manifest.json").read_text())
        serving = sum(1 for _ in (Path(tmp) / "serving" / "cells").glob("*.json"))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cells = manifest.get("cells", manifest.get("n_cells"))
    res = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "cells": cells, "serving_cells": serving, "cores": os.cpu_count(),
           "target_cpu_s": TARGET_CPU_S, "meets_target": bool(cpu <= TARGET_CPU_S),
           "load_average_1min": round(os.getloadavg()[0], 2)}
    print(f"kvgym demo: {wall:.1f} s wall, {cpu:.1f} s CPU (all processes), {cells} cells + {serving} serving; "
          f"target <= {TARGET_CPU_S} s CPU: {'met' if res['meets_target'] else 'NOT met'}")
    write_json(out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
