"""`make web` without a browser: the page's preprocessing (in Node) against the Python reference, the
bundle's page files and their encoding, and mlp-serve serving them with the headers threads need."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import urllib.request

import numpy as np
import pytest

from conftest import REPO, running_server
from deploy.bundle import verify_bundle
from digit_reference import digit_input, render_strokes
from handoff.manifest import read_manifest
from web.evaluation import encode_inputs

PREPROCESS = REPO / "web" / "page" / "preprocess.js"
INK, RADIUS, FRAME = 280, 10, {"height": 28, "width": 28, "box": 20}


def strokes_cases() -> dict[str, list]:
    """Strokes in ink pixels: digits, edge cases of the bounding box and the frame, seeded scribbles."""
    t = np.linspace(0, 2 * np.pi, 41)
    rng = np.random.default_rng(0)
    cases = {
        "one": [[[140.0, 40.0], [143.5, 240.0]]],
        "zero": [np.stack([140 + 60 * np.cos(t), 140 + 95 * np.sin(t)], 1).tolist()],
        "dot": [[[100.25, 80.75]]],
        "wide": [[[10.0, 150.0], [270.0, 152.0]]],
        "corner, past the grid": [[[-20.0, -20.0], [30.0, 12.0], [5.0, 60.0]]],
        "two strokes": [[[60.0, 60.0], [220.0, 60.0]], [[140.0, 60.0], [140.0, 250.0]]],
    }
    for seed in range(5):
        cases[f"scribble {seed}"] = [(rng.normal(0, 15, (30, 2)).cumsum(0) + 140).tolist() for _ in range(2)]
    return cases


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed (the page's functions run in it)")
def test_the_pages_preprocessing_equals_the_python_reference():
    cases = strokes_cases()
    script = (f"import {{ renderStrokes, digitInput }} from {json.dumps(PREPROCESS.as_uri())};\n"
              "let text = ''; for await (const chunk of process.stdin) text += chunk;\n"
              f"const out = {{}}; for (const [name, strokes] of Object.entries(JSON.parse(text))) {{\n"
              f"  const input = digitInput(renderStrokes(strokes, {INK}, {INK}, {RADIUS}), {INK}, {INK}, {json.dumps(FRAME)});\n"
              "  out[name] = input && Array.from(input); }\nconsole.log(JSON.stringify(out));")
    run = subprocess.run(["node", "--input-type=module", "-e", script], input=json.dumps(cases), capture_output=True, text=True,
                         check=True, timeout=60)
    pages = json.loads(run.stdout)
    for name, strokes in cases.items():
        expected = digit_input(render_strokes(strokes, INK, INK, RADIUS), FRAME["height"], FRAME["width"], FRAME["box"])
        page = np.asarray(pages[name], dtype=np.float32).reshape(28, 28)
        assert expected.max() > 0.5, name  # real ink, not an empty frame
        assert np.abs(page - expected).max() <= 1 / 255, name
        mass = np.argwhere(expected > 0)  # the steps did happen: 20-pixel box, centred
        assert max(np.ptp(mass[:, 0]), np.ptp(mass[:, 1])) + 1 <= 21, name


def test_inputs_get_the_smallest_exact_encoding():
    pixels = np.arange(256, dtype=np.float32).reshape(1, 256) / np.float32(255)
    counts = np.array([[0, 3, 70000 - 1], [5, 0, 1]], dtype=np.float32)
    for array, dtype in ((pixels, "uint8"), (counts[:, :2], "uint16"), (counts, "float32"), (pixels + 0.5, "float32")):
        encoded = encode_inputs(array)
        stored = np.frombuffer(gzip.decompress(encoded.data), dtype=dtype)
        assert encoded.spec["dtype"] == dtype
        assert np.array_equal(stored.astype(np.float32) / np.float32(encoded.spec["divide"]), array.reshape(-1))


def test_the_page_is_in_the_bundle_with_its_rows_and_references(mnist_web_bundle, mnist, web_runtime):
    names = verify_bundle(mnist_web_bundle)  # every page file listed with its sha256, and intact
    web = mnist_web_bundle / "web"
    assert {"web/index.html", "web/page.json", "web/ort/ort-wasm-simd-threaded.wasm", "web/models/model.int8.onnx"} <= set(names)
    page, manifest = json.loads((web / "page.json").read_text()), read_manifest(mnist_web_bundle)
    assert set(page["variants"]) == {"fp32", "int8"} and page["input"] == {"kind": "drawing", "height": 28, "width": 28, "box": 20}
    assert (web / "ort/ort-wasm-simd-threaded.wasm").read_bytes() == (web_runtime / "onnxruntime-web/dist/ort-wasm-simd-threaded.wasm").read_bytes()
    evaluation, held_out = page["evaluation"], mnist.held_out
    stored = np.frombuffer(gzip.decompress((web / evaluation["inputs"]["file"]).read_bytes()), dtype=np.uint8)
    assert evaluation["rows"] == 10000 and evaluation["inputs"]["dtype"] == "uint8"  # 7.8 MB raw, 1.6 MB gzipped
    assert np.array_equal(stored.astype(np.float32) / np.float32(255), held_out.inputs.numpy().reshape(-1))
    labels = np.frombuffer(gzip.decompress((web / evaluation["labels"]["file"]).read_bytes()), dtype=np.uint8)
    assert np.array_equal(labels, held_out.labels.numpy())
    for variant, reference in evaluation["reference"].items():
        probs = np.frombuffer(gzip.decompress((web / reference["file"]).read_bytes()), dtype="<f4").reshape(10000, 10)
        assert reference["accuracy"] == (probs.argmax(1) == labels).mean()
        assert abs(reference["accuracy"] - manifest["variants"][variant]["accuracy"]) <= 0.002, variant
    assert evaluation["reference"]["fp32"]["accuracy"] == pytest.approx(manifest["variants"]["fp32"]["accuracy"], abs=0.5e-4)
    assert manifest["web"]["bytes"]["runtime"] > 10e6 and manifest["web"]["evaluation_rows"] == 10000


@pytest.mark.xdist_group("servers")  # with the other server tests: one worker, so no two pick one free port
def test_mlp_serve_serves_the_page_with_the_headers_for_threads(mnist_web_bundle):
    with running_server(mnist_web_bundle) as address:
        def get(path: str, headers: dict | None = None):
            request = urllib.request.Request(f"http://{address}{path}", headers=headers or {})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, dict(response.headers), response.read()
            except urllib.error.HTTPError as err:
                return err.code, dict(err.headers), err.read()

        status, headers, body = get("/")
        assert status == 200 and headers["content-type"].startswith("text/html") and body == (mnist_web_bundle / "web/index.html").read_bytes()
        assert headers["cross-origin-opener-policy"] == "same-origin" and headers["cross-origin-embedder-policy"] == "require-corp"
        status, headers, body = get("/ort/ort-wasm-simd-threaded.wasm")
        assert (status, headers["content-type"]) == (200, "application/wasm") and len(body) > 10e6
        assert get("/ort/ort.wasm.bundle.min.mjs")[1]["content-type"] == "text/javascript"
        assert get("/app.js", {"If-None-Match": headers["etag"]})[0] == 200  # another file's tag
        status, not_modified, body = get("/ort/ort-wasm-simd-threaded.wasm", {"If-None-Match": headers["etag"]})
        assert (status, body) == (304, b"") and "content-length" not in {name.lower() for name in not_modified}
        assert get("/v2/health/ready")[0] == 200 and get("/nothing.js")[0] == 404  # the protocol's routes are as they were
        wasm = (mnist_web_bundle / "web/ort/ort-wasm-simd-threaded.wasm").read_bytes()
        status, packed, body = get("/ort/ort-wasm-simd-threaded.wasm", {"Accept-Encoding": "gzip, deflate, br"})
        assert (status, packed["content-encoding"], packed["vary"]) == (200, "gzip", "accept-encoding")
        assert gzip.decompress(body) == wasm and len(body) < len(wasm) / 2 and packed["etag"] != headers["etag"]
        assert get("/ort/ort-wasm-simd-threaded.wasm", {"Accept-Encoding": "gzip", "If-None-Match": packed["etag"]})[0] == 304
        assert "content-encoding" not in get("/ort/ort-wasm-simd-threaded.wasm", {"Accept-Encoding": "gzip;q=0"})[1]
        head = urllib.request.Request(f"http://{address}/", method="HEAD")
        with urllib.request.urlopen(head, timeout=10) as response:  # curl -I: the page's headers, no body
            assert response.status == 200 and response.read() == b"" and int(response.headers["content-length"]) > 0
