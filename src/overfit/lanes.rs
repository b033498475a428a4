//! Eight pixels at a time: the lane type of the CPU fitting pass, its arithmetic, the dense
//! layers on tiles of such vectors, and the few transcendental functions it needs, written so
//! that the compiler vectorizes them.
//!
//! Kernels are generic over [`Isa`]; [`simd_kernel!`] compiles each one three times, plainly,
//! for AVX2 with fused multiply-add, and for AVX-512, and picks at run time (the default
//! x86-64 target has none of them, and the networks of this codec are too narrow for anything
//! but lanes of pixels to fill a vector register). With AVX-512 the dense layers work on
//! pairs of neighbouring lane vectors, 16 pixels per register ([`Isa::R2`]).

/// Pixels (or latents) per lane vector.
pub const LANES: usize = 8;
/// One value for each of [`LANES`] neighbouring pixels.
pub type V = [f32; LANES];

/// The vector arithmetic of one instruction set, on [`V`]s held in registers as [`Isa::R`].
/// (Plain loops over `[f32; 8]` are not enough: LLVM vectorizes across the loops around
/// them, with a shuffle per element.)
pub trait Isa: Copy {
    type R: Copy;
    fn load(v: &V) -> Self::R;
    fn store(v: &mut V, r: Self::R);
    fn splat(a: f32) -> Self::R;
    /// `a·b + c`.
    fn madd(a: Self::R, b: Self::R, c: Self::R) -> Self::R;
    fn add(a: Self::R, b: Self::R) -> Self::R;
    fn max(a: Self::R, b: Self::R) -> Self::R;
    /// `a` where `h > 0`, else 0.
    fn where_positive(h: Self::R, a: Self::R) -> Self::R;

    /// Two neighbouring lane vectors: one register on [`Wide`], a pair of `R` elsewhere.
    type R2: Copy;
    /// Whether the tile kernels should run on pairs ([`Isa::R2`]); where false, the pair
    /// operations below are never called.
    const PAIRS: bool = false;
    fn load2(v: &[V; 2]) -> Self::R2;
    fn store2(v: &mut [V; 2], r: Self::R2);
    fn splat2(a: f32) -> Self::R2;
    fn madd2(a: Self::R2, b: Self::R2, c: Self::R2) -> Self::R2;
    fn relu2(a: Self::R2) -> Self::R2;
    fn where_positive2(h: Self::R2, a: Self::R2) -> Self::R2;
    /// `g += a·b + c·d`, the two halves of the pair folded into one lane vector.
    fn accumulate2(g: &mut V, a: Self::R2, b: Self::R2, c: Self::R2, d: Self::R2);
}

/// The pair operations of an instruction set without a double-width register: each half alone.
macro_rules! pairs_of_halves {
    () => {
        type R2 = [<Self as Isa>::R; 2];
        #[inline(always)]
        fn load2(v: &[V; 2]) -> Self::R2 {
            [Self::load(&v[0]), Self::load(&v[1])]
        }
        #[inline(always)]
        fn store2(v: &mut [V; 2], r: Self::R2) {
            Self::store(&mut v[0], r[0]);
            Self::store(&mut v[1], r[1]);
        }
        #[inline(always)]
        fn splat2(a: f32) -> Self::R2 {
            [Self::splat(a); 2]
        }
        #[inline(always)]
        fn madd2(a: Self::R2, b: Self::R2, c: Self::R2) -> Self::R2 {
            [Self::madd(a[0], b[0], c[0]), Self::madd(a[1], b[1], c[1])]
        }
        #[inline(always)]
        fn relu2(a: Self::R2) -> Self::R2 {
            [Self::max(a[0], Self::splat(0.0)), Self::max(a[1], Self::splat(0.0))]
        }
        #[inline(always)]
        fn where_positive2(h: Self::R2, a: Self::R2) -> Self::R2 {
            [Self::where_positive(h[0], a[0]), Self::where_positive(h[1], a[1])]
        }
        #[inline(always)]
        fn accumulate2(g: &mut V, a: Self::R2, b: Self::R2, c: Self::R2, d: Self::R2) {
            let lo = Self::madd(c[0], d[0], Self::madd(a[0], b[0], Self::load(g)));
            Self::store(g, Self::madd(c[1], d[1], Self::madd(a[1], b[1], lo)));
        }
    };
}

