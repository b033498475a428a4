#!/usr/bin/env bash
# Training throughput on this machine, one run, side by side: ncodec on each route given
# (default: cpu, i.e. burn-flex) and the same model in plain PyTorch on the CPU.
#
#   scripts/throughput.sh [--routes "cpu wgpu"] [--batch 8] [--crop 128] [--steps 10] [--warmup 3]
#                         [--python python3] [--bin target/release/ncodec] [--out results.jsonl]
#
# Model: mean-scale N=96 M=160 (the issue's yardstick). Data: ../shared/datasets/train
# (or $NCODEC_DATA/train); PyTorch reads the same photos. Prints a Markdown table with each
# row's crops/s as a ratio to PyTorch fp32. The libtorch route needs the tch build:
#   scripts/tch.sh build && scripts/throughput.sh --bin target/tch/release/ncodec --routes "cpu tch" --python <venv>/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
routes=cpu batch=8 crop=128 steps=10 warmup=3 python=python3 bin=target/release/ncodec out=""
while (($#)); do
    case $1 in
        --routes) routes=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --crop) crop=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) sed -n '2,12p' "$0"; exit 2 ;;
    esac
done
data=${NCODEC_DATA:-../shared/datasets}/train
[[ -x $bin ]] || cargo build --release --quiet --bin ncodec
# The tch route loads libtorch from the venv that scripts/tch.sh builds against.
if [[ " $routes " == *" tch "* ]]; then eval "$(scripts/tch.sh env)"; fi
jsonl=${out:-$(mktemp)}
for route in $routes; do
    "$bin" train --bench "$steps" --warmup "$warmup" --backend "$route" --codec mean-scale --n 96 --m 160 \
        --batch "$batch" --crop "$crop" --data "$data" --bench-json "$jsonl.tmp"
    sed "s/^{/{\"route\":\"$route\",/" "$jsonl.tmp" >>"$jsonl"
    rm -f "$jsonl.tmp"
done
if "$python" -c "import torch" 2>/dev/null; then
    "$python" scripts/torch_train_bench.py --device cpu --batch "$batch" --crop "$crop" --steps "$steps" --warmup "$warmup" --data "$data" --json "$jsonl"
else
    echo "no PyTorch for $python (pip install torch numpy pillow): ncodec rows only" >&2
fi
python3 scripts/throughput_table.py "$jsonl"
[[ -n $out ]] || rm -f "$jsonl"
