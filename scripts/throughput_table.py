#!/usr/bin/env python3
"""Markdown table of training-throughput results (JSON lines from `ncodec train --bench
--bench-json` and scripts/torch_train_bench.py --json), with each row's throughput as a ratio
to PyTorch fp32 on the same model, batch and crop where the file has that row."""

import json
import sys


def main():
    rows = [json.loads(line) for path in sys.argv[1:] for line in open(path) if line.strip()]
    key = lambda r: (r["codec"], r["n"], r["m"], r["transforms"], r["batch"], r["crop"])
    yardstick = {key(r): r["crops_per_s"] for r in rows if r["backend"].startswith("pytorch") and r["backend"].endswith(" fp32")}
    print("| route | model | batch | s/step (median; min–max) | crops/s | vs PyTorch fp32 |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        ref = yardstick.get(key(r))
        ratio = f"{r['crops_per_s'] / ref:.2f}x" if ref else "–"
        name = r["backend"] if "route" not in r else f"ncodec {r['route']} ({r['backend']})"
        model = f"{r['codec']} N={r['n']} M={r['m']}" + (", residual" if "residual" in r["transforms"] else "")
        print(f"| {name} | {model} | {r['batch']} of {r['crop']}² | {r['median_s']:.4f} ({r['min_s']:.4f}–{r['max_s']:.4f}) | {r['crops_per_s']:.2f} | {ratio} |")
    hardware = sorted({r["hardware"] for r in rows})
    print()
    for h in hardware:
        print(f"- {h}")


if __name__ == "__main__":
    main()