/// Any CPU: lane loops, separate multiply and add.
#[derive(Debug, Clone, Copy)]
pub struct Plain;

impl Isa for Plain {
    type R = V;
    #[inline(always)]
    fn load(v: &V) -> V {
        *v
    }
    #[inline(always)]
    fn store(v: &mut V, r: V) {
        *v = r;
    }
    #[inline(always)]
    fn splat(a: f32) -> V {
        [a; LANES]
    }
    #[inline(always)]
    fn madd(a: V, b: V, c: V) -> V {
        std::array::from_fn(|l| a[l] * b[l] + c[l])
    }
    #[inline(always)]
    fn add(a: V, b: V) -> V {
        std::array::from_fn(|l| a[l] + b[l])
    }
    #[inline(always)]
    fn max(a: V, b: V) -> V {
        std::array::from_fn(|l| a[l].max(b[l]))
    }
    #[inline(always)]
    fn where_positive(h: V, a: V) -> V {
        std::array::from_fn(|l| if h[l] > 0.0 { a[l] } else { 0.0 })
    }
    pairs_of_halves!();
}

/// x86-64 with AVX2 and FMA: one register per lane vector. Only reached through
/// [`simd_kernel!`], whose wrapper enables the features these intrinsics need.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub struct Fused;

#[cfg(target_arch = "x86_64")]
mod fused {
    use super::{Fused, Isa, V};
    use std::arch::x86_64::*;

    // SAFETY (every block below): `Fused` kernels run only inside `simd_kernel!`'s
    // `#[target_feature(enable = "avx2,fma")]` wrapper, entered after the CPU was checked;
    // loads and stores are unaligned ones on whole `[f32; 8]`s.
    impl Isa for Fused {
        type R = __m256;
        #[inline(always)]
        fn load(v: &V) -> __m256 {
            unsafe { _mm256_loadu_ps(v.as_ptr()) }
        }
        #[inline(always)]
        fn store(v: &mut V, r: __m256) {
            unsafe { _mm256_storeu_ps(v.as_mut_ptr(), r) }
        }
        #[inline(always)]
        fn splat(a: f32) -> __m256 {
            unsafe { _mm256_set1_ps(a) }
        }
        #[inline(always)]
        fn madd(a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn add(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        fn max(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_max_ps(a, b) }
        }
        #[inline(always)]
        fn where_positive(h: __m256, a: __m256) -> __m256 {
            unsafe { _mm256_and_ps(a, _mm256_cmp_ps::<_CMP_GT_OQ>(h, _mm256_setzero_ps())) }
        }
        pairs_of_halves!();
    }
}

/// x86-64 with AVX-512 (F and VL): [`Fused`]'s arithmetic on single lane vectors, and pairs
/// of them in one 512-bit register, which doubles what one fused multiply-add does on CPUs
/// with full-width units (AMD Zen 5, Intel server cores). Only reached through
/// [`simd_kernel!`], whose wrapper enables the features.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub struct Wide;

#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{Fused, Isa, V, Wide};
    use std::arch::x86_64::*;

