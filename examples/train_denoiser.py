"""Train a small video denoiser built around stnls.nn.NonLocalAttention, with and without
optical flow, and report PSNR on a held-out frame.

Data: the frames of one short clip (default: the 64x64 DAVIS "baseball" frames shipped
beside the repository). The last frame is held out: training sees random crops of clips
taken from the other frames, with fresh Gaussian noise at every step; evaluation denoises
the last T frames and scores only the held-out last frame.

Flow: OpenCV Farneback flow computed on the *noisy* frames (what a denoiser has at test
time), lightly blurred first, in stnls layout (B, T, 2, H, W) with channel 0 = x.

Comparison: two models with the same seed and the same batches are trained, one whose
search windows follow the flow and one with zero flow (flows=None); both are evaluated on
the same noisy held-out clip.

    python examples/train_denoiser.py                 # CPU: under a minute
    python examples/train_denoiser.py --steps 50 --device cpu
    python examples/train_denoiser.py --device cuda --steps 1000
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from stnls.nn import NonLocalAttention

DEFAULT_FRAMES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "davis_baseball_64x64"


# ----------------------------------------------------------------------------- data
def load_frames(folder) -> np.ndarray:
    """(N, 3, H, W) float32 RGB in [0, 1] from the images of a folder, in name order."""
    files = sorted(p for p in Path(folder).iterdir()
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
    if not files:
        raise FileNotFoundError(f"--frames: no .jpg/.png images in {folder}")
    frames = [cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in files]
    return np.stack(frames).transpose(0, 3, 1, 2).astype(np.float32) / 255.0


def farneback_flows(clip: np.ndarray):
    """fflow, bflow (T, 2, H, W) float32 of one clip (T, 3, H, W) in [0, 1].

    fflow[t] maps frame t to t+1, bflow[t] frame t to t-1 (zero where there is no
    neighbour), channel 0 = x, as stnls expects. Farneback's flow f satisfies
    prev(y, x) ~ next(y + f[..., 1], x + f[..., 0]), which is exactly that convention.
    """
    T, _, H, W = clip.shape
    gray = []
    for f in clip:
        g = cv2.cvtColor((np.clip(f.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8),
                         cv2.COLOR_RGB2GRAY)
        gray.append(cv2.GaussianBlur(g, (5, 5), 1.0))  # noise would dominate the gradients
    fflow = np.zeros((T, 2, H, W), np.float32)
    bflow = np.zeros((T, 2, H, W), np.float32)

    def flow(a, b):
        return cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=2, winsize=9,
                                            iterations=3, poly_n=5, poly_sigma=1.1, flags=0)

    for t in range(T - 1):
        fflow[t] = flow(gray[t], gray[t + 1]).transpose(2, 0, 1)
        bflow[t + 1] = flow(gray[t + 1], gray[t]).transpose(2, 0, 1)
    return fflow, bflow


def make_batch(frames, rng, batch, T, crop, sigma, use_flow, device):
    """Random crops of T-frame clips (random start, horizontal flip, time reversal), their
    noisy versions and (if use_flow) the flows of the noisy clips."""
    N, _, H, W = frames.shape
    clean, noisy, ff, bf = [], [], [], []
    for _ in range(batch):
        t0 = rng.integers(0, N - T + 1)
        y, x = rng.integers(0, H - crop + 1), rng.integers(0, W - crop + 1)
        c = frames[t0:t0 + T, :, y:y + crop, x:x + crop]
        if rng.random() < 0.5:
            c = c[..., ::-1]
        if rng.random() < 0.5:
            c = c[::-1]
        c = np.ascontiguousarray(c)
        n = (c + rng.normal(0, sigma, c.shape)).astype(np.float32)
        clean.append(c)
        noisy.append(n)
        if use_flow:
            f, b = farneback_flows(n)
            ff.append(f)
            bf.append(b)
    to = lambda a: torch.from_numpy(np.stack(a)).to(device)  # noqa: E731
    flows = (to(ff), to(bf)) if use_flow else (None, None)
    return to(clean), to(noisy), flows


# ----------------------------------------------------------------------------- model
class Denoiser(nn.Module):
    """Per-frame convs around residual NonLocalAttention blocks; predicts the noise."""

    def __init__(self, dim=16, nheads=2, ws=5, wt=1, k=9, ps=1, nattn=1):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(3, dim, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(dim, dim, 3, padding=1))
        self.attn = nn.ModuleList(NonLocalAttention(dim, nheads, ws, wt, ps=ps, k=k)
                                  for _ in range(nattn))
        self.mix = nn.ModuleList(nn.Sequential(nn.ReLU(), nn.Conv2d(dim, dim, 3, padding=1))
                                 for _ in range(nattn))
        self.tail = nn.Conv2d(dim, 3, 3, padding=1)

    def forward(self, noisy, fflow=None, bflow=None):
        B, T, C, H, W = noisy.shape
        per_frame = lambda m, x: m(x.flatten(0, 1)).unflatten(0, (B, T))  # noqa: E731
        x = per_frame(self.head, noisy)
        for attn, mix in zip(self.attn, self.mix):
            x = x + attn(x, fflow, bflow)
            x = x + per_frame(mix, x)
        return noisy - per_frame(self.tail, x)


# ----------------------------------------------------------------------------- progress
class Progress:
    """tqdm when installed, else a carriage-return bar on stderr."""

    def __init__(self, total, desc):
        self.total, self.desc, self.n, self.t0 = total, desc, 0, time.time()
        try:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, leave=True)
        except ImportError:
            self.bar = None

    def update(self, loss):
        self.n += 1
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.5f}")
            self.bar.update(1)
            return
        width = 30
        done = int(width * self.n / self.total)
        rate = self.n / max(time.time() - self.t0, 1e-9)
        sys.stderr.write(f"\r{self.desc} [{'#' * done}{'.' * (width - done)}] "
                         f"{self.n}/{self.total} loss {loss:.5f} {rate:.1f} it/s")
        if self.n == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------- train / eval
def psnr(x, ref):
    mse = torch.mean((x.clamp(0, 1) - ref) ** 2).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def train(frames, use_flow, steps=300, device="cpu", seed=0, batch=2, T=3, crop=24,
          sigma=30 / 255, lr=2e-3, model_kw=None, progress=True):
    """Trains a Denoiser on noisy crops of `frames` (N, 3, H, W); returns (model, losses).

    The same seed gives the same initial weights and the same batches and noise whether
    or not flow is used, so the two runs differ only by the flow."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Denoiser(**(model_kw or {})).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    bar = Progress(steps, "flow   " if use_flow else "no flow") if progress else None
    losses = []
    for _ in range(steps):
        clean, noisy, flows = make_batch(frames, rng, batch, T, crop, sigma, use_flow, device)
        loss = torch.mean((model(noisy, *flows) - clean) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if bar:
            bar.update(losses[-1])
    if bar:
        bar.close()
    return model, losses


@torch.no_grad()
def evaluate(model, clean_clip, noisy_clip, use_flow, device):
    """PSNR of the last (held-out) frame of the denoised clip."""
    flows = (None, None)
    if use_flow:
        f, b = farneback_flows(noisy_clip)
        flows = (torch.from_numpy(f)[None].to(device), torch.from_numpy(b)[None].to(device))
    out = model(torch.from_numpy(noisy_clip)[None].to(device), *flows)[0, -1].cpu()
    return psnr(out, torch.from_numpy(clean_clip[-1]))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", default=str(DEFAULT_FRAMES), help="folder of frames (images)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sigma", type=float, default=30.0, help="noise std on the 0-255 scale")
    p.add_argument("--T", type=int, default=3, help="frames per clip")
    p.add_argument("--crop", type=int, default=24, help="training crop side")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--nheads", type=int, default=2)
    p.add_argument("--ws", type=int, default=5)
    p.add_argument("--wt", type=int, default=1)
    p.add_argument("--k", type=int, default=9)
    p.add_argument("--nattn", type=int, default=1, help="NonLocalAttention blocks")
    p.add_argument("--ps", type=int, default=1)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=["both", "flow", "noflow"], default="both",
                   help="train with flow, without, or both (default) for the comparison")
    return p.parse_args(argv)


