/* Native CPU kernels for the compact decoder (biasloop.models.native).
 *
 * Compiled on first use with the machine's C compiler (-O3 -march=native -fopenmp)
 * and loaded through ctypes; the Python side falls back to PyTorch ops when no
 * compiler is available. Written with GNU vector extensions (gcc, clang), so the
 * same source becomes AVX-512, AVX2 or NEON code on the machine that compiles it.
 *
 * Threads: OpenMP, with the thread count passed in by the caller (torch's). The
 * process has already loaded torch's libgomp, which the loader reuses for this
 * library's libgomp.so.1 dependency, so both share one thread pool.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef float vf16 __attribute__((vector_size(64)));
typedef int32_t vi16 __attribute__((vector_size(64)));
typedef uint32_t vu16 __attribute__((vector_size(64)));
typedef uint16_t vh16 __attribute__((vector_size(32)));

#define LANES 16
#define MAX_GROUP 8
#define MAX_HEAD_DIM 128

int bl_abi_version(void) { return 1; }

static inline float bf16_to_float(uint16_t bits) {
    union { uint32_t u; float f; } value;
    value.u = (uint32_t)bits << 16;
    return value.f;
}

/* 16 bfloat16 values as float32 (a bf16 is the top half of a float32). */
static inline vf16 load_bf16(const uint16_t *src) {
    vh16 half;
    memcpy(&half, src, sizeof half);
    vu16 wide = __builtin_convertvector(half, vu16) << 16;
    vf16 out;
    memcpy(&out, &wide, sizeof out);
    return out;
}

static inline vf16 load_bf16_tail(const uint16_t *src, long count) {
    uint16_t padded[LANES] = {0};
    memcpy(padded, src, (size_t)count * sizeof(uint16_t));
    return load_bf16(padded);
}

static inline vf16 splat(float value) { return (vf16){0} + value; }

/* Lane-wise `mask ? a : b` for a mask of all-ones / all-zero lanes (C has no vector ?:). */
static inline vf16 lane_select(vi16 mask, vf16 a, vf16 b) {
    return (vf16)(((vi16)a & mask) | ((vi16)b & ~mask));
}

static inline vf16 vmax(vf16 a, vf16 b) { return lane_select(a > b, a, b); }

/* exp(x) for x <= 0 (softmax after subtracting the row maximum), relative error
 * below 2e-7: x = n ln2 + r, |r| <= ln2 / 2, exp(r) by a degree-6 polynomial,
 * 2^n put into the exponent bits. Inputs below -87 (and -inf) give 0. */
static inline vf16 exp_nonpositive(vf16 x) {
    vi16 underflow = x < -87.0f;
    x = lane_select(underflow, splat(-87.0f), x);
    vf16 scaled = x * 1.44269504088896341f;
    vi16 n = __builtin_convertvector(scaled - 0.5f, vi16); /* round half away from 0, x <= 0 */
    vf16 nf = __builtin_convertvector(n, vf16);
    vf16 r = x - nf * 0.693145751953125f - nf * 1.428606765330187e-06f;
    vf16 p = splat(1.0f / 720);
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    vi16 bits = (n + 127) << 23;
    vf16 two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    vf16 result = p * two_n;
    return lane_select(underflow, splat(0.0f), result);
}

/* One (row, kv head): `group` query heads of `head_dim` against `n_cols` cached keys.
 * keys: [head_dim][width] (transposed), values: [width][head_dim], bf16.
 * scores: scratch of group * (n_cols + LANES) floats. */
