"""Smoke test of examples/train_denoiser.py: a few tiny training steps lower the loss, and
the command-line entry point runs end to end (flow and no-flow models, PSNR report)."""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("stnls")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train_denoiser.py"


@pytest.fixture(scope="module")
def example():
    if not EXAMPLE.exists():
        pytest.skip(f"{EXAMPLE} not found (tests run outside the source tree)")
    spec = importlib.util.spec_from_file_location("train_denoiser", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def frames_dir(example, tmp_path_factory):
    """The shipped frames when present, else a synthetic moving pattern written as PNGs."""
    if example.DEFAULT_FRAMES.is_dir() and any(example.DEFAULT_FRAMES.iterdir()):
        return example.DEFAULT_FRAMES
    d = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur((rng.random((48, 48, 3)) * 255).astype(np.uint8), (5, 5), 2)
    for t in range(5):
        cv2.imwrite(str(d / f"{t:05d}.png"), np.roll(base, (t, 2 * t), axis=(0, 1))[8:40, 8:40])
    return d


@pytest.mark.parametrize("use_flow", [True, False])
def test_loss_falls(example, frames_dir, use_flow):
    frames = example.load_frames(frames_dir)[:-1]
    _, losses = example.train(frames, use_flow, steps=30, device="cpu", seed=0, batch=2, T=3,
                              crop=16, lr=3e-3, progress=False,
                              model_kw=dict(dim=8, nheads=2, ws=5, wt=1, k=6))
    assert len(losses) == 30 and all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_flows_follow_a_known_shift(example):
    # A pattern moving +2 px in x and +1 px in y per frame: fflow ~ (2, 1), bflow ~ (-2, -1).
    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(rng.random((64, 64, 3)).astype(np.float32), (7, 7), 2)
    clip = np.stack([np.roll(base, (t, 2 * t), axis=(0, 1)) for t in range(3)])
    clip = clip.transpose(0, 3, 1, 2)[:, :, 16:48, 16:48]
    fflow, bflow = example.farneback_flows(np.ascontiguousarray(clip))
    assert fflow.shape == (3, 2, 32, 32) and bflow.shape == (3, 2, 32, 32)
    inner = (slice(8, 24), slice(8, 24))
    np.testing.assert_allclose(np.median(fflow[0, 0][inner]), 2, atol=0.3)
    np.testing.assert_allclose(np.median(fflow[0, 1][inner]), 1, atol=0.3)
    np.testing.assert_allclose(np.median(bflow[1, 0][inner]), -2, atol=0.3)
    assert not fflow[-1].any() and not bflow[0].any()


def test_main_runs(example, frames_dir, capsys):
    res = example.main(["--frames", str(frames_dir), "--steps", "2", "--device", "cpu",
                        "--crop", "16", "--dim", "8", "--ws", "5", "--k", "6"])
    for key in ("noisy", "flow", "noflow"):
        assert math.isfinite(res[key])
    assert "held-out frame PSNR" in capsys.readouterr().out
