"""The app in a real headless Chromium: render seconds per page, first launch, and a Step in the app vs the CLI.

    .venv/bin/python bench/app.py render [--sizes 1000 10000 100000] [--data toy|demo] [--project DIR] [--label after]
    .venv/bin/python bench/app.py launch [--project DIR]          # fresh store: seconds until Step is enabled
    .venv/bin/python bench/app.py step --db STORE --run ID [--project DIR]   # same epoch, app vs CLI

render: builds a 2-D toy (or, with --data demo, a text demo) store per size (one Step, so every page has an allocation) with the CLI of the
project measured, starts `streamlit run app.py` there as a user would (the project's own settings), and
opens every page by its address, twice: "cold" (the first visit after the server started) and "warm".
A page is rendered when its heading shows, the script stopped running and every Plotly chart has drawn.
step: copies the store twice, steps run ID once with the CLI on one copy and once through the app (click
Step) on the other, and compares the epoch seconds each stored. --project points to another checkout
(e.g. `git worktree add /tmp/before ffc7ff6^`) to measure the app as it was. Writes bench/results/app-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]
PAGES = {"data": ("Data", "Data"), "margins": ("Margins", "Margins"), "budget": ("Budget", "Budget"),
         "curvature": ("Curvature", "Curvature"), "pairs": ("Pairs", "Pairs"),
         "review": ("Review", "Review paraphrases"), "teach": ("Teach", "Teach: MARS in two dimensions"),
         "compare": ("Compare", "Compare strategies")}  # address: (sidebar link, heading)
ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _python(project: Path) -> str:
    venv = project / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


@contextmanager
def server(project: Path, db: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`streamlit run app.py` in ``project`` with MARS_DB=db and only the project's own settings."""
    port = _free_port()
    env = {**os.environ, **ENV, "MARS_DB": str(db)}
    with log.open("w") as out:
        proc = subprocess.Popen([_python(project), "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                 "--server.port", str(port)], cwd=project, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                        if reply.read().strip() == b"ok":
                            break
                except OSError:
                    time.sleep(0.3)
            yield url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def rss_mib(pid: int) -> float:
    """Resident memory of the server process (MiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def settled(page, timeout_s: float) -> float:
    """Wait until the script stopped and every chart drew; returns the monotonic time it first looked so."""
    deadline = time.monotonic() + timeout_s
    calm_since = None
    while time.monotonic() < deadline:
        running = page.locator("[data-testid='stStatusWidget']").count() > 0
        charts = page.locator(".js-plotly-plot").count()
        drawn = page.locator(".js-plotly-plot .main-svg").count()
        busy = running or (charts and drawn < charts) or page.locator("[data-testid='stSkeleton']").count()
        now = time.monotonic()
        if busy:
            calm_since = None
        elif calm_since is None:
            calm_since = now
        elif now - calm_since >= 0.6:
            return calm_since
        page.wait_for_timeout(50)
    raise TimeoutError("the page did not settle")


def time_page(page, name: str, timeout_s: float = 400) -> float:
    """Click the page's sidebar link (as a user moves between pages) and time it until it has rendered."""
    from playwright.sync_api import expect

    link, heading = PAGES[name]
    start = time.monotonic()
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=link, exact=True).click()
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=timeout_s * 1000)
    seconds = settled(page, timeout_s) - start
    assert not page.get_by_test_id("stException").count(), f"{name}: the page raised"
    return seconds


