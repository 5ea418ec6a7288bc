"""`stnls-demo`: non-local search with and without optical flow on a short noisy video.

Each frame is aligned to its neighbour (the next frame, the previous one for the last) by
replacing every pixel with the neighbour's pixel at its top-1 patch match. When the motion
is larger than half the search window, only the flow-guided search can still find the
right match. The script prints the alignment PSNR and the search time of both, and saves a
montage of the frames, the two alignments and their errors.

Runs on the CPU with NumPy arrays (torch not needed); `--device cuda` uses torch tensors.
"""

import argparse
import sys

from ._demo_align import pair_videos, psnr, search_top1, warp_from_neighbours
from ._demo_figure import error_image, montage
from ._demo_video import read_frames, synthetic_video, video_flows


def _parser():
    p = argparse.ArgumentParser(
        prog="stnls-demo",
        description="Align each frame of a noisy video to its neighbour with stnls's "
                    "non-local search, without and with optical flow (OpenCV Farneback).")
    p.add_argument("--frames", metavar="DIR",
                   help="folder of frames (sorted image files) instead of the synthetic video")
    p.add_argument("--size", type=int, default=None,
                   help="synthetic frame side (default 128); with --frames, resize so that "
                        "the longer side is SIZE (default: as read)")
    p.add_argument("--nframes", type=int, default=5, help="synthetic video length (default 5)")
    p.add_argument("--motion", type=float, nargs=2, default=(6.3, -5.4), metavar=("DX", "DY"),
                   help="synthetic camera motion, pixels per frame (default 6.3 -5.4)")
    p.add_argument("--noise", type=float, default=0.04,
                   help="synthetic noise standard deviation, pixel range 1 (default 0.04)")
    p.add_argument("--grey", action="store_true", help="work in grey levels")
    p.add_argument("--ws", type=int, default=9, help="search window side (default 9)")
    p.add_argument("--ps", type=int, default=7, help="patch side (default 7)")
    p.add_argument("--device", default="cpu",
                   help="cpu: NumPy arrays, no torch needed (default); any other torch "
                        "device, e.g. cuda: torch tensors on it")
    p.add_argument("--out", default="stnls_demo.png", help="output PNG (default stnls_demo.png)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    return p


def main(argv=None):
    args = _parser().parse_args(argv)

    if args.frames:
        noisy = read_frames(args.frames, args.size, args.grey)
        # A real video has no clean version: score the alignment against the frame itself.
        reference, ref_name = noisy, "the frame being aligned"
        source = f"{noisy.shape[0]} frames from {args.frames}"
    else:
        size = args.size or 128
        if args.nframes < 2:
            raise SystemExit("--nframes: the video needs at least 2 frames")
        if size < 64:
            # Farneback's pyramid cannot follow a few pixels of motion on smaller frames.
            raise SystemExit("--size: the synthetic video needs frames of at least 64 pixels")
        clean, noisy = synthetic_video(size, args.nframes, tuple(args.motion), args.noise,
                                       args.grey, args.seed)
        # Synthetic: score against the clean frame, so the noise of the frame being
        # aligned does not count as alignment error.
        reference, ref_name = clean, "the clean frame"
        dx, dy = args.motion
        source = (f"{'camera' if args.grey else 'astronaut'} (scikit-image), {args.nframes} "
                  f"frames, motion ({dx:g}, {dy:g}) px/frame, noise sigma {args.noise:g}")
    T, C, H, W = noisy.shape

    fflow, bflow = video_flows(noisy)
    vid0, vid1, pf, pb = pair_videos(noisy, fflow, bflow)

    print(f"stnls-demo: {source}; {W}x{H}x{C}, device {args.device}")
    if not args.frames:
        est = fflow[0, :-1].reshape(T - 1, 2, -1).mean(axis=(0, 2))
        print(f"Farneback forward flow, mean: ({est[0]:.2f}, {est[1]:.2f}) px "
              f"(true: ({args.motion[0]:g}, {args.motion[1]:g}))")
        if max(abs(m) for m in args.motion) <= args.ws // 2:
            print(f"note: the motion fits in the window (ws//2 = {args.ws // 2}), "
                  "so the search without flow can find the match too")
    print(f"search: nls ws={args.ws} wt=1 ps={args.ps} k=1 dist_type=l2 stride0=1, each frame "
          f"against its neighbour; PSNR of the aligned frame against {ref_name}")

    results = []
    for name, ff, bf in (("no flow", None, None), ("with flow", pf, pb)):
        inds, seconds = search_top1(vid0, vid1, ff, bf, args.ws, args.ps, args.device)
        aligned = warp_from_neighbours(noisy, inds)
        results.append((name, aligned, psnr(aligned, reference), seconds))

    print(f"{'method':<10} {'PSNR (dB)':>10} {'search (s)':>11}")
    for name, _, db, seconds in results:
        print(f"{name:<10} {db:>10.2f} {seconds:>11.3f}")

    rows = [("noisy frames t" if not args.frames else "frames t", noisy)]
    for name, aligned, db, _ in results:
        rows.append((f"t from its neighbour, {name}: {db:.2f} dB", aligned))
    for name, aligned, _, _ in results:
        rows.append((f"|error| x4 vs {ref_name}, {name}", error_image(aligned, reference)))
    montage(rows, args.out)
    print(f"figure: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
