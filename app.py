"""MARS Explorer: the Streamlit entry point.

Every page is a file in pages/ that only lays out what mars_core computes; the sidebar (run picker,
new run, Step) is shared and lives in pages/common.py. On a fresh store the demo runs are built on
first launch, so `make run` needs nothing configured.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import streamlit as st  # noqa: E402

from pages.common import app_frame, poll_step_job, sidebar  # noqa: E402

st.set_page_config(page_title="MARS Explorer", page_icon="📐", layout="wide")

HERE = Path(__file__).resolve().parent  # absolute page paths: app.py may also be run from a page (page_setup)
PAGES = {
    "Explore": [
        st.Page(HERE / "pages/data.py", title="Data", icon=":material/table:"),
        st.Page(HERE / "pages/margins.py", title="Margins", icon=":material/bar_chart:", default=True),
        st.Page(HERE / "pages/budget.py", title="Budget", icon=":material/pie_chart:"),
        st.Page(HERE / "pages/curvature.py", title="Curvature", icon=":material/ssid_chart:"),
        st.Page(HERE / "pages/pairs.py", title="Pairs", icon=":material/compare_arrows:"),
    ],
    "Learn": [st.Page(HERE / "pages/teach.py", title="Teach", icon=":material/school:")],
}

if (HERE / "pages/review.py").exists():  # written separately; absent in a partial checkout
    PAGES["Explore"].append(st.Page(HERE / "pages/review.py", title="Review", icon=":material/rate_review:"))

page = st.navigation(PAGES)
with app_frame():
    sidebar()
    page.run()
    poll_step_job()
