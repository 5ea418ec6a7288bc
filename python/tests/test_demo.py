"""The `stnls-demo` script runs end to end on the CPU, writes its figure, and shows the
flow-guided search aligning frames better than the search without flow."""

import re

import pytest

pytest.importorskip("cv2")
pytest.importorskip("skimage")

from stnls import demo  # noqa: E402


def _table(out):
    """{method: (psnr_db, seconds)} from the demo's printed table."""
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(no flow|with flow)\s+([-\d.]+|inf)\s+([\d.]+)\s*$", line)
        if m:
            rows[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return rows


def test_demo_synthetic(tmp_path, capsys):
    out = tmp_path / "d.png"
    assert demo.main(["--out", str(out), "--size", "64", "--seed", "1"]) == 0
    assert out.is_file() and out.stat().st_size > 0
    rows = _table(capsys.readouterr().out)
    assert set(rows) == {"no flow", "with flow"}
    # The default motion (6.3, -5.4) px/frame lies outside the ws=9 window (half = 4), so
    # only the search that follows the flow reaches the true match.
    assert rows["with flow"][0] > rows["no flow"][0] + 3.0


def test_demo_frames_folder(tmp_path, capsys):
    cv2 = pytest.importorskip("cv2")
    from stnls._demo_video import synthetic_video

    _, noisy = synthetic_video(size=64, nframes=3)
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, f in enumerate(noisy):
        img = (f.transpose(1, 2, 0)[..., ::-1] * 255.0).round().astype("uint8")
        assert cv2.imwrite(str(folder / f"{t:03d}.png"), img)
    out = tmp_path / "f.png"
    assert demo.main(["--frames", str(folder), "--out", str(out)]) == 0
    assert out.is_file()
    rows = _table(capsys.readouterr().out)
    assert set(rows) == {"no flow", "with flow"}
    assert rows["with flow"][0] > rows["no flow"][0]
