#!/usr/bin/env python3
"""Training throughput of ncodec's mean-scale model in plain PyTorch: the yardstick for
`ncodec train --bench` (see scripts/throughput.sh, which runs both side by side).

Same architecture and step as src/models (mean-scale, Minnen 2018, with per-quality gain
units): g_a/g_s = four 5x5 stride-2 (transposed) convolutions with GDN/IGDN, h_a/h_s as
CompressAI's MeanScaleHyperprior, a factorized entropy bottleneck on z (filters 3,3,3), a
Gaussian conditional on y with additive uniform noise and straight-through rounding for g_s;
loss = lambda_q * 255^2 * MSE + bpp with q drawn per sample; Adam (eps 1e-8), gradient norm
clipped at 1. Crops come from the training photos (random 256x256 and flips), as in
`ncodec train`; without --data, from random pixels (speed does not depend on them).

Prints one line and, with --json, appends a JSON line with the fields ncodec writes.
"""

import argparse
import glob
import json
import math
import os
import platform
import random
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

LAMBDAS = [0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800]


class GDN(nn.Module):
    def __init__(self, c, inverse=False):
        super().__init__()
        self.inverse = inverse
        self.b = nn.Parameter(torch.ones(c))
        g = torch.full((c, c), 0.01)
        g.fill_diagonal_(math.sqrt(0.1))
        self.g = nn.Parameter(g)

    def forward(self, x):
        c = x.shape[1]
        beta = self.b**2 + 1e-6
        gamma = (self.g**2).reshape(c, c, 1, 1)
        norm = torch.sqrt(F.conv2d(x * x, gamma, beta))
        return x * norm if self.inverse else x / norm