def demo_store(project: Path, data: str, pairs: int, folder: Path) -> tuple[Path, int]:
    """A store of one run on the toy or the text demo at ``pairs`` pairs, stepped once (built once, then kept)."""
    db = folder / f"{data}{pairs}.db"
    if not db.exists():
        start = time.monotonic()
        subprocess.run([_python(project), "-m", "mars_core", "run", "--data", data, "--pairs", str(pairs),
                        "--epochs", "1", "--db", str(db), "--name", f"{data} {pairs}"], cwd=project, check=True,
                       env={**os.environ, **ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"built {db.name} in {time.monotonic() - start:.0f} s", flush=True)
    with sqlite3.connect(db) as con:
        return db, int(con.execute("SELECT max(id) FROM runs").fetchone()[0])


def render(args, browser) -> dict:
    from playwright.sync_api import expect

    out: dict = {"label": args.label, "project": str(args.project), "data": args.data, "sizes": {}}
    folder = Path(args.stores) / args.label
    folder.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        db, run_id = demo_store(args.project, args.data, n, folder)
        with server(args.project, db, folder / f"server{n}.log") as (url, proc):
            row: dict = {}
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            start = time.monotonic()
            page.goto(f"{url}/margins?run={run_id}")  # the first request also loads the JavaScript (Plotly)
            # the heading first: before the script's first run the page looks calm, and a "settled" then was
            # charged (6-8 s of Plotly loading) to the next page timed
            expect(page.get_by_role("heading", name=PAGES["margins"][1], exact=True)).to_be_visible(timeout=400_000)
            row["open"] = round(settled(page, 400) - start, 2)
            for visit in args.visits:  # cold: the server's first time on this page
                for name in args.pages:
                    seconds = time_page(page, name)
                    row[f"{name}:{visit}"] = round(seconds, 2)
                    print(f"{args.label} {n:>7} {name:<10} {visit}: {seconds:6.2f} s", flush=True)
            row["server_rss_mib"] = round(rss_mib(proc.pid), 1)
            page.close()
        out["sizes"][str(n)] = row
    return out


def launch(args, browser) -> dict:
    from playwright.sync_api import expect

    folder = Path(tempfile.mkdtemp(prefix="mars-launch-"))
    db = folder / "mars.db"
    with server(args.project, db, folder / "server.log") as (url, proc):
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        start = time.monotonic()
        page.goto(url)
        expect(page.get_by_role("heading", name="Margins", exact=True)).to_be_visible(timeout=600_000)
        first_page = time.monotonic() - start
        step = page.get_by_test_id("stSidebar").get_by_role("button", name="Step", exact=True)
        expect(step).to_be_enabled(timeout=600_000)
        expect(page.get_by_role("heading", name="Epoch 0")).to_be_visible(timeout=600_000)
        ready = time.monotonic() - start
        rss = rss_mib(proc.pid)
    print(f"{args.label} first launch: first page {first_page:.1f} s, demo ready {ready:.1f} s")
    return {"label": args.label, "first_page_s": round(first_page, 1), "demo_ready_s": round(ready, 1),
            "server_rss_mib": round(rss, 1), "store": str(db)}


def _epoch_seconds(db: Path, run_id: int, epoch: int) -> float:
    with sqlite3.connect(db) as con:
        return float(con.execute("SELECT seconds FROM epochs WHERE run_id = ? AND epoch = ?",
                                 (run_id, epoch)).fetchone()[0])


def step(args, browser) -> dict:
    from playwright.sync_api import expect

    folder = Path(tempfile.mkdtemp(prefix="mars-step-"))
    cli_db, app_db = folder / "cli.db", folder / "app.db"
    shutil.copy(args.db, cli_db)
    shutil.copy(args.db, app_db)
    with sqlite3.connect(cli_db) as con:
        epoch = int(con.execute("SELECT max(epoch) FROM epochs WHERE run_id = ?", (args.run,)).fetchone()[0]) + 1
    start = time.monotonic()
    subprocess.run([_python(args.project), "-m", "mars_core", "run", "--resume", str(args.run), "--epochs", "1",
                    "--db", str(cli_db)], cwd=args.project, check=True, env={**os.environ, **ENV},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cli_wall = time.monotonic() - start
    with server(args.project, app_db, folder / "server.log") as (url, _):
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(f"{url}/margins?run={args.run}")
        button = page.get_by_test_id("stSidebar").get_by_role("button", name="Step", exact=True)
        expect(button).to_be_enabled(timeout=300_000)
        start = time.monotonic()
        button.click()
        expect(page.get_by_test_id("stSidebar").get_by_text(f"Epoch {epoch} done")).to_be_visible(timeout=1_800_000)
        app_wall = time.monotonic() - start
    cli_s, app_s = _epoch_seconds(cli_db, args.run, epoch), _epoch_seconds(app_db, args.run, epoch)
    print(f"{args.label} step epoch {epoch}: CLI {cli_s:.1f} s stored ({cli_wall:.1f} s wall), app {app_s:.1f} s "
          f"stored ({app_wall:.1f} s from the click); ratio {app_s / cli_s:.2f}")
    return {"label": args.label, "epoch": epoch, "cli_epoch_s": round(cli_s, 1), "app_epoch_s": round(app_s, 1),
            "cli_wall_s": round(cli_wall, 1), "app_click_to_done_s": round(app_wall, 1),
            "ratio_stored": round(app_s / cli_s, 3), "ratio_wall": round(app_wall / cli_wall, 3)}


def table(result: dict) -> str:
    """The render part as a markdown table: one row per page, cold / warm seconds per size."""
    sizes = list(result["sizes"])
    lines = ["| page | " + " | ".join(f"{int(n):,} pairs cold / warm (s)" for n in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for name in PAGES:
        if f"{name}:cold" not in result["sizes"][sizes[0]]:
            continue
        cells = [" / ".join(f"{result['sizes'][n][f'{name}:{v}']:.1f}" for v in ("cold", "warm")
                            if f"{name}:{v}" in result["sizes"][n]) for n in sizes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| server RSS (MiB) | " + " | ".join(f"{result['sizes'][n]['server_rss_mib']:.0f}"
                                                   for n in sizes) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=("render", "launch", "step"))
    parser.add_argument("--project", type=Path, default=ROOT, help="the checkout whose app is measured")
    parser.add_argument("--label", default="after")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--data", choices=("toy", "demo"), default="toy", help="render: the 2-D toy or the text demo")
    parser.add_argument("--pages", nargs="+", default=list(PAGES), choices=list(PAGES))
    parser.add_argument("--visits", nargs="+", default=["cold", "warm"], choices=["cold", "warm"])
    parser.add_argument("--stores", default=str(Path(tempfile.gettempdir()) / "mars-bench-app"))
    parser.add_argument("--db", type=Path, help="step: the store holding the run")
    parser.add_argument("--run", type=int, help="step: the run to step")
    args = parser.parse_args()
    args.project = args.project.resolve()

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        result = {"render": render, "launch": launch, "step": step}[args.part](args, browser)
        browser.close()
    if args.part == "render":
        print(table(result))
    suffix = f"-{args.data}" if args.part == "render" and args.data != "toy" else ""
    path = ROOT / "bench" / "results" / f"app-{args.part}-{args.label}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