def main(argv=None):
    """Runs the comparison; returns {"noisy": psnr, "flow": psnr, "noflow": psnr, ...}."""
    a = parse_args(argv)
    frames = load_frames(a.frames)
    N, _, H, W = frames.shape
    if N < a.T + 1:
        raise ValueError(f"--frames: need at least T+1 = {a.T + 1} frames, found {N}")
    if a.crop > min(H, W):
        raise ValueError(f"--crop: {a.crop} is larger than the frames ({H}x{W})")
    train_frames = frames[:-1]  # the last frame is never a training target
    sigma = a.sigma / 255
    rng = np.random.default_rng(a.seed + 1)
    clean_clip = frames[-a.T:]
    noisy_clip = (clean_clip + rng.normal(0, sigma, clean_clip.shape)).astype(np.float32)
    model_kw = dict(dim=a.dim, nheads=a.nheads, ws=a.ws, wt=a.wt, k=a.k, ps=a.ps,
                    nattn=a.nattn)
    print(f"{N} frames {H}x{W} from {a.frames}; held-out frame {N - 1}; sigma {a.sigma}; "
          f"device {a.device}; {a.steps} steps")
    result = {"noisy": psnr(torch.from_numpy(noisy_clip[-1]), torch.from_numpy(clean_clip[-1]))}
    modes = {"both": ["flow", "noflow"], "flow": ["flow"], "noflow": ["noflow"]}[a.mode]
    for mode in modes:
        use_flow = mode == "flow"
        t0 = time.time()
        model, losses = train(train_frames, use_flow, a.steps, a.device, a.seed, a.batch, a.T,
                              min(a.crop, H, W), sigma, a.lr, model_kw)
        result[mode] = evaluate(model, clean_clip, noisy_clip, use_flow, a.device)
        result[mode + "_losses"] = losses
        result[mode + "_seconds"] = time.time() - t0
    print(f"held-out frame PSNR: noisy input {result['noisy']:.2f} dB", end="")
    for mode in modes:
        print(f" | {'with flow' if mode == 'flow' else 'without flow'} "
              f"{result[mode]:.2f} dB ({result[mode + '_seconds']:.0f} s)", end="")
    print()
    return result


if __name__ == "__main__":
    main()