    // SAFETY (every block below): `Wide` kernels run only inside `simd_kernel!`'s
    // `#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]` wrapper, entered after the CPU
    // was checked; loads and stores are unaligned ones on whole `[[f32; 8]; 2]`s (16
    // contiguous floats).
    impl Isa for Wide {
        type R = __m256;
        #[inline(always)]
        fn load(v: &V) -> __m256 {
            Fused::load(v)
        }
        #[inline(always)]
        fn store(v: &mut V, r: __m256) {
            Fused::store(v, r)
        }
        #[inline(always)]
        fn splat(a: f32) -> __m256 {
            Fused::splat(a)
        }
        #[inline(always)]
        fn madd(a: __m256, b: __m256, c: __m256) -> __m256 {
            Fused::madd(a, b, c)
        }
        #[inline(always)]
        fn add(a: __m256, b: __m256) -> __m256 {
            Fused::add(a, b)
        }
        #[inline(always)]
        fn max(a: __m256, b: __m256) -> __m256 {
            Fused::max(a, b)
        }
        #[inline(always)]
        fn where_positive(h: __m256, a: __m256) -> __m256 {
            Fused::where_positive(h, a)
        }

        type R2 = __m512;
        const PAIRS: bool = true;
        #[inline(always)]
        fn load2(v: &[V; 2]) -> __m512 {
            unsafe { _mm512_loadu_ps(v.as_ptr().cast()) }
        }
        #[inline(always)]
        fn store2(v: &mut [V; 2], r: __m512) {
            unsafe { _mm512_storeu_ps(v.as_mut_ptr().cast(), r) }
        }
        #[inline(always)]
        fn splat2(a: f32) -> __m512 {
            unsafe { _mm512_set1_ps(a) }
        }
        #[inline(always)]
        fn madd2(a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn relu2(a: __m512) -> __m512 {
            unsafe { _mm512_max_ps(a, _mm512_setzero_ps()) }
        }
        #[inline(always)]
        fn where_positive2(h: __m512, a: __m512) -> __m512 {
            unsafe { _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(h, _mm512_setzero_ps()), a) }
        }
        #[inline(always)]
        fn accumulate2(g: &mut V, a: __m512, b: __m512, c: __m512, d: __m512) {
            unsafe {
                let t = _mm512_fmadd_ps(c, d, _mm512_mul_ps(a, b));
                let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(t)));
                let sum = _mm256_add_ps(_mm512_castps512_ps256(t), hi);
                Fused::store(g, _mm256_add_ps(Fused::load(g), sum));
            }
        }
    }
}

/// Defines `fn $name(args) -> R` that runs `$kernel::<Wide>` compiled for AVX-512 when the
/// CPU has it (and [`has_avx512`] allows it), else `$kernel::<Fused>` compiled for AVX2 + FMA
/// when the CPU has them, and `$kernel::<Plain>` otherwise. The kernel must be `#[inline(always)]`
/// (so it is compiled inside the feature-enabled wrapper) and must not spawn work; nor should
/// it pass [`Isa`] arithmetic to closures (`array::from_fn`, `fold`): a closure is a function
/// of its own, compiled without the features, and each intrinsic in it becomes a call.
macro_rules! simd_kernel {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $kernel:ident) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn wide($($arg: $ty),*) $(-> $ret)? {
                    $kernel::<$crate::overfit::lanes::Wide>($($arg),*)
                }
                if $crate::overfit::lanes::has_avx512() {
                    // SAFETY: the CPU has the features `wide` is compiled for.
                    return unsafe { wide($($arg),*) };
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn fused($($arg: $ty),*) $(-> $ret)? {
                    $kernel::<$crate::overfit::lanes::Fused>($($arg),*)
                }
                if $crate::overfit::lanes::has_avx2_fma() {
                    // SAFETY: the CPU has the features `fused` is compiled for.
                    return unsafe { fused($($arg),*) };
                }
            }
            $kernel::<$crate::overfit::lanes::Plain>($($arg),*)
        }
    };
}
pub(crate) use simd_kernel;

/// Whether this CPU runs the fused kernels (checked once, then cached by the standard library).
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Whether the kernels run on AVX-512: the CPU has it, and `NCODEC_SIMD` does not say `avx2`
/// (which keeps them on AVX2, to compare the two on one machine). Decided once per process.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn has_avx512() -> bool {
    static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WIDE.get_or_init(|| cpu_has_avx512() && std::env::var("NCODEC_SIMD").map_or(true, |v| !v.eq_ignore_ascii_case("avx2")))
}

