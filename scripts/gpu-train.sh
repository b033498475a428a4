#!/usr/bin/env bash
# One GPU window, prepared here and spent there: pack, run, land.
#
#   scripts/gpu-train.sh pack [--codec mlic] [--minutes M] [--batch B] [--data-mib D] [--seed S]
#       here: builds the lean binary (no FFmpeg, no anchor codecs; flex + wgpu/Vulkan with
#       SPIR-V kernels, autotune and fusion on), packs it (xz), the Vulkan loader and a subset
#       of the training photos (downscaled JPEGs filling what the 64 MiB carry limit leaves; a
#       different subset each day) into .gpu/, and prints the pack size and the device call:
#         run(command="bash scripts/gpu-train.sh remote", carry=[".gpu"], timeout_s=600)
#       The starting weights are the shipped codecs/<codec>/weights.ncw, which travel with the tree.
#   scripts/gpu-train.sh remote
#       there (repository root, $OUT set): a throughput probe of each route (vulkan; mean-scale
#       N=96 M=160, batch 8 of 256x256) and of PyTorch (fp32, TF32, bf16) on the same card,
#       then training of the codec on the fastest route until the deadline; leaves in $OUT:
#       throughput.jsonl, throughput.md, weights.ncw (fp16), state.json, log.csv, remote.log. (Adam's state of mlic is ~50 MB and does not fit what comes back.)
#   scripts/gpu-train.sh land DIR [--if-better PCT]
#       here: DIR holds what the run brought back. Appends the throughput table to
#       assets/gpu-throughput.md and ships the weights with `ncodec ship --if-better PCT`
#       (default 1): Kodak from real bytes, the zoo's weights replaced only when better.
#   scripts/gpu-train.sh --dry-run
#       all three on this CPU with a tiny pack and a few seconds of training (flex route);
#       the weights it brings back are measured with `ncodec bench --weights` instead of shipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=.gpu
LIMIT_MIB=64

die() { echo "gpu-train: $*" >&2; exit 1; }
mib() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 2**20:.1f}')" "$1"; }

# Bytes of what a device call sends: the tracked tree, untracked files git does not ignore,
# and the carried pack.
tree_bytes() {
    git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}'
}

lean_binary() {
    # NCODEC_GPU_BIN: pack a binary already built instead (CI rehearses the packing with the
    # default build it has just tested, rather than compiling burn a second time).
    if [[ -n ${NCODEC_GPU_BIN:-} ]]; then
        [[ -x $NCODEC_GPU_BIN ]] || die "NCODEC_GPU_BIN=$NCODEC_GPU_BIN is not an executable"
        echo "$NCODEC_GPU_BIN"
        return
    fi
    # No `cuda`: cubecl-cuda's build downloads an LLVM bundle (tracel-llvm) from outside the
    # package registries, which this workplace cannot reach. The default target folder, so
    # the dependencies both builds share compile once (cargo keeps each feature set's
    # artifacts); target/release/ncodec is the lean binary until the next default build,
    # which `land` can use as well (it measures with --anchors none and ships).
    local dir=${NCODEC_GPU_TARGET_DIR:-target}
    cargo build --release --quiet --no-default-features --features flex,vulkan,tools --target-dir "$dir" --bin ncodec >&2
    echo "$dir/release/ncodec"
}

