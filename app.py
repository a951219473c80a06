"""MARS Explorer: the Streamlit entry point.

Every page is a file in pages/ that only lays out what mars_core computes; the sidebar (run picker,
new run, Step) is shared and lives in mars_core/present/sidebar.py. Every page has its own address
(/margins, /budget, …, with ?run=N), so any view can be bookmarked; the root address opens Margins.
On a fresh store the demo runs are built on first launch, so `make run` needs nothing configured.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import streamlit as st  # noqa: E402

from mars_core.present.app_shell import app_frame  # noqa: E402
from mars_core.present.sidebar import poll_step_job, sidebar  # noqa: E402
from mars_core.redaction import install_log_filter  # noqa: E402

install_log_filter()  # no API key reaches the server's log, whatever a remote paraphraser echoes

st.set_page_config(page_title="MARS Explorer", page_icon="📐", layout="wide")

PAGES = Path(__file__).resolve().parent / "pages"


def page(name: str, title: str, icon: str) -> st.Page:
    return st.Page(PAGES / f"{name}.py", title=title, icon=icon, url_path=name)


MARGINS = page("margins", "Margins", ":material/bar_chart:")


def home() -> None:
    """The root address: show Margins at its own address (a default page could only live at the root)."""
    st.switch_page(MARGINS, query_params=st.query_params.to_dict())


NAVIGATION = {
    "Explore": [
        st.Page(home, title="MARS Explorer", url_path="home", default=True, visibility="hidden"),
        page("data", "Data", ":material/table:"),
        MARGINS,
        page("budget", "Budget", ":material/pie_chart:"),
        page("curvature", "Curvature", ":material/ssid_chart:"),
        page("pairs", "Pairs", ":material/compare_arrows:"),
        page("compare", "Compare", ":material/leaderboard:"),
        page("review", "Review", ":material/rate_review:"),
    ],
    "Learn": [page("teach", "Teach", ":material/school:")],
}

current = st.navigation(NAVIGATION)
with app_frame():
    sidebar()
    current.run()
    poll_step_job()
