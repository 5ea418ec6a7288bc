"""stnls under PyTorch DistributedDataParallel on several GPUs of one host.

Starts one process per GPU (torch.multiprocessing, NCCL), trains a small video model built
on `stnls.search.NonLocalSearch`, `stnls.agg.wpsum` and `stnls.nn.NonLocalAttention`, and
checks that
  (checks in float64, so that only the reduction order differs from one process)
  (a) the forward output of rank r on cuda:r equals a single-GPU run on cuda:0 of the same
      inputs and weights,
  (b) the gradients after DDP's all-reduce equal the single-process gradients of the
      concatenated batch (to 1e-5),
  (c) nothing ran on another rank's device (no torch memory there, and, where nvidia-smi
      answers, no CUDA context of this process on another GPU);
then times float32 training steps on 1 GPU (whole batch) and on N GPUs (DDP, batch split).

    python bench/ddp.py [--gpus 2] [--steps 20] [--json PATH]
Exit status 0 when every check passes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

# NVLink multicast stays off on shared hosts.
for _k, _v in (("NCCL_NVLS_ENABLE", "0"), ("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1"),
               ("NVSHMEM_DISABLE_NVLS", "1")):
    os.environ.setdefault(_k, _v)

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch import nn  # noqa: E402

import stnls  # noqa: E402

B_PER_GPU, T, C, H, W = 2, 4, 16, 48, 48


class VideoNet(nn.Module):
    """conv -> explicit non-local search + weighted patch sum -> attention layer -> conv."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Conv2d(3, C, 3, padding=1)
        self.search = stnls.search.NonLocalSearch(7, 1, 3, 8, 2, stride0=2)
        self.attn = stnls.nn.NonLocalAttention(C, 2, ws=5, wt=1, ps=1, k=8, stride0=1)
        self.out = nn.Conv2d(C, 3, 3, padding=1)

    def forward(self, vid, fflow, bflow):
        b, t = vid.shape[:2]
        x = self.inp(vid.flatten(0, 1)).unflatten(0, (b, t))
        dists, inds = self.search(x, x, fflow, bflow)
        x = x + stnls.agg.wpsum(x, torch.softmax(dists / C, -1), inds, ps=3, stride0=2)
        x = x + self.attn(x, fflow, bflow)
        return vid + self.out(x.flatten(0, 1)).unflatten(0, (b, t))


def make_data(n, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(n, T, 3, H, W, generator=g, dtype=torch.float64)
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=g, dtype=torch.float64)
    fflow = 2 * torch.randn(n, T, 2, H, W, generator=g, dtype=torch.float64)
    bflow = 2 * torch.randn(n, T, 2, H, W, generator=g, dtype=torch.float64)
    return tuple(x.to(dtype) for x in (noisy, clean, fflow, bflow))


def make_model(device, dtype=torch.float64):
    torch.manual_seed(1234)  # identical weights on every rank and in the reference
    return VideoNet().to(device, dtype)


def loss_fn(model, noisy, clean, fflow, bflow):
    return (model(noisy, fflow, bflow) - clean).square().mean()


