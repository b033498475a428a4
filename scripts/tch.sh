#!/usr/bin/env bash
# The libtorch route on this CPU: burn-tch (cargo feature `tch`) over the libtorch that the
# PyPI `torch` 2.9.0 wheel carries. On this 2-core machine it trains about 2.5x faster than
# burn-flex (README: training throughput); flex stays the default because this route needs a
# ~7 GB Python install that a plain set-up should not pull.
#
#   scripts/tch.sh build        venv with torch==2.9.0 (once), then the lean build with tch:
#                               target/tch/release/ncodec (features flex, tch; no FFmpeg)
#   scripts/tch.sh env          prints the export that lets the binary find libtorch
#   scripts/tch.sh run ARGS...  runs target/tch/release/ncodec ARGS with libtorch found, e.g.
#                               scripts/tch.sh run train --backend tch --codec mlic ...
#
# NCODEC_TORCH_VENV (default ~/.cache/ncodec/torch-2.9.0) is where the venv lives.
set -euo pipefail
cd "$(dirname "$0")/.."
# burn-tch 0.22 wraps tch 0.22, which is generated against libtorch 2.9.0: other libtorch
# versions fail at load (C++ symbols change between releases).
TORCH_VERSION=2.9.0
venv=${NCODEC_TORCH_VENV:-$HOME/.cache/ncodec/torch-$TORCH_VERSION}
bin=target/tch/release/ncodec

torch_lib() {
    "$venv/bin/python" -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"
}

case ${1:-} in
    build)
        if ! "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
            python3 -m venv "$venv"
            "$venv/bin/pip" install -q "torch==$TORCH_VERSION" numpy pillow
        fi
        PATH=$venv/bin:$PATH LIBTORCH_USE_PYTORCH=1 cargo build --release --no-default-features --features flex,tch,tools \
            --target-dir target/tch --bin ncodec
        echo "built $bin; run it through: scripts/tch.sh run <ncodec arguments>"
        ;;
    env)
        echo "export LD_LIBRARY_PATH=$(torch_lib)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        ;;
    run)
        shift
        [[ -x $bin ]] || { echo "tch: no $bin: run scripts/tch.sh build first" >&2; exit 1; }
        LD_LIBRARY_PATH=$(torch_lib)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} exec "$bin" "$@"
        ;;
    *) sed -n '2,13p' "$0"; exit 2 ;;
esac
