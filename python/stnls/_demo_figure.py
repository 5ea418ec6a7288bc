"""The `stnls-demo` figure: a labelled montage of the frames, both alignments and their
errors, drawn with OpenCV only (no plotting library)."""

import numpy as np

from ._demo_video import _cv2

LABEL_H = 22  # height of the label strip above each row, in pixels
ERROR_GAIN = 4.0  # errors are small; scale them so that they are visible


def _tile(frame, scale):
    """(C, H, W) float in [0, 1] -> (H*scale, W*scale, 3) uint8 BGR."""
    img = np.clip(frame.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    img = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[..., ::-1]
    if scale > 1:  # nearest neighbour keeps the pixels honest on small frames
        img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    return np.ascontiguousarray(img)


def _label(width, text):
    cv2 = _cv2()
    strip = np.full((LABEL_H, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (4, LABEL_H - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                cv2.LINE_AA)
    return strip


def montage(rows, path):
    """Write rows = [(label, (T, C, H, W) float in [0, 1]), ...] as one PNG at `path`.

    Each row is the T frames side by side under its label strip.
    """
    cv2 = _cv2()
    W = rows[0][1].shape[-1]
    scale = max(1, -(-128 // W))  # small frames are enlarged to about 128 px or more
    gap = 2
    blocks = []
    for text, frames in rows:
        tiles = [_tile(f, scale) for f in frames]
        sep = np.full((tiles[0].shape[0], gap, 3), 255, np.uint8)
        line = np.concatenate([x for t in tiles for x in (t, sep)][:-1], axis=1)
        blocks += [_label(line.shape[1], text), line]
    img = np.concatenate(blocks, axis=0)
    if not cv2.imwrite(str(path), img):
        raise SystemExit(f"--out: cannot write {path}")
    return img.shape


def error_image(a, b):
    """|a - b| scaled by ERROR_GAIN, clipped to [0, 1], for display."""
    return np.clip(np.abs(a - b) * ERROR_GAIN, 0.0, 1.0)
