"""mlp-predict on real MNIST test images in every accepted form, its output, and one exit code per
kind of bad input, run as users run it: a subprocess where torch cannot be imported."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import MNIST_BUNDLE_MAX_BATCH, REPO
from deploy.build.__main__ import DeployConfig
from deploy.build.__main__ import run as build_run
from deploy.errors import ExitCode

IMAGES = 100  # the first test images, written out as PNG files


@pytest.fixture(scope="module")
def test_images(mnist):
    """uint8 N x 28 x 28 test images (white on black) and their labels."""
    pixels = (mnist.held_out.inputs[:IMAGES, 0].numpy() * 255).round().astype(np.uint8)
    return pixels, mnist.held_out.labels[:IMAGES].numpy()


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory, test_images):
    folder = tmp_path_factory.mktemp("pngs")
    for index, image in enumerate(test_images[0]):
        Image.fromarray(image).save(folder / f"{index:03d}.png")
    return folder


def predict(bundle, *args, env):
    return subprocess.run([sys.executable, "-m", "deploy.predict", "--bundle", str(bundle), *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def correct(stdout: str, labels: np.ndarray) -> int:
    return sum(row["class"] == str(label) for row, label in zip(json.loads(stdout), labels, strict=True))


def test_png_folder_is_classified_torch_free(mnist_bundle, png_folder, test_images, no_torch_env, exported):
    done = predict(mnist_bundle, "--json", png_folder, env=no_torch_env)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["file"] for r in rows] == [str(p) for p in sorted(png_folder.glob("*.png"))]
    assert all(abs(sum(r["probs"].values()) - 1) < 1e-5 and r["class"] == r["top_k"][0]["class"] for r in rows)
    accuracy = json.loads((exported / "train_metrics.json").read_text())["test_accuracy"]
    assert correct(done.stdout, test_images[1]) >= IMAGES * accuracy - 3  # a one-epoch model: about its test accuracy


def test_npy_idx_and_inverted_images_give_the_same_answers(mnist_bundle, png_folder, test_images, no_torch_env, tmp_path):
    pixels, labels = test_images
    np.save(tmp_path / "u8.npy", pixels)
    np.save(tmp_path / "f32.npy", (pixels / 255).astype(np.float32)[:, None])
    idx = bytes.fromhex("00000803") + b"".join(d.to_bytes(4, "big") for d in pixels.shape) + pixels.tobytes()
    (tmp_path / "images-idx3-ubyte.gz").write_bytes(gzip.compress(idx))
    Image.fromarray(255 - pixels[0]).save(tmp_path / "dark-on-light.png")
    reference = predict(mnist_bundle, "--json", png_folder, env=no_torch_env).stdout
    for name in ("u8.npy", "f32.npy", "images-idx3-ubyte.gz"):
        done = predict(mnist_bundle, "--json", tmp_path / name, env=no_torch_env)
        assert done.returncode == 0, done.stderr
        assert [r["class"] for r in json.loads(done.stdout)] == [r["class"] for r in json.loads(reference)], name
        assert json.loads(done.stdout)[7]["index"] == 7
    inverted = predict(mnist_bundle, "--json", "--invert", tmp_path / "dark-on-light.png", env=no_torch_env)
    assert json.loads(inverted.stdout)[0]["class"] == json.loads(reference)[0]["class"]


def test_text_output_shows_top_k(mnist_bundle, png_folder, no_torch_env):
    done = predict(mnist_bundle, "--top-k", "2", png_folder / "000.png", env=no_torch_env)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith(f"{png_folder / '000.png'}: ") and line.count(",") == 1


def test_int8_and_fp32_variants_agree_and_an_absent_variant_is_refused(exported, mnist, no_torch_env, tmp_path_factory,
                                                                       mnist_bundle):
    out = tmp_path_factory.mktemp("int8") / "artifacts"
    shutil.copytree(exported, out, ignore=shutil.ignore_patterns("deploy"))  # mnist_bundle stays the fp32 one
    build_run(DeployConfig(artifacts=str(out), variant="int8", max_batch=MNIST_BUNDLE_MAX_BATCH))
    bundle, images = out / "deploy", out.parent / "test-images.npy"
    np.save(images, mnist.held_out.inputs[:1000, 0].numpy())  # float32 N x 28 x 28 in [0, 1]
    rows = {}
    for variant in ("int8", "fp32"):
        done = predict(bundle, "--json", "--verbose", "--variant", variant, images, env=no_torch_env)
        assert done.returncode == 0, done.stderr
        assert f"variant {variant} (" in done.stderr and "ORT options: batch 1: " in done.stderr, done.stderr
        rows[variant] = json.loads(done.stdout)
    assert rows["int8"] != rows["fp32"]  # two different functions...
    agree = np.mean([a["class"] == b["class"] for a, b in zip(rows["int8"], rows["fp32"], strict=True)])
    assert agree >= 0.99, agree  # ...with the same answers (the gate holds int8 to 99.5% on all 10,000)
    for folder, variant, has in ((bundle, "nonsense", "fp32, int8"), (mnist_bundle, "int8", "fp32")):
        done = predict(folder, "--variant", variant, images, env=no_torch_env)
        assert done.returncode == ExitCode.BAD_MODEL and f"no variant {variant!r} in this bundle; it has {has} " in done.stderr


def test_a_reader_that_stops_early_gets_no_traceback(mnist_bundle, data_dir, no_torch_env):
    """`mlp-predict t10k-images-idx3-ubyte | head -3`: three lines, nothing on stderr, the exit code of
    a filter ended by SIGPIPE."""
    images = data_dir / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    done = subprocess.run(["bash", "-c", f"{sys.executable} -m deploy.predict --bundle {mnist_bundle} {images} | head -3; "
                           "echo ${PIPESTATUS[0]} >&2"], capture_output=True, text=True, env=no_torch_env, cwd=REPO, timeout=120)
    assert len(done.stdout.splitlines()) == 3 and done.stdout.startswith(f"{images}[0]: 7 ")
    assert done.stderr == "141\n"


def test_help_lists_every_exit_code(mnist_bundle, no_torch_env):
    done = predict(mnist_bundle, "--help", env=no_torch_env)
    for code in ExitCode:
        if code:
            assert f"\n  {int(code)}  " in done.stdout, code


@pytest.mark.parametrize("make_input, code, message", [
    (lambda d: d / "absent.png", ExitCode.MISSING_INPUT, "no such file or folder"),
    (lambda d: _empty_folder(d), ExitCode.MISSING_INPUT, "holds no image files"),
    (lambda d: _write(d / "notes.png", b"not an image"), ExitCode.NOT_READABLE, "not an image, .npy or IDX file"),
    (lambda d: _npy(d, np.zeros((2, 28, 27), np.uint8)), ExitCode.BAD_SHAPE, "expected N x 28 x 28"),
    (lambda d: _npy(d, np.zeros((2, 28, 28), np.int64)), ExitCode.BAD_SHAPE, "dtype int64"),
    (lambda d: _npy(d, np.full((1, 28, 28), np.nan, np.float32)), ExitCode.BAD_VALUES, "NaN"),
    (lambda d: _npy(d, np.full((1, 28, 28), 2.0, np.float32)), ExitCode.BAD_VALUES, "expected 0-1"),
    (lambda d: _write(d / "t-idx3-ubyte", bytes.fromhex("00000803") + b"\0\0\0\2"), ExitCode.NOT_READABLE, "truncated"),
])
def test_bad_input_is_one_line_and_its_own_exit_code(mnist_bundle, no_torch_env, tmp_path, make_input, code, message):
    done = predict(mnist_bundle, make_input(tmp_path), env=no_torch_env)
    assert done.returncode == code, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and message in done.stderr


def test_a_tampered_or_missing_model_is_refused(mnist_bundle, png_folder, no_torch_env, tmp_path):
    bundle = tmp_path / "deploy"
    shutil.copytree(mnist_bundle, bundle)
    model = bundle / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-100] ^= 1  # one bit of one weight
    model.write_bytes(bytes(data))
    done = predict(bundle, png_folder / "000.png", env=no_torch_env)
    assert done.returncode == ExitCode.BAD_MODEL and "does not match manifest.json" in done.stderr
    assert f"remove {bundle} and run `make deploy`" in done.stderr  # what makes it whole: Make takes it as current
    model.unlink()
    assert predict(bundle, png_folder / "000.png", env=no_torch_env).returncode == ExitCode.BAD_MODEL
    missing = predict(tmp_path / "nowhere", png_folder / "000.png", env=no_torch_env)
    assert missing.returncode == ExitCode.BAD_MODEL and "not a deploy bundle" in missing.stderr


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _npy(folder, array):
    np.save(folder / "input.npy", array)
    return folder / "input.npy"


def _empty_folder(folder):
    (folder / "empty").mkdir()
    return folder / "empty"