def ms_per_step(model, data, steps, warmup=3):
    """Milliseconds per SGD training step on `data`, after `warmup` untimed steps."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    for i in range(steps + warmup):
        if i == warmup:
            sync()
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model, *data).backward()
        opt.step()
    sync()
    return 1e3 * (time.perf_counter() - t0) / steps


def contexts_elsewhere(device_index):
    """GPUs (indices) other than ours on which this process holds a CUDA context."""
    try:
        uuids = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30).stdout
        apps = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,gpu_uuid", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    index_of = {u.split(",")[1].strip(): int(u.split(",")[0]) for u in uuids.strip().splitlines() if "," in u}
    mine = [index_of.get(a.split(",")[1].strip()) for a in apps.strip().splitlines()
            if "," in a and a.split(",")[0].strip() == str(os.getpid())]
    return sorted({i for i in mine if i is not None and i != device_index})


def worker(rank, world, tmpdir, steps, results):
    torch.cuda.set_device(rank)
    dev = torch.device("cuda", rank)
    dist.init_process_group("nccl", init_method=f"file://{tmpdir}/rdv", rank=rank, world_size=world,
                            device_id=dev)
    noisy, clean, fflow, bflow = make_data(B_PER_GPU * world)
    part = slice(rank * B_PER_GPU, (rank + 1) * B_PER_GPU)
    mine = [x[part].to(dev) for x in (noisy, clean, fflow, bflow)]
    model = nn.parallel.DistributedDataParallel(make_model(dev), device_ids=[rank])

    # (a) this rank's forward, saved for rank 0 to recompute on cuda:0
    with torch.no_grad():
        out = model.module(mine[0], mine[2], mine[3])
    torch.save(out.cpu(), f"{tmpdir}/out{rank}.pt")

    # (b) DDP gradients vs one process on the whole batch (on this rank's own GPU)
    loss_fn(model, *mine).backward()
    ref = make_model(dev)
    loss_fn(ref, *[x.to(dev) for x in (noisy, clean, fflow, bflow)]).backward()
    grad_err = max(((p.grad - q.grad).abs().max() / q.grad.abs().max().clamp_min(1e-12)).item()
                   for p, q in zip(model.module.parameters(), ref.parameters()))
    dist.barrier()

    report = {"rank": rank, "grad_rel_err": grad_err}
    if rank == 0:  # (a) every rank's output against a single-GPU run on cuda:0
        single = make_model(dev)
        errs = []
        for r in range(world):
            p = slice(r * B_PER_GPU, (r + 1) * B_PER_GPU)
            with torch.no_grad():
                want = single(noisy[p].to(dev), fflow[p].to(dev), bflow[p].to(dev)).cpu()
            got = torch.load(f"{tmpdir}/out{r}.pt")
            errs.append((got - want).abs().max().item())
        report["output_max_err"] = max(errs)
        report["outputs_bitwise_equal"] = all(e == 0 for e in errs)

    # timing: float32 DDP training steps on this rank's share of the batch
    model = nn.parallel.DistributedDataParallel(make_model(dev, torch.float32), device_ids=[rank])
    mine = [x[part].to(dev) for x in make_data(B_PER_GPU * world, dtype=torch.float32)]
    report["ms_per_step"] = ms_per_step(model, mine, steps)

    # (c) nothing on the other GPUs
    report["torch_bytes_elsewhere"] = sum(torch.cuda.memory_allocated(d) for d in range(world) if d != rank)
    report["contexts_elsewhere"] = contexts_elsewhere(rank)
    results[rank] = report
    dist.barrier()
    dist.destroy_process_group()


def single_gpu_ms(steps, n):
    dev = torch.device("cuda", 0)
    model = make_model(dev, torch.float32)
    data = [x.to(dev) for x in make_data(n, dtype=torch.float32)]
    return ms_per_step(model, data, steps)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available() or torch.cuda.device_count() < args.gpus:
        print(f"needs {args.gpus} CUDA GPUs, found {torch.cuda.device_count()}")
        return 0
    with tempfile.TemporaryDirectory() as tmpdir:
        with mp.Manager() as manager:
            results = manager.dict()
            mp.spawn(worker, args=(args.gpus, tmpdir, args.steps, results), nprocs=args.gpus)
            reports = [dict(results[r]) for r in range(args.gpus)]
    one = single_gpu_ms(args.steps, B_PER_GPU * args.gpus)
    ok = (reports[0]["output_max_err"] <= 1e-5
          and all(r["grad_rel_err"] <= 1e-5 for r in reports)
          and all(r["torch_bytes_elsewhere"] == 0 for r in reports)
          and all(not r["contexts_elsewhere"] for r in reports))
    print(f"{torch.cuda.get_device_name(0)} x{args.gpus}; batch {B_PER_GPU * args.gpus} clips of "
          f"{T}x{C}x{H}x{W}; stnls {stnls.__version__}, torch {torch.__version__}")
    print(f"(a) outputs per rank vs single GPU: max |diff| = {reports[0]['output_max_err']:.3g} "
          f"(bitwise equal: {reports[0]['outputs_bitwise_equal']})")
    for r in reports:
        print(f"rank {r['rank']}: (b) grad rel err {r['grad_rel_err']:.3g}  (c) torch bytes on other GPUs "
              f"{r['torch_bytes_elsewhere']}, contexts on other GPUs {r['contexts_elsewhere']}  "
              f"step {r['ms_per_step']:.2f} ms")
    print(f"{'gpus':>5} {'ms/step':>9} {'clips/s':>9}")
    print(f"{1:>5} {one:9.2f} {1e3 * B_PER_GPU * args.gpus / one:9.1f}")
    ddp = max(r["ms_per_step"] for r in reports)
    print(f"{args.gpus:>5} {ddp:9.2f} {1e3 * B_PER_GPU * args.gpus / ddp:9.1f}")
    print("PASS" if ok else "FAIL")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"reports": reports, "single_gpu_ms": one, "ddp_ms": ddp, "ok": ok}, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
