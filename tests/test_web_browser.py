"""The page in a real browser: Debian's Chromium (/usr/bin/chromium) driven by Playwright, which never
downloads a browser of its own here. Served by mlp-serve (cross-origin isolated) and by a plain static
server; the MNIST page reads drawn digits as drawn and preprocesses them as the Python reference
does; the evaluation panel meets its targets against Python's ONNX Runtime for fp32 and int8; the
Otto page reads a pasted CSV row. Screenshots (desktop and a 390 x 844 phone) go to artifacts/screenshots/."""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from conftest import REPO, running_server
from digit_reference import digit_input, render_strokes

# One worker runs these (pytest-xdist --dist loadgroup): one Chromium at a time.
pytestmark = pytest.mark.xdist_group("browser")

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# No background traffic (this machine's network is closed), no first-run or component downloads.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True}
ONE = [(0.5, 0.15), (0.51, 0.85)]  # pad fractions: a vertical stroke
ZERO = [(0.5 + 0.22 * np.cos(a), 0.5 + 0.34 * np.sin(a)) for a in np.linspace(-np.pi / 2, 1.5 * np.pi, 40)]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")
    with sync_api.sync_playwright() as playwright:
        # launch() gives every run a fresh temporary profile (user-data dir), removed on close
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def mnist_served(mnist_web_bundle) -> Iterator[str]:
    with running_server(mnist_web_bundle) as address:
        yield f"http://{address}/"


@contextmanager
def opened(browser, url: str, context: dict):
    """The page at `url`, loaded and ready; fails if the page logged an error or threw."""
    page = browser.new_context(**context).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    try:
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        yield page
        assert errors == [] and page.text_content("#error") == ""
    finally:
        page.context.close()


def draw(page, points: list[tuple[float, float]]) -> str:
    """Draw one stroke through `points` (fractions of the pad) with the mouse; the top class read."""
    box = page.locator("#pad").bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=4)
    page.mouse.up()
    page.wait_for_function("!window.mlpPage.busy && window.mlpPage.last !== null")
    return page.text_content("#top-class")


def check_preprocessing(page) -> None:
    """The page's model input for its own strokes equals the Python reference's, within 1/255."""
    drawn = page.evaluate("({strokes: mlpPage.pad.strokes, input: Array.from(mlpPage.input), frame: mlpPage.spec.input})")
    frame = drawn["frame"]
    expected = digit_input(render_strokes(drawn["strokes"], 280, 280, 10), frame["height"], frame["width"], frame["box"])
    assert np.abs(np.asarray(drawn["input"], dtype=np.float32).reshape(expected.shape) - expected).max() <= 1 / 255


def evaluate(page, rows: int) -> dict:
    page.evaluate("mlpPage.lastEvaluation = null")
    page.select_option("#eval-rows", str(rows))
    page.click("#evaluate")
    page.wait_for_function("window.mlpPage.lastEvaluation", timeout=300_000)
    result = page.evaluate("mlpPage.lastEvaluation")
    assert result["rows"] == rows and page.get_attribute("#eval-result table", "data-verdict") == ("pass" if all(c["ok"] for c in result["checks"]) else "fail")
    return result


def use_variant(page, variant: str) -> None:
    page.select_option("#variant", variant)
    page.wait_for_function(f"window.mlpPage.variant === '{variant}' && !window.mlpPage.busy")


def check_targets(result: dict, card_accuracy: float, every_row: bool) -> None:
    """The page's targets; on every held-out row, fp32's accuracy is also the model card's."""
    if result["variant"] == "fp32":
        assert result["agreement"] == 1 and result["maxAbs"] <= 1e-5, result
        assert result["accuracy"] == result["referenceAccuracy"], result
        if every_row:
            assert result["correct"] == round(card_accuracy * result["rows"]) and result["cardAccuracy"] == card_accuracy, result
    else:
        assert result["agreement"] >= 0.999, result
    assert all(check["ok"] for check in result["checks"]), result["checks"]


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def card(bundle: Path, variant: str) -> float:
    return json.loads((bundle / "manifest.json").read_text())["variants"][variant]["accuracy"]


def test_mnist_page_reads_drawn_digits_and_matches_python_on_every_test_image(browser, mnist_served, mnist_web_bundle):
    with opened(browser, mnist_served, DESKTOP) as page:
        assert "cross-origin isolated" in page.text_content("#threads") and page.evaluate("crossOriginIsolated")
        assert draw(page, ONE) == "1"
        check_preprocessing(page)
        page.click("#clear")
        assert draw(page, ZERO) == "0"
        check_preprocessing(page)
        for variant in ("fp32", "int8"):
            use_variant(page, variant)
            assert page.text_content("#call").startswith(variant)  # the drawing re-run with the new variant
            check_targets(evaluate(page, 10000), card(mnist_web_bundle, variant), every_row=True)
        screenshot(page, "web-desktop.png")


def test_mnist_page_fits_a_phone(browser, mnist_served, mnist_web_bundle):
    with opened(browser, mnist_served, PHONE) as page:
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the screen
        assert draw(page, ONE) == "1"
        use_variant(page, "fp32")  # the bundle's default is int8
        check_targets(evaluate(page, 1000), card(mnist_web_bundle, "fp32"), every_row=False)
        assert page.evaluate("mlpPage.lastEvaluation.cardAccuracy") is None  # 1,000 rows: not the card's
        screenshot(page, "web-phone.png")


def test_the_page_works_from_a_plain_static_server_single_threaded(browser, mnist_web_bundle):
    handler = functools.partial(Quiet, directory=str(mnist_web_bundle / "web"))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with opened(browser, f"http://127.0.0.1:{server.server_address[1]}/", DESKTOP) as page:
                assert page.text_content("#threads").startswith("1 (not cross-origin isolated")
                use_variant(page, "fp32")
                assert draw(page, ONE) == "1"
                check_targets(evaluate(page, 1000), card(mnist_web_bundle, "fp32"), every_row=False)
        finally:
            server.shutdown()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_otto_page_reads_a_pasted_csv_row_and_matches_python(browser, otto_web_bundle, otto):
    features = otto.held_out.inputs.numpy()[:1]
    expected = ort.InferenceSession(str(otto_web_bundle / "model.onnx")).run(None, {"features": features})[0][0]
    row = ",".join(["17", *(f"{v:g}" for v in features[0]), f"Class_{int(otto.held_out.labels[0]) + 1}"])  # train.csv's shape
    with running_server(otto_web_bundle) as address, opened(browser, f"http://{address}/", DESKTOP) as page:
        assert page.locator("#field-grid input").count() == 93 and page.is_hidden("#pad")
        use_variant(page, "fp32")  # the bundle's default is int8
        page.fill("#row", row)
        page.click("#use-row")
        page.wait_for_function(f"!window.mlpPage.busy && window.mlpPage.input[0] === {features[0, 0]}")
        last = page.evaluate("mlpPage.last")
        assert np.abs(np.asarray(last["probs"]) - expected).max() <= 1e-5 and last["top"] == f"Class_{expected.argmax() + 1}"
        assert page.text_content("#row-label") == f"label in the row: Class_{int(otto.held_out.labels[0]) + 1}"
        rows = json.loads((otto_web_bundle / "web/page.json").read_text())["evaluation"]["rows"]
        for variant in ("fp32", "int8"):
            use_variant(page, variant)
            check_targets(evaluate(page, rows), card(otto_web_bundle, variant), every_row=True)
        screenshot(page, "web-otto-desktop.png")
