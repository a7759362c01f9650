//! Four f32 lanes with a fused multiply-add: WebAssembly's `v128` with relaxed SIMD's
//! `f32x4.relaxed_madd` in the worker's FMA build, and four floats with `f32::mul_add` in the
//! native tests, so that code written with them is tested natively with the same arithmetic.
//!
//! Why: LLVM does not fuse `a * b + c` by itself, and wasm's `f32::mul_add` is a call to libm,
//! so a loop of plain arithmetic gets a multiply and an add per fused step in the tab. The
//! polynomials of GELU's erf and exp are chains of such steps. (`model/attention_cpu.rs`'s
//! tiles use the intrinsics directly: they are only multiply-adds.)
//!
//! Every method is `#[inline(always)]` and calls the intrinsics without their target feature:
//! they are meant to be inlined into a function that has it (`#[target_feature(enable =
//! "simd128,relaxed-simd")]`), where the intrinsics inline too.

#[cfg(all(target_family = "wasm", feature = "wasm-relaxed-simd"))]
use core::arch::wasm32::*;

/// Four f32 lanes.
#[derive(Clone, Copy)]
pub(crate) struct F32x4(#[cfg(all(target_family = "wasm", feature = "wasm-relaxed-simd"))] v128, #[cfg(not(all(target_family = "wasm", feature = "wasm-relaxed-simd")))] [f32; 4]);

#[cfg(all(target_family = "wasm", feature = "wasm-relaxed-simd"))]
impl F32x4 {
    #[inline(always)]
    pub fn splat(v: f32) -> Self {
        Self(f32x4_splat(v))
    }
    /// The first four floats of `s` (at least four).
    #[inline(always)]
    pub fn load(s: &[f32]) -> Self {
        assert!(s.len() >= 4);
        // SAFETY: four floats are there; v128 loads need no alignment.
        Self(unsafe { v128_load(s.as_ptr() as *const v128) })
    }
    /// Into the first four elements of `out` (at least four).
    #[inline(always)]
    pub fn store(self, out: &mut [crate::cpu_loops::Out]) {
        assert!(out.len() >= 4);
        // SAFETY: as in `load`; writing initialises them.
        unsafe { v128_store(out.as_mut_ptr() as *mut v128, self.0) }
    }
    #[inline(always)]
    pub fn add(self, o: Self) -> Self {
        Self(f32x4_add(self.0, o.0))
    }
    #[inline(always)]
    pub fn sub(self, o: Self) -> Self {
        Self(f32x4_sub(self.0, o.0))
    }
    #[inline(always)]
    pub fn mul(self, o: Self) -> Self {
        Self(f32x4_mul(self.0, o.0))
    }
    #[inline(always)]
    pub fn div(self, o: Self) -> Self {
        Self(f32x4_div(self.0, o.0))
    }
    /// self · b + c, one rounding
    #[inline(always)]
    pub fn madd(self, b: Self, c: Self) -> Self {
        // (a safe call in wasm: a module whose instructions the browser lacks fails to load,
        // and the FMA worker is loaded only where relaxed SIMD validates)
        Self(f32x4_relaxed_madd(self.0, b.0, c.0))
    }
    /// c − self · b, one rounding
    #[inline(always)]
    pub fn nmadd(self, b: Self, c: Self) -> Self {
        Self(f32x4_relaxed_nmadd(self.0, b.0, c.0))
    }
    #[inline(always)]
    pub fn abs(self) -> Self {
        Self(f32x4_abs(self.0))
    }
    /// The larger of each pair, `o` where `self` is NaN (x86's `maxps`, one instruction).
    #[inline(always)]
    pub fn max(self, o: Self) -> Self {
        Self(f32x4_pmax(o.0, self.0))
    }
    /// |self| with the sign of `sign`.
    #[inline(always)]
    pub fn copysign(self, sign: Self) -> Self {
        Self(v128_bitselect(sign.0, self.0, f32x4_splat(-0.0)))
    }
    /// self, or exactly 0 in the lanes where `z` < `floor`, or `z` where `z` is NaN.
    #[inline(always)]
    pub fn zero_where_below(self, z: Self, floor: Self) -> Self {
        let kept = v128_andnot(self.0, f32x4_lt(z.0, floor.0));
        Self(v128_bitselect(z.0, kept, f32x4_ne(z.0, z.0)))
    }
    /// Into the first four floats of `out` (at least four).
    #[inline(always)]
    pub fn store_f32(self, out: &mut [f32]) {
        assert!(out.len() >= 4);
        // SAFETY: as in `load`.
        unsafe { v128_store(out.as_mut_ptr() as *mut v128, self.0) }
    }
    /// 2^n, where `shifted` = n + 1.5·2²³ holds the integer n in its low mantissa bits
    /// (see `gelu.rs`'s `exp_approx`), for n in [−126, 127].
    #[inline(always)]
    pub fn exp2_of_shifted(shifted: Self, magic: f32) -> Self {
        let n = i32x4_sub(shifted.0, i32x4_splat(magic.to_bits() as i32));
        Self(i32x4_shl(i32x4_add(n, i32x4_splat(127)), 23))
    }
}

#[cfg(not(all(target_family = "wasm", feature = "wasm-relaxed-simd")))]
impl F32x4 {
    #[inline(always)]
    fn map(self, o: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        Self(std::array::from_fn(|i| f(self.0[i], o.0[i])))
    }
    #[inline(always)]
    pub fn splat(v: f32) -> Self {
        Self([v; 4])
    }
    #[inline(always)]
    pub fn load(s: &[f32]) -> Self {
        Self(s[..4].try_into().expect("four floats"))
    }
    /// (natively unused: only the FMA worker's loop stores; the tests read `to_array`)
    #[allow(dead_code)]
    #[inline(always)]
    pub fn store(self, out: &mut [crate::cpu_loops::Out]) {
        for (o, v) in out[..4].iter_mut().zip(self.0) {
            o.write(v);
        }
    }
    #[inline(always)]
    pub fn add(self, o: Self) -> Self {
        self.map(o, |a, b| a + b)
    }
    #[inline(always)]
    pub fn sub(self, o: Self) -> Self {
        self.map(o, |a, b| a - b)
    }
    #[inline(always)]
    pub fn mul(self, o: Self) -> Self {
        self.map(o, |a, b| a * b)
    }
    #[inline(always)]
    pub fn div(self, o: Self) -> Self {
        self.map(o, |a, b| a / b)
    }
    #[inline(always)]
    pub fn madd(self, b: Self, c: Self) -> Self {
        Self(std::array::from_fn(|i| self.0[i].mul_add(b.0[i], c.0[i])))
    }
    #[inline(always)]
    pub fn nmadd(self, b: Self, c: Self) -> Self {
        Self(std::array::from_fn(|i| (-self.0[i]).mul_add(b.0[i], c.0[i])))
    }
    #[inline(always)]
    pub fn abs(self) -> Self {
        self.map(self, |a, _| a.abs())
    }
    #[inline(always)]
    pub fn max(self, o: Self) -> Self {
        self.map(o, |a, b| if b < a { a } else { b })
    }
    #[inline(always)]
    pub fn copysign(self, sign: Self) -> Self {
        self.map(sign, f32::copysign)
    }
    #[inline(always)]
    pub fn zero_where_below(self, z: Self, floor: Self) -> Self {
        Self(std::array::from_fn(|i| if z.0[i].is_nan() { z.0[i] } else if z.0[i] < floor.0[i] { 0.0 } else { self.0[i] }))
    }
    /// (natively unused, as `store`)
    #[allow(dead_code)]
    #[inline(always)]
    pub fn store_f32(self, out: &mut [f32]) {
        out[..4].copy_from_slice(&self.0);
    }
    #[inline(always)]
    pub fn exp2_of_shifted(shifted: Self, magic: f32) -> Self {
        shifted.map(shifted, |s, _| {
            let n = (s.to_bits() as i32).wrapping_sub(magic.to_bits() as i32);
            f32::from_bits((n.wrapping_add(127) << 23) as u32)
        })
    }
    /// The four lanes (for the tests).
    #[cfg(test)]
    pub fn to_array(self) -> [f32; 4] {
        self.0
    }
}
