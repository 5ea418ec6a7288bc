"""Inputs of the `stnls-demo` script: a synthetic noisy video with a known camera motion,
or a folder of frames, and their Farneback optical flows in stnls layout."""

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _cv2():
    # OpenCV is only needed by the demo, not by the library, so import it on use.
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SystemExit("stnls-demo needs OpenCV: pip install opencv-python-headless") from e
    return cv2


def synthetic_video(size=128, nframes=5, motion=(6.3, -5.4), sigma=0.04, grey=False, seed=0):
    """A photograph panned by `motion` = (dx, dy) pixels per frame, plus Gaussian noise.

    Returns (clean, noisy), each (T, C, H, W) float32 in [0, 1] (noisy is clipped to it,
    as an 8-bit camera would). Frame t+1 shows at p + motion what frame t shows at p, so
    the true forward flow is +motion everywhere and the backward flow -motion.
    """
    cv2 = _cv2()
    from skimage import data  # shipped with scikit-image: no download

    img = data.camera()[..., None] if grey else data.astronaut()
    # Work on a source twice the frame size and crop its centre, so that a shifted frame
    # never reads past the photograph's edge (no border artefacts in the ground truth).
    src = cv2.resize(img, (2 * size, 2 * size), interpolation=cv2.INTER_AREA)
    src = src.astype(np.float32).reshape(2 * size, 2 * size, -1) / 255.0
    dx, dy = motion
    mid = (nframes - 1) / 2.0  # centre the trajectory on the source's centre
    frames = []
    for t in range(nframes):
        # dst(x, y) = src(x - tx, y - ty): content moves by (t - mid) * motion, minus the crop.
        tx = (t - mid) * dx - size / 2.0
        ty = (t - mid) * dy - size / 2.0
        warp = np.array([[1.0, 0.0, tx], [0.0, 1.0, ty]], np.float32)
        f = cv2.warpAffine(src, warp, (size, size), flags=cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_REFLECT)
        frames.append(f.reshape(size, size, -1).transpose(2, 0, 1))
    clean = np.clip(np.stack(frames), 0.0, 1.0).astype(np.float32)
    rng = np.random.default_rng(seed)
    noisy = clean + rng.normal(0.0, sigma, clean.shape).astype(np.float32)
    return clean, np.clip(noisy, 0.0, 1.0).astype(np.float32)


def read_frames(folder, size=None, grey=False):
    """Sorted image files of `folder` as (T, C, H, W) float32 in [0, 1], RGB (or grey).

    `size`, when given, resizes every frame so that its longer side is `size` pixels.
    """
    cv2 = _cv2()
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) < 2:
        raise SystemExit(f"--frames: need at least 2 image files in {folder}, "
                         f"found {len(paths)}")
    frames, shape = [], None
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"--frames: cannot read {p}")
        if size is not None:
            h, w = img.shape[:2]
            scale = size / max(h, w)
            img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))),
                             interpolation=cv2.INTER_AREA)
        if img.ndim == 2:
            img = img[..., None]
        else:
            img = img[..., ::-1]  # OpenCV reads BGR; the demo works in RGB
        if shape is not None and img.shape != shape:
            raise SystemExit(f"--frames: {p.name} is {img.shape[1]}x{img.shape[0]}, the first "
                             f"frame is {shape[1]}x{shape[0]}; use --size or equal frames")
        shape = img.shape
        frames.append(img.transpose(2, 0, 1))
    return np.stack(frames).astype(np.float32) / 255.0


def to_grey_uint8(frame):
    """(C, H, W) float in [0, 1] -> (H, W) uint8, the input Farneback expects."""
    img = np.clip(frame * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    if img.shape[2] == 1:
        return np.ascontiguousarray(img[..., 0])
    return _cv2().cvtColor(np.ascontiguousarray(img), _cv2().COLOR_RGB2GRAY)


def farneback(a, b):
    """Dense flow from grey frame a to grey frame b as (2, H, W): channel 0 = x, 1 = y.

    OpenCV's convention, a(y, x) ~ b(y + flow_y, x + flow_x), is the stnls one: the flow
    at a pixel of frame a points to where its content is in frame b.
    """
    cv2 = _cv2()
    flow = cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=3, winsize=15,
                                        iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
    return flow.transpose(2, 0, 1).astype(np.float32)


def video_flows(video):
    """Forward and backward flows of a (T, C, H, W) video, each (1, T, 2, H, W).

    fflow[:, t] points from frame t to t+1 and bflow[:, t] from t to t-1; the last frame's
    fflow and the first frame's bflow have no neighbour and stay zero.
    """
    T, _, H, W = video.shape
    grey = [to_grey_uint8(f) for f in video]
    fflow = np.zeros((1, T, 2, H, W), np.float32)
    bflow = np.zeros((1, T, 2, H, W), np.float32)
    for t in range(T - 1):
        fflow[0, t] = farneback(grey[t], grey[t + 1])
        bflow[0, t + 1] = farneback(grey[t + 1], grey[t])
    return fflow, bflow