/// Whether this CPU has what [`Wide`] kernels are compiled for (AVX-512 F and VL, AVX2, FMA).
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn cpu_has_avx512() -> bool {
    has_avx2_fma() && std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl")
}

#[inline(always)]
pub fn sum(x: &V) -> f32 {
    x.iter().sum()
}

/// Lane vectors per channel in a tile: the networks run on [`TILE`]·[`LANES`] pixels at a
/// time, channel-major (`x[c·TILE + p]`), so that a layer keeps several pixel vectors' sums in
/// registers per weight it loads, and a weight's gradient is summed over the whole tile
/// before it is written.
pub const TILE: usize = 4;

/// A dense layer on a tile: `out[j] = b[j] + Σ_i wt[i][j]·x[i]` for each of its vectors
/// (weights transposed, a row of outputs per input), then ReLU if asked.
#[inline(always)]
pub fn dense<I: Isa>(out: &mut [V], bias: &[f32], wt: &[f32], x: &[V], relu: bool) {
    columns::<I>(out, Some(bias), wt, x, relu);
}

/// `out[j] = b[j] + Σ_r m[r][j]·v[r]` on a tile (`m` row-major, as wide as `out` has
/// channels; no bias: 0), then ReLU if asked. Outputs four at a time over two vectors, two
/// at a time over four, then one: eight independent sums in registers where the widths allow.
#[inline(always)]
fn columns<I: Isa>(out: &mut [V], bias: Option<&[f32]>, m: &[f32], v: &[V], relu: bool) {
    let n = out.len() / TILE;
    let mut j = 0;
    if I::PAIRS {
        // Four outputs over the tile's two pairs: eight independent sums again.
        while j + 4 <= n {
            column_pairs::<I, 4>(out, bias, m, n, j, v, relu);
            j += 4;
        }
        while j + 2 <= n {
            column_pairs::<I, 2>(out, bias, m, n, j, v, relu);
            j += 2;
        }
        while j < n {
            column_pairs::<I, 1>(out, bias, m, n, j, v, relu);
            j += 1;
        }
        return;
    }
    while j + 4 <= n {
        column_block::<I, 4, 2>(out, bias, m, n, j, 0, v, relu);
        column_block::<I, 4, 2>(out, bias, m, n, j, 2, v, relu);
        j += 4;
    }
    while j + 2 <= n {
        column_block::<I, 2, TILE>(out, bias, m, n, j, 0, v, relu);
        j += 2;
    }
    while j < n {
        column_block::<I, 1, TILE>(out, bias, m, n, j, 0, v, relu);
        j += 1;
    }
}

/// `K` outputs of [`columns`] from column `j` on, for the tile's vectors `p0..p0 + P` (fixed
/// `K` and `P` keep the sums in registers). Each sum runs over `r` in order from the bias,
/// whatever the blocking, so results do not depend on it.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn column_block<I: Isa, const K: usize, const P: usize>(out: &mut [V], bias: Option<&[f32]>, m: &[f32], n: usize, j: usize, p0: usize, v: &[V], relu: bool) {
    // Plain loops, no closures (`array::from_fn`, `fold`): a closure is a separate function
    // compiled without the kernel's target features, and calls into it cost more than the
    // kernel.
    let mut acc = [[I::splat(0.0); P]; K];
    for k in 0..K {
        let b = I::splat(bias.map_or(0.0, |b| b[j + k]));
        acc[k] = [b; P];
    }
    let mut x = [I::splat(0.0); P];
    for (r, vr) in v.chunks_exact(TILE).enumerate() {
        // Fixed-size views: one bounds check each, not one per load.
        let vr: &[V; TILE] = vr.try_into().unwrap();
        let row: &[f32; K] = m[r * n + j..][..K].try_into().unwrap();
        for p in 0..P {
            x[p] = I::load(&vr[p0 + p]);
        }
        for k in 0..K {
            let w = I::splat(row[k]);
            for p in 0..P {
                acc[k][p] = I::madd(w, x[p], acc[k][p]);
            }
        }
    }
    for k in 0..K {
        for p in 0..P {
            let a = acc[k][p];
            I::store(&mut out[(j + k) * TILE + p0 + p], if relu { I::max(a, I::splat(0.0)) } else { a });
        }
    }
}

