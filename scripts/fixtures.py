"""Independent reference values for ncodec's metric tests (run once, results pinned in
tests/metrics_reference.rs). Needs numpy and scipy only:

    python3 -m venv /tmp/v && /tmp/v/bin/pip install numpy scipy && /tmp/v/bin/python scripts/fixtures.py

MS-SSIM follows pytorch-msssim's definition (the one CompressAI reports): 11-tap Gaussian
(sigma 1.5), valid filtering, K1=0.01, K2=0.03, data range 255, relu on cs/ssim, 5 scales with
weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), avg_pool2d(2, padding=size%2) between scales,
mean over channels. BD-rate/BD-PSNR follow Bjontegaard with scipy's PchipInterpolator and
numerical integration (scipy.integrate.quad)."""
import numpy as np
from scipy.signal import convolve2d
from scipy.interpolate import PchipInterpolator
from scipy.integrate import quad


def image_pair(w, h):
    x, y = np.meshgrid(np.arange(w), np.arange(h))
    ref = np.stack([(x * 7 + y * 13 + c * 29) % 256 for c in range(3)], -1).astype(np.float64)
    noise = np.stack([((x * y + 3 * c) % 7) - 3 for c in range(3)], -1)
    blur = np.stack([((x // 4 + y // 4 + c) % 5) * 2 for c in range(3)], -1)
    dist = np.clip(ref + noise + blur, 0, 255)
    return ref, dist


def gauss():
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    return g / g.sum()


def filt(x):
    g = gauss()
    x = convolve2d(x, g[None, :], mode="valid")
    return convolve2d(x, g[:, None], mode="valid")


def ssim_cs(a, b):
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ma, mb = filt(a), filt(b)
    va, vb, cov = filt(a * a) - ma ** 2, filt(b * b) - mb ** 2, filt(a * b) - ma * mb
    cs = (2 * cov + c2) / (va + vb + c2)
    s = (2 * ma * mb + c1) / (ma ** 2 + mb ** 2 + c1) * cs
    return s.mean(), cs.mean()


def pool(x):
    h, w = x.shape
    ph, pw = h % 2, w % 2
    p = np.pad(x, ((ph, ph), (pw, pw)))
    hh, ww = (p.shape[0] - 2) // 2 + 1, (p.shape[1] - 2) // 2 + 1
    return (p[0:2 * hh:2, 0:2 * ww:2] + p[1:2 * hh:2, 0:2 * ww:2] + p[0:2 * hh:2, 1:2 * ww:2] + p[1:2 * hh:2, 1:2 * ww:2]) / 4


def ms_ssim(ref, dist):
    weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    vals = []
    for c in range(3):
        a, b = ref[..., c], dist[..., c]
        out = 1.0
        for i, wt in enumerate(weights):
            s, cs = ssim_cs(a, b)
            if i == len(weights) - 1:
                out *= max(s, 0) ** wt
            else:
                out *= max(cs, 0) ** wt
                a, b = pool(a), pool(b)
        vals.append(out)
    return float(np.mean(vals))


def psnr(ref, dist):
    return float(10 * np.log10(255 ** 2 / np.mean((ref - dist) ** 2)))


def bd(anchor, test, rate_axis):
    if rate_axis:  # BD-rate: ln(rate) as a function of quality
        xa, ya = [q for r, q in anchor], [np.log(r) for r, q in anchor]
        xt, yt = [q for r, q in test], [np.log(r) for r, q in test]
    else:
        xa, ya = [np.log(r) for r, q in anchor], [q for r, q in anchor]
        xt, yt = [np.log(r) for r, q in test], [q for r, q in test]
    oa, ot = np.argsort(xa), np.argsort(xt)
    pa = PchipInterpolator(np.array(xa)[oa], np.array(ya)[oa])
    pt = PchipInterpolator(np.array(xt)[ot], np.array(yt)[ot])
    lo, hi = max(min(xa), min(xt)), min(max(xa), max(xt))
    d = (quad(pt, lo, hi, epsabs=1e-13, epsrel=1e-13)[0] - quad(pa, lo, hi, epsabs=1e-13, epsrel=1e-13)[0]) / (hi - lo)
    return (np.exp(d) - 1) * 100 if rate_axis else d


if __name__ == "__main__":
    for w, h in [(256, 200), (181, 163)]:
        ref, dist = image_pair(w, h)
        print(f"image_pair({w}, {h}): psnr {psnr(ref, dist):.12f} ms_ssim {ms_ssim(ref, dist):.12f}")
    jpeg = [(0.2578, 26.664), (0.4505, 29.144), (0.6101, 30.491), (0.7433, 31.422), (0.8692, 32.174), (1.0049, 32.908)]
    test = [(0.21, 27.9), (0.33, 29.8), (0.52, 31.9), (0.80, 34.1), (1.12, 35.9)]
    print(f"bd_rate {bd(jpeg, test, True):.12f} bd_psnr {bd(jpeg, test, False):.12f}")
