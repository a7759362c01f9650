//! Which build of the training worker this browser can run. The `fma` build's matrix products
//! use WebAssembly relaxed SIMD (`f32x4.relaxed_madd`: one fused multiply-add where the plain
//! build does a multiply and an add). A module with one relaxed instruction does not even load
//! in a browser without relaxed SIMD, and there is no run-time switch inside wasm, so the page
//! asks the browser first: `WebAssembly.validate` of a tiny module, as wasm-feature-detect does.

/// Trunk's loader shims for the two worker builds (see `index.html`).
pub const WORKER_FMA_URL: &str = "./objlab-worker-fma_loader.js";
pub const WORKER_PLAIN_URL: &str = "./objlab-worker_loader.js";

/// `(func (result v128) v128.const 0 v128.const 0 v128.const 0 f32x4.relaxed_madd)`: the
/// smallest module that uses relaxed SIMD (0xfd 0x105 is `f32x4.relaxed_madd`).
#[rustfmt::skip]
pub const RELAXED_SIMD_PROBE: [u8; 82] = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
    0x03, 0x02, 0x01, 0x00, // functions: one of type 0
    0x0a, 0x3d, 0x01, 0x3b, 0x00, // code: one body of 59 bytes, no locals
    0xfd, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // v128.const 0
    0xfd, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // v128.const 0
    0xfd, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // v128.const 0
    0xfd, 0x85, 0x02, // f32x4.relaxed_madd
    0x0b, // end
];

/// Whether this browser runs WebAssembly relaxed SIMD (Chromium since 114 does; Safari does
/// not yet).
pub fn relaxed_simd() -> bool {
    let bytes = js_sys::Uint8Array::from(&RELAXED_SIMD_PROBE[..]);
    js_sys::WebAssembly::validate(&bytes.into()).unwrap_or(false)
}

/// The worker build to start: the FMA one where relaxed SIMD validates, else the plain one.
pub fn worker_url() -> &'static str {
    if relaxed_simd() { WORKER_FMA_URL } else { WORKER_PLAIN_URL }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe is the module the docs describe: sections that add up, and the one relaxed
    /// opcode at the end of its body. (Whether a browser validates it is the e2e test's part.)
    #[test]
    fn the_probe_is_a_well_formed_module() {
        let p = RELAXED_SIMD_PROBE;
        assert_eq!(&p[..8], b"\0asm\x01\0\0\0");
        // code section: id 10, size 0x3d = the bytes after it
        assert_eq!(p[19], 0x0a);
        assert_eq!(p[20] as usize, p.len() - 21);
        assert_eq!(p[22] as usize, p.len() - 23, "body size");
        for at in [24, 42, 60] {
            assert_eq!(&p[at..at + 2], &[0xfd, 0x0c]);
            assert!(p[at + 2..at + 18].iter().all(|&b| b == 0));
        }
        // 0x105 as LEB128 is 0x85 0x02
        assert_eq!(&p[78..], &[0xfd, 0x85, 0x02, 0x0b]);
    }
}
