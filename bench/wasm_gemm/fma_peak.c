/* The native fused multiply-add peak of one core at 128, 256 and 512 bits: 12 independent
 * chains (enough to cover two FMA units' latency), the reference that wasm-gemm-bench's
 * in-page 128-bit loop is read against (docs/performance.md, "In the tab", thirty-seventh
 * session). Build and run: gcc -O2 -mavx512f -mfma bench/wasm_gemm/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define PEAK(T, FMA, SET, BITS)                                                                   \
    {                                                                                             \
        T x = SET(1.0000001f), y = SET(0.9999999f);                                               \
        T a0 = SET(0), a1 = SET(1), a2 = SET(2), a3 = SET(3), a4 = SET(4), a5 = SET(5);           \
        T a6 = SET(6), a7 = SET(7), a8 = SET(8), a9 = SET(9), a10 = SET(10), a11 = SET(11);       \
        double t = now();                                                                         \
        for (long i = 0; i < rounds; i++) {                                                       \
            a0 = FMA(a0, x, y); a1 = FMA(a1, x, y); a2 = FMA(a2, x, y); a3 = FMA(a3, x, y);       \
            a4 = FMA(a4, x, y); a5 = FMA(a5, x, y); a6 = FMA(a6, x, y); a7 = FMA(a7, x, y);       \
            a8 = FMA(a8, x, y); a9 = FMA(a9, x, y); a10 = FMA(a10, x, y); a11 = FMA(a11, x, y);   \
        }                                                                                         \
        double s = now() - t;                                                                     \
        T sum = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;                      \
        printf("%3d-bit FMA: %6.1f GFLOP/s (%g)\n", BITS,                                         \
               rounds * 12.0 * (BITS / 32) * 2 / s / 1e9, (double)((float *)&sum)[0]);            \
    }

int main(void) {
    long rounds = 100000000;
    PEAK(__m128, _mm_fmadd_ps, _mm_set1_ps, 128)
    PEAK(__m256, _mm256_fmadd_ps, _mm256_set1_ps, 256)
    PEAK(__m512, _mm512_fmadd_ps, _mm512_set1_ps, 512)
    return 0;
}
