#!/usr/bin/env python3
"""WebP's rate-distortion curve on the first N images of a folder, for `ncodec bench --reference`.

Builds without the `anchors` feature (the libtorch route's, scripts/tch.sh) cannot run the
WebP anchor themselves; this runs libwebp through Pillow at the anchor's settings (lossy,
method 4, qualities 5..95, as src/bench/anchors.rs) and writes the curve in CompressAI's
schema: bpp and RGB PSNR per quality, each the mean over the images (PSNR per image first).

    python3 scripts/webp_reference.py ../shared/datasets/kodak 6 webp6.json
    ncodec bench --codec none --anchors none --reference run/ncodec-overfit-medium.json \
        --reference webp6.json --bd-anchor webp

Needs Pillow and numpy (the venv of scripts/tch.sh has both).
"""
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image

QUALITIES = [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    folder, limit, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")[:limit]
    if not images:
        sys.exit(f"no .png images in {folder}")
    bpp, quality = [], []
    for q in QUALITIES:
        rates, psnrs = [], []
        for path in images:
            img = Image.open(path).convert("RGB")
            buf = io.BytesIO()
            img.save(buf, format="WEBP", quality=q, method=4)
            back = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
            rates.append(len(buf.getvalue()) * 8 / (img.width * img.height))
            psnrs.append(psnr(np.asarray(img), np.asarray(back)))
        bpp.append(float(np.mean(rates)))
        quality.append(float(np.mean(psnrs)))
        print(f"q{q}: {bpp[-1]:.4f} bpp, {quality[-1]:.2f} dB", file=sys.stderr)
    names = ", ".join(p.name for p in images)
    out.write_text(
        json.dumps(
            {
                "name": "webp",
                "description": f"libwebp through Pillow, lossy, method 4, quality 5..95; means over {len(images)} images ({names})",
                "results": {"bpp": bpp, "psnr-rgb": quality, "setting": QUALITIES},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