static inline __attribute__((always_inline)) void attend_kv_head(
    const uint16_t *query, const uint16_t *keys, const uint16_t *values, long width,
    const uint8_t *valid, long n_cols, float *out, float scale, float *scores,
    const int group, const int head_dim)
{
    const int chunks = head_dim / LANES;
    const long stride = n_cols + LANES;
    /* Fixed-size arrays (not VLAs), so the compiler keeps the accumulators in registers. */
    float query_f[MAX_GROUP][MAX_HEAD_DIM];
    for (int j = 0; j < group; ++j)
        for (int d = 0; d < head_dim; ++d) query_f[j][d] = bf16_to_float(query[j * head_dim + d]) * scale;

    /* scores[j][t] = sum_d q[j][d] k[d][t]: 16 key columns per pass, one accumulator per query head. */
    vf16 top[MAX_GROUP];
    for (int j = 0; j < group; ++j) top[j] = splat(-INFINITY);
    for (long t0 = 0; t0 < n_cols; t0 += LANES) {
        long count = n_cols - t0 < LANES ? n_cols - t0 : LANES;
        vf16 acc[MAX_GROUP];
        for (int j = 0; j < group; ++j) acc[j] = splat(0.0f);
        if (t0 + LANES <= width) {
            /* Columns past n_cols but inside the row are read and masked below. */
            for (int d = 0; d < head_dim; ++d) {
                vf16 key = load_bf16(keys + (long)d * width + t0);
                for (int j = 0; j < group; ++j) acc[j] += query_f[j][d] * key;
            }
        } else {
            for (int d = 0; d < head_dim; ++d) {
                vf16 key = load_bf16_tail(keys + (long)d * width + t0, count);
                for (int j = 0; j < group; ++j) acc[j] += query_f[j][d] * key;
            }
        }
        vi16 allowed = {0};
        for (int i = 0; i < count; ++i) allowed[i] = valid[t0 + i] ? -1 : 0;
        for (int j = 0; j < group; ++j) {
            vf16 masked = lane_select(allowed, acc[j], splat(-INFINITY));
            memcpy(scores + j * stride + t0, &masked, sizeof masked);
            top[j] = vmax(top[j], masked);
        }
    }

    /* Softmax numerators and their sums. */
    float inverse_total[MAX_GROUP];
    for (int j = 0; j < group; ++j) {
        float row_max = -INFINITY;
        for (int i = 0; i < LANES; ++i) row_max = top[j][i] > row_max ? top[j][i] : row_max;
        vf16 total = splat(0.0f);
        float *row = scores + j * stride;
        for (long t0 = 0; t0 < n_cols; t0 += LANES) {
            vf16 value;
            memcpy(&value, row + t0, sizeof value);
            vf16 weight = exp_nonpositive(value - row_max);
            memcpy(row + t0, &weight, sizeof weight);
            total += weight;
        }
        float sum = 0.0f;
        for (int i = 0; i < LANES; ++i) sum += total[i];
        inverse_total[j] = 1.0f / sum;
    }

    /* out[j] = sum_t p[j][t] v[t] / total[j]; positions past n_cols hold exp(-inf - max) = 0
     * but are never read. */
    vf16 acc[MAX_GROUP][MAX_HEAD_DIM / LANES];
    for (int j = 0; j < group; ++j)
        for (int c = 0; c < chunks; ++c) acc[j][c] = splat(0.0f);
    for (long t = 0; t < n_cols; ++t) {
        vf16 value[MAX_HEAD_DIM / LANES];
        for (int c = 0; c < chunks; ++c) value[c] = load_bf16(values + t * head_dim + c * LANES);
        for (int j = 0; j < group; ++j) {
            float weight = scores[j * stride + t];
            for (int c = 0; c < chunks; ++c) acc[j][c] += weight * value[c];
        }
    }
    for (int j = 0; j < group; ++j)
        for (int c = 0; c < chunks; ++c) {
            vf16 result = acc[j][c] * inverse_total[j];
            memcpy(out + j * head_dim + c * LANES, &result, sizeof result);
        }
}

#define ATTEND(G, D) \
    attend_kv_head(query, keys, values, width, valid_row, n_cols, dest, scale, scores, G, D)

#define ATTEND_GROUPS(D)                                                                   \
    switch (group) {                                                                       \
        case 1: ATTEND(1, D); break; case 2: ATTEND(2, D); break;                          \
        case 3: ATTEND(3, D); break; case 4: ATTEND(4, D); break;                          \
        case 5: ATTEND(5, D); break; case 6: ATTEND(6, D); break;                          \
        case 7: ATTEND(7, D); break; case 8: ATTEND(8, D); break;                          \
    }

int bl_attention_supported(long n_heads, long n_kv_heads, long head_dim) {
    if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0) return 0;
    long group = n_heads / n_kv_heads;
    return group >= 1 && group <= 8 &&
           (head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128);
}

