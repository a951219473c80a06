"""How long the Compare page takes to show a stored comparison (target: under 2 s).

    .venv/bin/python bench/compare_page.py runs/results/toy/comparison-budget.json

Times (1) reading the summary and building every frame and figure the page draws, and (2) the whole page
through Streamlit's AppTest (script run included, no browser), cold and warm (st.cache_data hit).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from mars_core.compare.results import load_comparison  # noqa: E402
from mars_core.present import compare_figures as cf  # noqa: E402
from mars_core.present import compare_views as cv  # noqa: E402
from mars_core.store.sqlite import Store  # noqa: E402


def main(summary: Path) -> dict:
    start = time.perf_counter()
    comparison = load_comparison(summary)
    metric = "test_accuracy"
    cv.strategy_table(comparison, metric)
    cf.sweep_figure(cv.sweep_frame(comparison, metric), cv.sweep_axis_label(comparison), metric)
    cf.difference_figure(cv.difference_frame(comparison, metric), "uniform", metric)
    cf.distribution_figure(cv.distribution_frame(comparison, metric), metric)
    frames_s = time.perf_counter() - start

    tmp = Path(tempfile.mkdtemp())
    Store(tmp / "bench.db")
    os.environ["MARS_COMPARE_DIR"] = str(summary.parent)
    os.environ["MARS_DB"] = str(tmp / "bench.db")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["db_path"] = str(tmp / "bench.db")
    at.run()
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        at.switch_page("pages/compare.py").run()
        timings.append(time.perf_counter() - start)
        assert not at.exception, [e.value for e in at.exception]
    result = {"summary": str(summary), "runs": len(comparison.runs), "points": len(comparison.points),
              "frames_and_figures_s": round(frames_s, 3), "page_first_s": round(timings[0], 3),
              "page_warm_s": round(min(timings[1:]), 3), "target_s": 2.0}
    print(json.dumps(result, indent=1))
    out = ROOT / "bench" / "results" / "compare_page.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/results/toy/comparison.json"))