def conv(cin, cout, k=5, s=2):
    return nn.Conv2d(cin, cout, k, s, k // 2)


def deconv(cin, cout, k=5, s=2):
    return nn.ConvTranspose2d(cin, cout, k, s, k // 2, output_padding=s - 1)


class Bottleneck(nn.Module):
    """Balle 2018's factorized density (CompressAI's EntropyBottleneck), filters (3, 3, 3)."""

    def __init__(self, c, filters=(3, 3, 3), init_scale=10.0):
        super().__init__()
        f = (1,) + tuple(filters) + (1,)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices, self.biases, self.factors = nn.ParameterList(), nn.ParameterList(), nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / f[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((c, f[i + 1], f[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(c, f[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(c, f[i + 1], 1)))

    def logits(self, v):
        for i, m in enumerate(self.matrices):
            v = torch.matmul(F.softplus(m), v) + self.biases[i]
            if i < len(self.factors):
                v = v + torch.tanh(self.factors[i]) * torch.tanh(v)
        return v

    def forward(self, z):
        b, c, h, w = z.shape
        z = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower, upper = self.logits(v - 0.5), self.logits(v + 0.5)
        sign = -torch.sign(lower + upper).detach()
        lik = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs().clamp_min(1e-9)
        return z, lik.reshape(c, b, h, w).permute(1, 0, 2, 3)


def gaussian_likelihood(y, scales, means):
    scales = scales.clamp_min(0.11)
    v = (y - means).abs()
    cdf = lambda t: 0.5 * (1 + torch.erf(t * (1 / math.sqrt(2))))
    return (cdf((0.5 - v) / scales) - cdf((-0.5 - v) / scales)).clamp_min(1e-9)


def ste_round(x):
    return x + (torch.round(x) - x).detach()


class MeanScale(nn.Module):
    def __init__(self, n, m, q=len(LAMBDAS)):
        super().__init__()
        self.g_a = nn.Sequential(conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))
        self.g_s = nn.Sequential(deconv(m, n), GDN(n, True), deconv(n, n), GDN(n, True), deconv(n, n), GDN(n, True), deconv(n, 3))
        self.h_a = nn.Sequential(conv(m, n, 3, 1), nn.LeakyReLU(0.01), conv(n, n), nn.LeakyReLU(0.01), conv(n, n))
        self.h_s = nn.Sequential(deconv(n, m), nn.LeakyReLU(0.01), deconv(m, m * 3 // 2), nn.LeakyReLU(0.01), conv(m * 3 // 2, 2 * m, 3, 1))
        self.z_bottleneck = Bottleneck(n)
        self.log_gain = nn.Parameter(torch.zeros(q, m))
        self.log_inv_gain = nn.Parameter(torch.zeros(q, m))

    def forward(self, x, q):
        b, m = x.shape[0], self.log_gain.shape[1]
        y = self.g_a(x) * self.log_gain[q].exp().reshape(b, m, 1, 1)
        z_tilde, z_lik = self.z_bottleneck(self.h_a(y))
        scales, means = self.h_s(z_tilde).chunk(2, 1)
        y_lik = gaussian_likelihood(y + torch.empty_like(y).uniform_(-0.5, 0.5), scales, means)
        y_hat = ste_round(y - means) + means
        x_hat = self.g_s(y_hat * self.log_inv_gain[q].exp().reshape(b, m, 1, 1))
        return x_hat, [y_lik, z_lik]


def crops(args, device):
    """A function returning a batch [B, 3, crop, crop] in [0, 1] on `device`."""
    files = sorted(f for e in ("png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff", "webp") for f in glob.glob(os.path.join(args.data or "/nonexistent", "**", "*." + e), recursive=True))
    if not files:
        return lambda rng: torch.rand(args.batch, 3, args.crop, args.crop, device=device), "random pixels"
    import numpy as np
    from PIL import Image

    images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    images = [im for im in images if im.shape[0] >= args.crop and im.shape[1] >= args.crop]

    def batch(rng):
        out = np.empty((args.batch, args.crop, args.crop, 3), dtype=np.uint8)
        for i in range(args.batch):
            im = images[rng.randrange(len(images))]
            y0, x0 = rng.randrange(im.shape[0] - args.crop + 1), rng.randrange(im.shape[1] - args.crop + 1)
            c = im[y0 : y0 + args.crop, x0 : x0 + args.crop]
            if rng.random() < 0.5:
                c = c[:, ::-1]
            if rng.random() < 0.5:
                c = c[::-1]
            out[i] = c
        return torch.from_numpy(out).to(device).permute(0, 3, 1, 2).float().div_(255)

    return batch, f"{len(images)} photos under {args.data}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=96)
    p.add_argument("--m", type=int, default=160)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--data", help="training photos (default: random pixels)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32", help="fp32: TF32 off; tf32: TF32 matmul/conv; bf16: autocast")
    p.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's)")
    p.add_argument("--json", help="append the result as one JSON line to this file")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    tf32 = args.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(1)
    rng = random.Random(1)
    model = MeanScale(args.n, args.m).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-8)
    lambdas = torch.tensor(LAMBDAS, device=device) * 255.0**2
    batch, source = crops(args, device)
    times = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        x = batch(rng)
        q = torch.tensor([rng.randrange(len(LAMBDAS)) for _ in range(args.batch)], device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            x_hat, liks = model(x, q)
        mse = (x_hat.float() - x).pow(2).flatten(1).mean(1)
        bits = sum(l.float().log().flatten(1).sum(1) for l in liks) / -math.log(2)
        loss = (lambdas[q] * mse + bits / (args.crop * args.crop)).mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        loss_value = loss.item()  # waits for the device, as ncodec's step does
        if not math.isfinite(loss_value):
            raise SystemExit(f"loss became {loss_value} at step {i + 1}")
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    med = statistics.median(times)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    result = {
        "backend": f"pytorch {torch.__version__} {args.device} {args.precision}",
        "codec": "mean-scale",
        "n": args.n,
        "m": args.m,
        "transforms": "GDN transforms",
        "batch": args.batch,
        "crop": args.crop,
        "warmup": args.warmup,
        "steps": args.steps,
        "median_s": med,
        "min_s": min(times),
        "max_s": max(times),
        "crops_per_s": args.batch / med,
        "hardware": f"{name}, {torch.get_num_threads()} threads; data: {source}",
    }
    print(f"{result['backend']} mean-scale N={args.n} M={args.m}, batch {args.batch} of {args.crop}x{args.crop}: {med:.4f} s/step (median of {args.steps}; min {min(times):.4f}, max {max(times):.4f}), {result['crops_per_s']:.2f} crops/s")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
