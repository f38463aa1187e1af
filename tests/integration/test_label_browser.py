"""The labelling app end to end in a real headless Chromium (Debian's, driven by Playwright): log in, vote with the
keyboard and with the mouse, watch the progress move, see markup in responses shown and not run, check the admin
page, export the votes, and train `bridle rm` on the export.

Set BRIDLE_LABEL_SCREENSHOTS=DIR to keep the screenshots (label.png, admin.png) there.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install "
                                                                   "playwright)")
httpx = pytest.importorskip("httpx")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no system chromium (apt-get install chromium; .ci/run installs it)", allow_module_level=True)

from bridle.cli.main import main  # noqa: E402
from bridle.label import db  # noqa: E402
from bridle.label.server import prepare  # noqa: E402

# A response that tries everything: a script, an event handler, a javascript: link, raw HTML; and markdown + code.
EVIL = ('# Plan\n\nSure! <script>window.__xss = 1; alert("script ran")</script>\n\n'
        '<img src=x onerror="window.__xss = 2; alert(\'img ran\')"> and [click me](javascript:alert(3))\n\n'
        "```python\ndef add(a, b):\n    return a + b  # <b>not bold</b>\n```\n\n- **bold** item\n- `inline code`")
CANDIDATES = [
    {"prompt": [{"role": "system", "content": "You are a careful assistant."},
                {"role": "user", "content": "Write a Python function that adds two numbers."}],
     "response_a": EVIL, "response_b": "Here you go:\n\n```python\nadd = lambda a, b: a + b\n```"},
    *({"prompt": f"Name a colour ({i}).", "response_a": f"Blue, the colour of the sky ({i}).",
       "response_b": f"no ({i})"} for i in range(5)),
]
GOLD = [{"prompt": "What is 2 + 2?", "chosen": "2 + 2 = 4.", "rejected": "2 + 2 = 5."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def add_annotator(db_path: Path, name: str, capsys: pytest.CaptureFixture, *extra: str) -> str:
    capsys.readouterr()
    assert main(["label", "add-annotator", name, "--db", str(db_path), *extra]) == 0
    return capsys.readouterr().out.strip()


@pytest.fixture
def served(tmp_path: Path, capsys: pytest.CaptureFixture):
    """`bridle label serve` (the real command) on a free port: 6 pairs, 1 gold pair, k = 1, gold rate 0.25."""
    db_path = tmp_path / "labels.sqlite"
    tokens = {"alice": add_annotator(db_path, "alice", capsys),
              "root": add_annotator(db_path, "root", capsys, "--admin")}
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "bridle.cli.main", "label", "serve", "--db", str(db_path),
         "--data", str(write_jsonl(tmp_path / "candidates.jsonl", CANDIDATES)),
         "--gold", str(write_jsonl(tmp_path / "gold.jsonl", GOLD)), "--votes-per-pair", "1", "--gold-rate", "0.25",
         "--port", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        assert process.poll() is None, (tmp_path / "server.log").read_text()
        try:
            if httpx.get(f"{url}/login", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not start: " + (tmp_path / "server.log").read_text()
        time.sleep(0.2)
    yield url, db_path, tokens
    process.terminate()
    process.wait(timeout=10)
    log.close()


@pytest.fixture
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def screenshot_dir(tmp_path: Path) -> Path:
    wanted = os.environ.get("BRIDLE_LABEL_SCREENSHOTS")
    path = Path(wanted) if wanted else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


def votes(db_path: Path) -> list[dict]:
    conn = db.open_db(db_path)
    rows = [dict(r) for r in conn.execute("SELECT v.*, p.gold FROM votes v JOIN pairs p ON p.id = v.pair_id "
                                          "ORDER BY v.id")]
    conn.close()
    return rows


def your_votes(page) -> int:
    return int(page.inner_text("#your-votes"))


def log_in(page, url: str, token: str) -> None:
    page.goto(f"{url}/label")
    assert page.url.endswith("/login")  # no page without a token
    page.fill("#token", token)
    page.click("#login")
    page.wait_for_load_state()


def test_label_in_a_real_browser_then_export_and_train_a_reward_model(served, browser, tmp_path, tiny_model_dir):
    url, db_path, tokens = served
    shots = screenshot_dir(tmp_path)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    side_effects: list[str] = []
    page.on("dialog", lambda d: (side_effects.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("pageerror", lambda e: side_effects.append(f"page error: {e}"))
    page.on("console", lambda m: side_effects.append(f"console {m.type}: {m.text}") if m.type == "error" else None)

    log_in(page, url, tokens["alice"])
    assert page.url.endswith("/label")

    # The first pair holds the hostile response: its markup is shown as text, and nothing in it runs.
    assert page.locator("#response-left, #response-right").count() == 2
    evil_side = "#response-left" if "Sure!" in page.inner_text("#response-left") else "#response-right"
    shown = page.inner_text(evil_side)
    assert '<script>window.__xss = 1; alert("script ran")</script>' in shown
    assert "<img src=x onerror=" in shown and "[click me](javascript:alert(3))" in shown
    assert page.evaluate("window.__xss") is None
    assert page.locator(f"{evil_side} img, {evil_side} script, {evil_side} a").count() == 0
    assert page.locator(f"{evil_side} pre code").count() == 1 and page.locator(f"{evil_side} strong").count() == 1
    assert "<b>not bold</b>" in page.inner_text(f"{evil_side} pre")
    assert page.inner_text(".prompt").count("careful assistant") == 1  # the whole conversation, system turn too
    page.screenshot(path=str(shots / "label.png"), full_page=True)

    # Vote 1, keyboard: "a" = A is better. The progress moves.
    assert your_votes(page) == 0
    with page.expect_navigation():
        page.keyboard.press("a")
    assert page.is_visible("#saved") and your_votes(page) == 1

    # Vote 2, mouse.
    with page.expect_navigation():
        page.click("#choose-right")
    assert your_votes(page) == 2

    # Vote 3: typing a comment does not trigger shortcuts; Esc leaves the box, "u" flags unsafe, "b" votes.
    page.keyboard.press("c")
    page.keyboard.type("a bit abrupt")
    page.keyboard.press("Escape")
    page.keyboard.press("u")
    assert page.is_checked("#unsafe") and your_votes(page) == 2
    with page.expect_navigation():
        page.keyboard.press("b")
    assert your_votes(page) == 3
    third = votes(db_path)[-1]
    assert (third["shown_choice"], third["comment"], third["unsafe"]) == ("right", "a bit abrupt", 1)

    # Vote 4 is the gold pair (gold rate 0.25); a double click records one vote.
    with page.expect_navigation():
        page.dblclick("#choose-left")
    assert your_votes(page) == 4 and len(votes(db_path)) == 4 and votes(db_path)[-1]["gold"] == "a"

    # The rest with number keys, until the page says done.
    for key in "1212":
        if page.is_visible("#done"):
            break
        with page.expect_navigation():
            page.keyboard.press(key)
    assert page.is_visible("#done") and your_votes(page) == 7
    assert int(page.inner_text("#open-for-you")) == 0
    assert side_effects == []

    # The admin sees counts, gold accuracy and agreement; alice may not.
    assert page.goto(f"{url}/admin").status == 403
    admin = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(admin, url, tokens["root"])
    assert admin.url.endswith("/admin")
    rows = admin.inner_text("#annotators")
    assert "alice" in rows and "7" in rows
    assert admin.inner_text("#complete-pairs") == "6"
    admin.screenshot(path=str(shots / "admin.png"), full_page=True)
    context.close()

    # Export, then train a reward model on the file as it is.
    prefs = tmp_path / "prefs.jsonl"
    assert main(["label", "export", "--db", str(db_path), "--out", str(prefs)]) == 0
    rows = [json.loads(line) for line in prefs.read_text().splitlines()]
    assert len(rows) == 6 and all(r["n_votes"] == 1 for r in rows)
    first = next(r for r in rows if r["pair_id"] == 1)
    expected = EVIL if (votes(db_path)[0]["choice"] == "a") else CANDIDATES[0]["response_b"]
    assert first["chosen"] == expected  # the keyboard vote on the shuffled sides, in the pair's own order
    out = tmp_path / "rm"
    assert main(["rm", "--model", str(tiny_model_dir), "--data", str(prefs), "--output-dir", str(out),
                 "--max-steps", "2", "--batch-size", "2", "--max-length", "128", "--eval-fraction", "0",
                 "--no-progress"]) == 0
    assert (out / "model" / "config.json").is_file()

    # Active selection with the reward model just trained: every pair gets a priority.
    lines = prepare(db_path, reward_model=str(out / "model"))
    assert any("active selection: 6 pairs" in line for line in lines)