/* Single-query attention of a decode step over a bf16 KV cache.
 *
 * query:  bf16, row b's head h at query + b * query_row_stride + h * head_dim;
 * keys_t: bf16 [batch][n_kv_heads][head_dim][width]; values: bf16 [batch][n_kv_heads][width][head_dim];
 * valid:  uint8 [batch] rows of valid_row_stride, 1 where a cache column may be attended;
 * out:    float32 [batch][n_heads * head_dim].
 * Columns 0..n_cols-1 are read. Returns 0, or -1 for an unsupported shape.
 * out[b, h] = sum_t softmax_t(scale * q[b,h] . k[b,g,:,t] | valid) v[b,g,t,:], g = h / group. */
int bl_decode_attention(
    const uint16_t *query_base, long query_row_stride, const uint16_t *keys_t,
    const uint16_t *values_base, long width, const uint8_t *valid, long valid_row_stride,
    long n_cols, float *out, long batch, long n_heads, long n_kv_heads, long head_dim,
    float scale, int threads)
{
    if (!bl_attention_supported(n_heads, n_kv_heads, head_dim) || n_cols < 1 || n_cols > width)
        return -1;
    const long group = n_heads / n_kv_heads;
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        float *scores = malloc(sizeof(float) * (size_t)(group * (n_cols + LANES)));
        if (scores == NULL) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (long unit = 0; unit < batch * n_kv_heads; ++unit) {
            if (scores == NULL) continue;
            long b = unit / n_kv_heads, g = unit % n_kv_heads;
            const uint16_t *query = query_base + b * query_row_stride + g * group * head_dim;
            const uint16_t *keys = keys_t + unit * head_dim * width;
            const uint16_t *values = values_base + unit * width * head_dim;
            const uint8_t *valid_row = valid + b * valid_row_stride;
            float *dest = out + b * n_heads * head_dim + g * group * head_dim;
            switch (head_dim) {
                case 16: ATTEND_GROUPS(16) break;
                case 32: ATTEND_GROUPS(32) break;
                case 64: ATTEND_GROUPS(64) break;
                case 128: ATTEND_GROUPS(128) break;
            }
        }
        free(scores);
    }
    return failed ? -2 : 0;
}

/* Symmetric per-row int8 quantisation of float32 x [rows][cols] (row stride x_stride):
 * row_scale[m] = max(max_k |x[m,k]|, 1e-12) / 127, q[m,k] = round_half_even(x[m,k] / row_scale[m]).
 * The same float operations, in the same order, as the PyTorch fallback, so the two
 * give identical bytes. */
void bl_quantize_rows(const float *x, long rows, long cols, long x_stride, int8_t *q,
                      float *row_scale, int threads)
{
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (long m = 0; m < rows; ++m) {
        const float *row = x + m * x_stride;
        /* A vector of running maxima: a scalar max reduction is not vectorised without
         * -ffast-math. */
        vf16 lane_max = splat(0.0f);
        long k = 0;
        for (; k + LANES <= cols; k += LANES) {
            vf16 value;
            memcpy(&value, row + k, sizeof value);
            vf16 magnitude = (vf16)((vi16)value & 0x7fffffff);
            lane_max = vmax(lane_max, magnitude);
        }
        float largest = 0.0f;
        for (int i = 0; i < LANES; ++i) largest = lane_max[i] > largest ? lane_max[i] : largest;
        for (; k < cols; ++k) largest = fabsf(row[k]) > largest ? fabsf(row[k]) : largest;
        float scale = (largest < 1e-12f ? 1e-12f : largest) / 127.0f;
        row_scale[m] = scale;
        int8_t *dest = q + m * cols;
        for (long k = 0; k < cols; ++k) dest[k] = (int8_t)nearbyintf(row[k] / scale);
    }
}

/* In place: acc (int32 [rows][cols]) becomes float32 (float)acc * col_scale[n] * row_scale[m],
 * multiplied in that order, as the PyTorch fallback does. */
void bl_dequantize(int32_t *acc, long rows, long cols, const float *col_scale,
                   const float *row_scale, int threads)
{
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (long m = 0; m < rows; ++m) {
        int32_t *row = acc + m * cols;
        float *dest = (float *)row;
        float scale = row_scale[m];
        for (long n = 0; n < cols; ++n) dest[n] = ((float)row[n] * col_scale[n]) * scale;
    }
}
