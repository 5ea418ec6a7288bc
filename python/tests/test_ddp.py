"""DistributedDataParallel on two GPUs (bench/ddp.py): outputs, all-reduced gradients and
device placement checked against single-GPU runs. Skipped, visibly, with fewer than 2 GPUs."""
import pathlib
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
import stnls  # noqa: E402

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "bench" / "ddp.py"


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2
                    or not stnls.cuda_available(), reason="needs two CUDA GPUs and a CUDA build")
def test_ddp_two_gpus():
    run = subprocess.run([sys.executable, str(SCRIPT), "--gpus", "2", "--steps", "3"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PASS" in run.stdout