/// The tile's vectors `2p` and `2p + 1`.
#[inline(always)]
fn pair(t: &[V; TILE], p: usize) -> &[V; 2] {
    t[2 * p..2 * p + 2].try_into().unwrap()
}

#[inline(always)]
fn pair_mut(t: &mut [V; TILE], p: usize) -> &mut [V; 2] {
    (&mut t[2 * p..2 * p + 2]).try_into().unwrap()
}

const _: () = assert!(TILE == 4, "the pair kernels take a tile as two pairs");

/// [`column_block`] on pairs of vectors ([`Isa::PAIRS`]): `K` outputs over the whole tile.
/// Each lane's sum runs over `r` in the same order, so the results are [`column_block`]'s.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn column_pairs<I: Isa, const K: usize>(out: &mut [V], bias: Option<&[f32]>, m: &[f32], n: usize, j: usize, v: &[V], relu: bool) {
    // Plain loops, as in `column_block`.
    let mut acc = [[I::splat2(0.0); 2]; K];
    for k in 0..K {
        acc[k] = [I::splat2(bias.map_or(0.0, |b| b[j + k])); 2];
    }
    for (r, vr) in v.chunks_exact(TILE).enumerate() {
        let vr: &[V; TILE] = vr.try_into().unwrap();
        let row: &[f32; K] = m[r * n + j..][..K].try_into().unwrap();
        let x = [I::load2(pair(vr, 0)), I::load2(pair(vr, 1))];
        for k in 0..K {
            let w = I::splat2(row[k]);
            for p in 0..2 {
                acc[k][p] = I::madd2(w, x[p], acc[k][p]);
            }
        }
    }
    for k in 0..K {
        let o: &mut [V; TILE] = (&mut out[(j + k) * TILE..][..TILE]).try_into().unwrap();
        for (p, &a) in acc[k].iter().enumerate() {
            I::store2(pair_mut(o, p), if relu { I::relu2(a) } else { a });
        }
    }
}

/// A dense layer's backward on a tile, given `d` = ∂loss/∂out (already through the ReLU):
/// weight and bias gradients summed over the tile and accumulated per lane into `gw`
/// (`[out][in]`) and `gb`, and `dx = Σ_j w[j]·d[j]` (weights in their own `[out][in]`
/// layout).
#[inline(always)]
pub fn dense_backward<I: Isa>(d: &[V], x: &[V], w: &[f32], gw: &mut [V], gb: &mut [V], dx: &mut [V]) {
    let n_out = d.len() / TILE;
    let mut j = 0;
    while j + 2 <= n_out {
        if I::PAIRS {
            gradient_pairs::<I, 2>(d, x, gw, gb, j)
        } else {
            gradient_block::<I, 2>(d, x, gw, gb, j)
        }
        j += 2;
    }
    while j < n_out {
        if I::PAIRS {
            gradient_pairs::<I, 1>(d, x, gw, gb, j)
        } else {
            gradient_block::<I, 1>(d, x, gw, gb, j)
        }
        j += 1;
    }
    columns::<I>(dx, None, w, d, false);
}

