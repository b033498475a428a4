#!/usr/bin/env bash
# JPEG anchor on a folder of PNGs with libjpeg-turbo's cjpeg/djpeg (Debian: libjpeg-turbo-progs),
# 4:2:0, optimized Huffman tables. Prints one line per quality: mean bpp (file bytes), mean
# PSNR-RGB and MS-SSIM-RGB over the images (per-image averages), measured with `ncodec metrics`.
# Usage: scripts/jpeg-anchor.sh KODAK_DIR [QUALITIES...]
set -euo pipefail
dir=${1:?usage: jpeg-anchor.sh DIR [Q...]}; shift
qs=${*:-10 20 30 40 50 60 70 80 90}
ncodec=${NCODEC:-target/release/ncodec}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for q in $qs; do
    tb=0; tp=0; ts=0; n=0
    for f in "$dir"/*.png; do
        "$ncodec" convert "$f" "$tmp/in.bmp"
        cjpeg -quality "$q" -optimize -outfile "$tmp/a.jpg" "$tmp/in.bmp"
        djpeg -outfile "$tmp/a.ppm" "$tmp/a.jpg"
        read -r w h < <(python3 -c "import struct,sys;d=open(sys.argv[1],'rb').read(24);print(*struct.unpack('>II',d[16:24]))" "$f")
        bytes=$(stat -c %s "$tmp/a.jpg")
        read -r _ p _ s < <("$ncodec" metrics "$f" "$tmp/a.ppm")
        tb=$(python3 -c "print($tb + $bytes*8/($w*$h))"); tp=$(python3 -c "print($tp + $p)"); ts=$(python3 -c "print($ts + $s)"); n=$((n+1))
    done
    python3 -c "print('jpeg q$q bpp %.4f psnr %.3f ms_ssim %.5f' % ($tb/$n, $tp/$n, $ts/$n))"
done
