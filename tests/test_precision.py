"""Precision is decided once, from the hardware, with its reason; both decisions are tested on any machine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from handoff.errors import PipelineError
from pipeline.placement import FORCE_NOT_NATIVE_ENV, native_bf16, resolve_precision

CPU = torch.device("cpu")
NATIVE_HERE, EVIDENCE_HERE = native_bf16(CPU)


def test_auto_takes_float32_where_bf16_is_not_native(monkeypatch, capsys):
    monkeypatch.setenv(FORCE_NOT_NATIVE_ENV, "1")
    precision = resolve_precision("auto", CPU)
    assert (precision.dtype, precision.native, precision.autocast_dtype) == ("float32", False, None)
    assert precision.reason == (f"auto: {FORCE_NOT_NATIVE_ENV}=1 says to treat this machine as having no native bf16, "
                                "so bf16 would be emulated and slow")
    assert capsys.readouterr().err == ""  # auto never warns: it only picks what is fast


@pytest.mark.skipif(not NATIVE_HERE, reason=f"no native bf16 here: {EVIDENCE_HERE}")
def test_auto_takes_bf16_where_it_is_native():
    precision = resolve_precision("auto", CPU)
    assert (precision.dtype, precision.native, precision.autocast_dtype) == ("bfloat16", True, torch.bfloat16)
    assert "AVX512-BF16" in precision.reason or "AMX" in precision.reason


def test_onednn_capped_at_avx2_has_no_native_bf16(monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 is how the slow machine is reproduced: the decision must follow it."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    native, evidence = native_bf16(CPU)
    assert not native
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in evidence or "neither AVX512-BF16 nor AMX" in evidence


def test_explicit_bf16_without_native_support_runs_with_a_one_line_warning(monkeypatch, capsys):
    monkeypatch.setenv(FORCE_NOT_NATIVE_ENV, "1")
    precision = resolve_precision("bfloat16", CPU)
    assert (precision.dtype, precision.native) == ("bfloat16", False)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("warning: PRECISION=bfloat16 without native bf16 (PIPELINE_NO_NATIVE_BF16=1 says")
    assert "emulated" in err


def test_off_is_float32_whatever_the_hardware():
    assert resolve_precision("off", CPU).dtype == "float32"


def test_unknown_precision_is_refused():
    with pytest.raises(PipelineError, match="unknown PRECISION='half'; use auto, bfloat16, off"):
        resolve_precision("half", CPU)


def test_cli_prints_the_choice_once_and_records_it(data_dir, cli_env, tmp_path):
    """A tiny emulated-bf16 run: the warning, one placement line with the reasons, and train_metrics.json's entry."""
    env = {**cli_env, FORCE_NOT_NATIVE_ENV: "1"}
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "--device", "cpu", "--precision", "bfloat16", "--epochs", "1",
         "--train-samples", "768", "--artifacts", str(tmp_path), "--data-dir", str(data_dir)],
        capture_output=True, text=True, env=env, cwd=REPO, check=False,
    )
    assert run.returncode == 0, run.stderr
    assert [line for line in run.stderr.splitlines() if line.startswith("warning:")] == [
        "warning: PRECISION=bfloat16 without native bf16 (PIPELINE_NO_NATIVE_BF16=1 says to treat this machine "
        "as having no native bf16): emulated, several times slower than PRECISION=off or auto"
    ]
    assert [line for line in run.stdout.splitlines() if line.startswith("placement:")] == [
        "placement: cpu (DEVICE=cpu); bfloat16 (PRECISION=bfloat16 asks for it; "
        "PIPELINE_NO_NATIVE_BF16=1 says to treat this machine as having no native bf16); capture off"
    ]
    recorded = json.loads((tmp_path / "train_metrics.json").read_text())["precision"]
    assert recorded == {"requested": "bfloat16", "dtype": "bfloat16", "native": False,
                        "reason": "PRECISION=bfloat16 asks for it; PIPELINE_NO_NATIVE_BF16=1 says to treat "
                                  "this machine as having no native bf16"}