cmd_pack() {
    local codec=mlic minutes=6.5 batch=16 data_mib=auto dry=0 seed=$(($(date -u +%s) / 86400))
    while (($#)); do
        case $1 in
            --codec) codec=$2; shift 2 ;;
            --minutes) minutes=$2; shift 2 ;;
            --batch) batch=$2; shift 2 ;;
            --data-mib) data_mib=$2; shift 2 ;;
            --seed) seed=$2; shift 2 ;;
            --dry-run) dry=1; shift ;;
            *) die "pack: unknown option $1" ;;
        esac
    done
    local card=codecs/$codec/card.toml weights=codecs/$codec/weights.ncw
    [[ -f $weights && -f $card ]] || die "no shipped $codec in codecs/ to start from"
    local data=${NCODEC_DATA:-../shared/datasets}/train
    [[ -d $data ]] || die "no training photos at $data (set NCODEC_DATA)"
    grep -qx '/.gpu/' .gitignore || die ".gpu/ must be ignored by git (.gitignore)"

    [[ -n ${NCODEC_GPU_BIN:-} ]] || echo "building the lean binary (features flex, vulkan, tools)" >&2
    local bin
    bin=$(lean_binary)
    rm -rf "$PACK"
    mkdir -p "$PACK/data" "$PACK/debs"
    strip -o "$PACK/ncodec" "$bin"
    xz -T2 -9 -f "$PACK/ncodec"
    # The Vulkan loader: the GPU machine has NVIDIA's driver but no libvulkan.so.1.
    (cd "$PACK/debs" && apt-get download libvulkan1 >/dev/null 2>&1) || echo "warning: could not download libvulkan1 (the vulkan route may not start)" >&2
    if [[ $data_mib == auto ]]; then
        # What the carry limit leaves, less 0.5 MiB of slack.
        data_mib=$(python3 -c "import sys; print(f'{(float(sys.argv[1]) * 2**20 - int(sys.argv[2]) - int(sys.argv[3])) / 2**20 - 0.5:.1f}')" "$LIMIT_MIB" "$(tree_bytes)" "$(du -sb "$PACK" | cut -f1)")
    fi
    # Downscaled JPEGs, a different subset each day (what fits is a small part of the set).
    "$bin" subset --data "$data" --out "$PACK/data" --mib "$data_mib" --seed "$seed"

    # The model and recipe the shipped card records (architecture N, M and transforms).
    python3 - "$card" "$codec" "$minutes" "$batch" "$dry" "$seed" >"$PACK/job.env" <<'EOF'
import re, sys, tomllib
card, codec, minutes, batch, dry, seed = sys.argv[1:]
c = tomllib.load(open(card, "rb"))
arch = c["architecture"]
n, m = re.search(r"N=(\d+)", arch).group(1), re.search(r"M=(\d+)", arch).group(1)
residual = "residual" in arch
dry = dry == "1"
print(f"CODEC={codec}")
print(f"N={n}")
print(f"M={m}")
print(f"TRANSFORMS={'gdn-residual' if residual else 'gdn'}")
print(f"RESIDUAL_LR_SCALE={10 if residual else 1}")
print(f"INIT=codecs/{codec}/weights.ncw")
print(f"LR=2e-5")
print(f"SUBSET_SEED={seed}")
print(f"TRAIN_BATCH={2 if dry else batch}")
print(f"TRAIN_CROP={128 if dry else 256}")
print(f"TRAIN_MINUTES={0.05 if dry else minutes}")
# The comparison the issue asks for: mean-scale N=96 M=160, batch 8 of 256x256.
print(f"PROBE_BATCH={2 if dry else 8}")
print(f"PROBE_CROP={128 if dry else 256}")
print(f"PROBE_STEPS={2 if dry else 10}")
print(f"PROBE_WARMUP={1 if dry else 5}")
# wgpu on NVIDIA's Vulkan driver compiles SPIR-V in this build, the same kernels as `vulkan`.
print(f"ROUTES='{'cpu' if dry else 'vulkan'}'")
print(f"DEADLINE_S={120 if dry else 570}")
EOF
    local tree
    tree=$(tree_bytes)
    local pack_bytes
    pack_bytes=$(du -sb "$PACK" | cut -f1)
    echo "pack: $(mib $((tree + pack_bytes))) MiB in all (working tree $(mib "$tree") MiB + $PACK $(mib "$pack_bytes") MiB: binary $(mib "$(stat -c %s "$PACK/ncodec.xz")") MiB xz, photos $(mib "$(du -sb "$PACK/data" | cut -f1)") MiB); limit $LIMIT_MIB MiB"
    ((tree + pack_bytes <= LIMIT_MIB * 1024 * 1024)) || die "the pack is over the ${LIMIT_MIB} MiB a device call carries: lower --data-mib"
    cat "$PACK/job.env" | sed 's/^/  /'
    echo 'device call: run(command="bash scripts/gpu-train.sh remote", carry=[".gpu"], timeout_s=600), then: scripts/gpu-train.sh land <files_at>'
}