/// Weight and bias gradients of outputs `j..j + K`: each `gw` entry read and written once
/// per tile, with the tile's `d` held in registers.
#[inline(always)]
fn gradient_block<I: Isa, const K: usize>(d: &[V], x: &[V], gw: &mut [V], gb: &mut [V], j: usize) {
    let n_in = x.len() / TILE;
    // Plain loops, as in `column_block`.
    let mut ds = [[I::splat(0.0); TILE]; K];
    for k in 0..K {
        let mut b = I::load(&gb[j + k]);
        for p in 0..TILE {
            ds[k][p] = I::load(&d[(j + k) * TILE + p]);
            b = I::add(b, ds[k][p]);
        }
        I::store(&mut gb[j + k], b);
    }
    let mut xs = [I::splat(0.0); TILE];
    let gw: &mut [V] = &mut gw[j * n_in..(j + K) * n_in];
    for (i, xi) in x.chunks_exact(TILE).enumerate() {
        let xi: &[V; TILE] = xi.try_into().unwrap();
        for p in 0..TILE {
            xs[p] = I::load(&xi[p]);
        }
        for k in 0..K {
            let g = &mut gw[k * n_in + i];
            let mut a = I::load(g);
            for p in 0..TILE {
                a = I::madd(ds[k][p], xs[p], a);
            }
            I::store(g, a);
        }
    }
}

/// [`gradient_block`] on pairs of vectors: the same sums, each lane's four terms added as
/// two pairs folded (so in another order than [`gradient_block`]'s).
#[inline(always)]
fn gradient_pairs<I: Isa, const K: usize>(d: &[V], x: &[V], gw: &mut [V], gb: &mut [V], j: usize) {
    let n_in = x.len() / TILE;
    // Plain loops, as in `column_block`.
    let mut ds = [[I::splat2(0.0); 2]; K];
    for k in 0..K {
        let dk: &[V; TILE] = d[(j + k) * TILE..][..TILE].try_into().unwrap();
        let mut b = I::load(&gb[j + k]);
        for v in dk {
            b = I::add(b, I::load(v));
        }
        I::store(&mut gb[j + k], b);
        ds[k] = [I::load2(pair(dk, 0)), I::load2(pair(dk, 1))];
    }
    let gw: &mut [V] = &mut gw[j * n_in..(j + K) * n_in];
    for (i, xi) in x.chunks_exact(TILE).enumerate() {
        let xi: &[V; TILE] = xi.try_into().unwrap();
        let xs = [I::load2(pair(xi, 0)), I::load2(pair(xi, 1))];
        for k in 0..K {
            I::accumulate2(&mut gw[k * n_in + i], ds[k][0], xs[0], ds[k][1], xs[1]);
        }
    }
}

/// `d` through a ReLU whose output was `h`.
#[inline(always)]
pub fn relu_backward<I: Isa>(d: &mut [V], h: &[V]) {
    if I::PAIRS && d.len().is_multiple_of(2) {
        for (dj, hj) in d.chunks_exact_mut(2).zip(h.chunks_exact(2)) {
            let (dj, hj): (&mut [V; 2], &[V; 2]) = (dj.try_into().unwrap(), hj.try_into().unwrap());
            I::store2(dj, I::where_positive2(I::load2(hj), I::load2(dj)));
        }
        return;
    }
    for (dj, hj) in d.iter_mut().zip(h) {
        I::store(dj, I::where_positive(I::load(hj), I::load(dj)));
    }
}

/// `e^x` (Cephes' polynomial; relative error about 1e-7; inputs clamped to [−87, 88]).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Round to nearest by the 1.5·2^23 trick (no rounding instruction needed).
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + MAGIC) - MAGIC;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// `tanh x` through [`exp`] (absolute error about 1e-7).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let e = exp(2.0 * x.clamp(-15.0, 15.0));
    1.0 - 2.0 / (e + 1.0)
}

/// `⌊x⌋` with plain arithmetic (`f32::floor` is a library call on the baseline x86-64 target).
#[inline(always)]
pub fn floor(x: f32) -> f32 {
    let t = x as i32 as f32;
    if t > x { t - 1.0 } else { t }
}

/// A standard Laplace distribution's upper tail `P(X > x)` for `x ≥ 0`: `e^−x / 2`, which is
/// also its density at `±x`.
#[inline(always)]
pub fn laplace_upper_tail(x: f32) -> f32 {
    0.5 * exp(-x)
}