cmd_remote() {
    local out=${OUT:?remote runs where \$OUT is set (the device machine, or --dry-run)}
    local start=$SECONDS
    [[ -f $PACK/job.env ]] || die "no $PACK/job.env: run scripts/gpu-train.sh pack here and carry $PACK"
    # shellcheck disable=SC1091
    source "$PACK/job.env"
    exec > >(tee -a "$out/remote.log") 2>&1
    local bin=/tmp/ncodec-gpu
    xz -dc "$PACK/ncodec.xz" >"$bin" 2>/dev/null || python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" "$PACK/ncodec.xz" "$bin"
    chmod +x "$bin"
    if ! ldconfig -p | grep -q libvulkan.so.1 && compgen -G "$PACK/debs/*.deb" >/dev/null; then
        for f in "$PACK"/debs/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    [[ -f $icd ]] && export VK_DRIVER_FILES=$icd
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    local model=(--n 96 --m 160)
    local jsonl=$out/throughput.jsonl
    for route in $ROUTES; do
        echo "== probe: ncodec $route, mean-scale N=96 M=160, batch $PROBE_BATCH of ${PROBE_CROP}x$PROBE_CROP"
        if timeout 150 "$bin" train --bench "$PROBE_STEPS" --warmup "$PROBE_WARMUP" --backend "$route" --codec mean-scale "${model[@]}" \
            --batch "$PROBE_BATCH" --crop "$PROBE_CROP" --data "$PACK/data" --bench-json "$out/probe-$route.json"; then
            sed "s/^{/{\"route\":\"$route\",/" "$out/probe-$route.json" >>"$jsonl"
        else
            echo "route $route did not run (exit $?)"
        fi
        rm -f "$out/probe-$route.json"
    done
    if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
        for p in fp32 tf32 bf16; do
            echo "== probe: PyTorch cuda $p"
            timeout 120 python3 scripts/torch_train_bench.py --device cuda --precision "$p" --batch "$PROBE_BATCH" --crop "$PROBE_CROP" \
                --steps 20 --warmup 5 --data "$PACK/data" --json "$jsonl" || echo "PyTorch $p did not run"
        done
    elif python3 -c "import torch" 2>/dev/null; then
        timeout 300 python3 scripts/torch_train_bench.py --device cpu --batch "$PROBE_BATCH" --crop "$PROBE_CROP" --steps "$PROBE_STEPS" \
            --warmup "$PROBE_WARMUP" --data "$PACK/data" --json "$jsonl" || echo "PyTorch cpu did not run"
    fi
    [[ -s $jsonl ]] || die "no route ran"
    python3 scripts/throughput_table.py "$jsonl" | tee "$out/throughput.md"
    local best
    best=$(python3 -c "
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rows = [r for r in rows if 'route' in r]
print(max(rows, key=lambda r: r['crops_per_s'])['route'] if rows else '')" "$jsonl")
    [[ -n $best ]] || die "no ncodec route ran"
    # Training gets what is left of the deadline, less the export.
    local minutes
    minutes=$(python3 -c "import sys; print(f'{min(float(sys.argv[1]), max(0.05, (float(sys.argv[2]) - float(sys.argv[3]) - 40) / 60)):.2f}')" "$TRAIN_MINUTES" "$DEADLINE_S" $((SECONDS - start)))
    echo "== training $CODEC on $best for $minutes min (batch $TRAIN_BATCH of ${TRAIN_CROP}x$TRAIN_CROP, lr $LR, from $INIT)"
    local ckpt=/tmp/ncodec-gpu-ckpt
    rm -rf "$ckpt"
    "$bin" train --backend "$best" --codec "$CODEC" --n "$N" --m "$M" --transforms "$TRANSFORMS" --residual-lr-scale "$RESIDUAL_LR_SCALE" \
        --init-from "$INIT" --batch "$TRAIN_BATCH" --crop "$TRAIN_CROP" --lr "$LR" --data "$PACK/data" --ckpt-dir "$ckpt" \
        --minutes "$minutes" --checkpoint-every 1000000
    "$bin" export --ckpt-dir "$ckpt" -o "$out/weights.ncw"
    cp "$ckpt/state.json" "$ckpt/log.csv" "$out/"
    echo "== done in $((SECONDS - start)) s"
}

cmd_land() {
    local dir=${1:?land DIR}
    shift
    local if_better=1 dry=0
    while (($#)); do
        case $1 in
            --if-better) if_better=$2; shift 2 ;;
            --dry-run) dry=1; shift ;;
            *) die "land: unknown option $1" ;;
        esac
    done
    [[ -f $dir/weights.ncw && -f $dir/state.json ]] || die "$dir lacks weights.ncw or state.json: the run did not finish (see $dir/remote.log)"
    # shellcheck disable=SC1091
    source "$PACK/job.env"
    local ncodec=target/release/ncodec
    [[ -x $ncodec ]] || cargo build --release --quiet --bin ncodec
    if ((dry)); then
        python3 scripts/throughput_table.py "$dir/throughput.jsonl"
        local kodak=${NCODEC_DATA:-../shared/datasets}/kodak
        if [[ -d $kodak ]]; then
            "$ncodec" bench --codec "$CODEC" --weights "$dir/weights.ncw" --data-dir "$kodak" --limit 1 -q 1 --anchors none --out "$dir/bench"
        else
            echo "no Kodak at $kodak: the weights were not measured"
        fi
        return
    fi
    local ckpt=ckpt/gpu-$(date -u +%Y%m%d-%H%M)
    mkdir -p "$ckpt"
    cp "$dir/weights.ncw" "$dir/state.json" "$ckpt/"
    cp "$dir/log.csv" "$ckpt/" 2>/dev/null || true
    {
        echo
        echo "## $(date -u +%Y-%m-%d) $(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['hardware'])" "$dir/state.json")"
        echo
        python3 scripts/throughput_table.py "$dir/throughput.jsonl"
    } >>assets/gpu-throughput.md
    echo "throughput table appended to assets/gpu-throughput.md; checkpoint in $ckpt"
    local description
    description=$(python3 -c "import sys, tomllib; print(tomllib.load(open(sys.argv[1], 'rb'))['description'])" "codecs/$CODEC/card.toml")
    "$ncodec" ship --ckpt-dir "$ckpt" --name "$CODEC" --if-better "$if_better" --description "$description" \
        --command "scripts/gpu-train.sh pack --codec $CODEC; device run: bash scripts/gpu-train.sh remote (route and batch: assets/gpu-throughput.md); scripts/gpu-train.sh land" \
        --lr-schedule "constant $LR (residual stages x$RESIDUAL_LR_SCALE), fresh Adam, from the shipped weights"
}

case ${1:-} in
    pack) shift; cmd_pack "$@" ;;
    remote) shift; cmd_remote "$@" ;;
    land) shift; cmd_land "$@" ;;
    --dry-run)
        cmd_pack --dry-run --data-mib 1
        out=$(mktemp -d)
        trap 'rm -rf "$out"' EXIT
        (OUT=$out cmd_remote)
        cmd_land "$out" --dry-run
        echo "dry run passed: pack, remote (cpu) and land"
        ;;
    *) sed -n '2,22p' "$0"; exit 2 ;;
esac