/// `log₂ x` for positive normal `x` (Cephes' logf polynomial; absolute error below 1e-6).
#[inline(always)]
pub fn log2(x: f32) -> f32 {
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 126;
    // The mantissa in [0.5, 1), then moved to [√½, √2) so the polynomial stays accurate.
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let small = m < std::f32::consts::FRAC_1_SQRT_2;
    e -= small as i32;
    let f = if small { m + m - 1.0 } else { m - 1.0 };
    let z = f * f;
    let p = ((((((((7.037_683_6e-2 * f - 1.151_461e-1) * f + 1.167_699_9e-1) * f - 1.242_014_1e-1) * f + 1.424_932_3e-1) * f - 1.666_805_8e-1) * f + 2.000_071_4e-1) * f - 2.499_999_4e-1) * f
        + 3.333_333e-1)
        * f
        * z;
    let ln = f - 0.5 * z + p;
    ln * std::f32::consts::LOG2_E + e as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worst_relative(f: impl Fn(f32) -> f32, reference: impl Fn(f64) -> f64, xs: impl Iterator<Item = f32>) -> f64 {
        xs.map(|x| {
            let r = reference(x as f64);
            ((f(x) as f64 - r) / r.abs().max(1e-300)).abs()
        })
        .fold(0.0, f64::max)
    }

    #[test]
    fn the_lane_functions_match_libm() {
        let grid = |a: f32, b: f32, n: usize| (0..=n).map(move |i| a + (b - a) * i as f32 / n as f32);
        assert!(worst_relative(exp, libm::exp, grid(-87.0, 88.0, 20000)) < 3e-7);
        let log_err = grid(1e-9, 100.0, 20000).chain(grid(0.5, 2.0, 20000)).map(|x| (log2(x) as f64 - libm::log2(x as f64)).abs()).fold(0.0, f64::max);
        assert!(log_err < 1e-6, "log2 off by {log_err}");
        let tanh_err = grid(-20.0, 20.0, 20000).map(|x| (tanh(x) as f64 - libm::tanh(x as f64)).abs()).fold(0.0, f64::max);
        assert!(tanh_err < 3e-7, "tanh off by {tanh_err}");
        assert!(grid(-1e6, 1e6, 20000).chain(grid(-3.0, 3.0, 20000)).all(|x| floor(x) == x.floor()));
        assert!((laplace_upper_tail(0.0) - 0.5).abs() < 1e-7 && (laplace_upper_tail(1.0) - 0.5 * (-1f32).exp()).abs() < 1e-7);
    }

    simd_kernel!(
        /// A dense layer through both instruction paths (whichever this CPU runs).
        fn dense_any(out: &mut [V], bias: &[f32], wt: &[f32], x: &[V]) => dense_kernel
    );

    #[inline(always)]
    fn dense_kernel<I: Isa>(out: &mut [V], bias: &[f32], wt: &[f32], x: &[V]) {
        dense::<I>(out, bias, wt, x, true)
    }

    /// A dense layer with ReLU, forward and backward: (out, ∂/∂x, weight and bias gradients).
    #[inline(always)]
    fn layer_kernel<I: Isa>(x: &[V], w: &[f32], wt: &[f32], b: &[f32], d: &[V]) -> [Vec<V>; 4] {
        let (n_in, n_out) = (x.len() / TILE, b.len());
        let mut out = vec![[0f32; LANES]; n_out * TILE];
        dense::<I>(&mut out, b, wt, x, true);
        let mut d = d.to_vec();
        relu_backward::<I>(&mut d, &out);
        let (mut gw, mut gb, mut dx) = (vec![[0.25f32; LANES]; n_out * n_in], vec![[0.5f32; LANES]; n_out], vec![[0f32; LANES]; n_in * TILE]);
        dense_backward::<I>(&d, x, w, &mut gw, &mut gb, &mut dx);
        [out, dx, gw, gb]
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn layer_fused(x: &[V], w: &[f32], wt: &[f32], b: &[f32], d: &[V]) -> [Vec<V>; 4] {
        layer_kernel::<Fused>(x, w, wt, b, d)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    fn layer_wide(x: &[V], w: &[f32], wt: &[f32], b: &[f32], d: &[V]) -> [Vec<V>; 4] {
        layer_kernel::<Wide>(x, w, wt, b, d)
    }

    /// Every instruction path this CPU has (the plain one always) computes the same layer,
    /// forward and backward, whatever `has_avx512` would pick.
    #[test]
    fn every_instruction_path_computes_the_same_layer() {
        // Seven outputs and five inputs: blocks of four, two and one on either side.
        let (n_in, n_out) = (5, 7);
        let w: Vec<f32> = (0..n_in * n_out).map(|i| (i as f32 * 0.37).sin()).collect();
        let wt: Vec<f32> = (0..n_in).flat_map(|i| (0..n_out).map(move |j| (j, i))).map(|(j, i)| w[j * n_in + i]).collect();
        let b: Vec<f32> = (0..n_out).map(|j| 0.1 * j as f32 - 0.3).collect();
        let x: Vec<V> = (0..n_in * TILE).map(|i| std::array::from_fn(|l| ((i * LANES + l) as f32 * 0.71).cos())).collect();
        let d: Vec<V> = (0..n_out * TILE).map(|i| std::array::from_fn(|l| ((i * LANES + l) as f32 * 1.3).sin())).collect();
        let plain = layer_kernel::<Plain>(&x, &w, &wt, &b, &d);
        assert!(plain[0].iter().flatten().any(|&v| v == 0.0) && plain[1].iter().flatten().any(|&v| v != 0.0), "the ReLU cuts some outputs and lets gradients through");
        let same = |other: [Vec<V>; 4], path: &str| {
            for (k, (p, q)) in plain.iter().zip(&other).enumerate() {
                for (a, b) in p.iter().flatten().zip(q.iter().flatten()) {
                    assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{path}, result {k}: {a} vs {b}");
                }
            }
        };
        #[cfg(target_arch = "x86_64")]
        {
            if has_avx2_fma() {
                // SAFETY: the CPU has AVX2 and FMA.
                same(unsafe { layer_fused(&x, &w, &wt, &b, &d) }, "avx2");
            }
            if cpu_has_avx512() {
                // SAFETY: the CPU has AVX-512 F and VL.
                same(unsafe { layer_wide(&x, &w, &wt, &b, &d) }, "avx512");
            } else {
                eprintln!("this CPU has no AVX-512: its path is not checked here");
            }
        }
    }

    #[test]
    fn a_dense_layer_on_a_tile_is_the_scalar_layer_on_each_pixel() {
        // Seven outputs: a block of four, one of two, one alone.
        let (n_in, n_out) = (5, 7);
        let w: Vec<f32> = (0..n_in * n_out).map(|i| (i as f32 * 0.37).sin()).collect();
        let wt: Vec<f32> = (0..n_in).flat_map(|i| (0..n_out).map(move |j| (j, i))).map(|(j, i)| w[j * n_in + i]).collect();
        let b: Vec<f32> = (0..n_out).map(|j| 0.1 * j as f32 - 0.3).collect();
        let x: Vec<V> = (0..n_in * TILE).map(|i| std::array::from_fn(|l| ((i * LANES + l) as f32 * 0.71).cos())).collect();
        let mut out = vec![[0f32; LANES]; n_out * TILE];
        dense_any(&mut out, &b, &wt, &x);
        for (p, l) in (0..TILE).flat_map(|p| (0..LANES).map(move |l| (p, l))) {
            for j in 0..n_out {
                let want = (b[j] + (0..n_in).map(|i| w[j * n_in + i] * x[i * TILE + p][l]).sum::<f32>()).max(0.0);
                let got = out[j * TILE + p][l];
                assert!((got - want).abs() < 1e-5, "vector {p} lane {l} output {j}: {got} vs {want}");
            }
        }
    }
}
