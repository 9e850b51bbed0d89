/* Native CPU kernels for the compact decoder (biasloop.models.fast.native).
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

int bl_abi_version(void) { return 5; }

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
 * about 2.3e-7 at most: x = n ln2 + r, |r| <= ln2 / 2, exp(r) by a degree-6 polynomial,
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

/* One row of the symmetric int8 quantisation (see bl_quantize_rows). */
static inline float quantize_row(const float *row, long cols, int8_t *dest) {
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
    for (k = 0; k < cols; ++k) dest[k] = (int8_t)nearbyintf(row[k] / scale);
    return scale;
}

/* Symmetric per-row int8 quantisation of float32 x [rows][cols] (row stride x_stride):
 * row_scale[m] = max(max_k |x[m,k]|, 1e-12) / 127, q[m,k] = round_half_even(x[m,k] / row_scale[m]).
 * The same float operations, in the same order, as the PyTorch fallback, so the two
 * give identical bytes. */
void bl_quantize_rows(const float *x, long rows, long cols, long x_stride, int8_t *q,
                      float *row_scale, int threads)
{
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (long m = 0; m < rows; ++m) row_scale[m] = quantize_row(x + m * x_stride, cols, q + m * cols);
}

/* In place: acc (int32 [rows][cols]) becomes float32 (float)acc * col_scale[n] * row_scale[m],
 * multiplied in that order, as the PyTorch fallback does. */
void bl_dequantize(int32_t *acc, long rows, long cols, const float *col_scale,
                   const float *row_scale, int threads)
{
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (long m = 0; m < rows; ++m) {
        int32_t *row = acc + m * cols;
        float scale = row_scale[m];
        for (long n = 0; n < cols; ++n) {
            float value = ((float)row[n] * col_scale[n]) * scale;
            memcpy(row + n, &value, sizeof value); /* the float takes the int's place */
        }
    }
}

/* ---------------------------------------------------------------- fused int8 decode step
 * A decode step of an int8 layer, between its four torch._int_mm calls:
 *   norm_quantize          x -> q8(rmsnorm(x) * w)                      (before q/k/v)
 *   rope_store             acc -> q (bf16), K/V written into the cache   (after q/k/v)
 *   residual_norm_quantize x += dequant(acc); -> q8(rmsnorm(x) * w)      (after o, down)
 *   silu_quantize          acc -> q8(silu(gate) * up)                    (after gate/up)
 * Each row's work is small, so one call per stage replaces 5-10 PyTorch ops. */

static inline uint16_t float_to_bf16(float value) {
    union { float f; uint32_t u; } bits = { value };
    if ((bits.u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it NaN (rounding could carry) */
        return (uint16_t)((bits.u >> 16) | 0x40u);
    return (uint16_t)((bits.u + 0x7fffu + ((bits.u >> 16) & 1u)) >> 16); /* round half to even */
}

/* 1 / sqrt(mean(x^2) + eps) of one row. */
static inline float inverse_rms(const float *x, long cols, float eps) {
    vf16 squares = splat(0.0f);
    long k = 0;
    for (; k + LANES <= cols; k += LANES) {
        vf16 value;
        memcpy(&value, x + k, sizeof value);
        squares += value * value;
    }
    float sum = 0.0f;
    for (int i = 0; i < LANES; ++i) sum += squares[i];
    for (; k < cols; ++k) sum += x[k] * x[k];
    return 1.0f / sqrtf(sum / (float)cols + eps);
}

/* rmsnorm(x) * weight = weight_k * (x_k / sqrt(mean(x^2) + eps)), into out. */
static inline void rms_norm_row(const float *x, long cols, const float *weight, float eps,
                                float *out) {
    float inverse = inverse_rms(x, cols, eps);
    for (long k = 0; k < cols; ++k) out[k] = weight[k] * (x[k] * inverse);
}

/* silu(g) * u = g * sigmoid(g) * u, sigmoid from exp(-|g|) so the exponent never overflows. */
static inline vf16 silu_times(vf16 g, vf16 u) {
    vi16 negative = g < 0.0f;
    vf16 e = exp_nonpositive(-(vf16)((vi16)g & 0x7fffffff));
    return g * (lane_select(negative, e, splat(1.0f)) / (1.0f + e)) * u;
}

/* q8/row_scale of rmsnorm(x[m]) * weight, for rows m of float32 x [rows][cols]. */
int bl_norm_quantize(const float *x, long rows, long cols, const float *weight, float eps,
                     int8_t *q, float *row_scale, int threads)
{
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        float *normed = malloc(sizeof(float) * (size_t)cols);
        if (normed == NULL) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (long m = 0; m < rows; ++m) {
            if (normed == NULL) continue;
            rms_norm_row(x + m * cols, cols, weight, eps, normed);
            row_scale[m] = quantize_row(normed, cols, q + m * cols);
        }
        free(normed);
    }
    return failed ? -2 : 0;
}

/* x[m] += dequant(acc[m]) (float32, in place); then, when weight is not NULL,
 * q8/row_scale of rmsnorm(x[m]) * weight as in bl_norm_quantize. */
int bl_residual_norm_quantize(const int32_t *acc, const float *col_scale,
                              const float *acc_row_scale, float *x, long rows, long cols,
                              const float *weight, float eps, int8_t *q, float *row_scale,
                              int threads)
{
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        float *normed = weight == NULL ? NULL : malloc(sizeof(float) * (size_t)cols);
        if (weight != NULL && normed == NULL) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (long m = 0; m < rows; ++m) {
            float *row = x + m * cols;
            const int32_t *sums = acc + m * cols;
            float scale = acc_row_scale[m];
            for (long n = 0; n < cols; ++n) row[n] += ((float)sums[n] * col_scale[n]) * scale;
            if (normed == NULL) continue;
            rms_norm_row(row, cols, weight, eps, normed);
            row_scale[m] = quantize_row(normed, cols, q + m * cols);
        }
        free(normed);
    }
    return failed ? -2 : 0;
}

/* q8/row_scale of silu(gate) * up, gate = dequant(acc[m, :inter]), up = dequant(acc[m, inter:]). */
int bl_silu_quantize(const int32_t *acc, const float *col_scale, const float *acc_row_scale,
                     long rows, long inter, int8_t *q, float *row_scale, int threads)
{
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        float *hidden = malloc(sizeof(float) * (size_t)(inter + LANES));
        if (hidden == NULL) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (long m = 0; m < rows; ++m) {
            if (hidden == NULL) continue;
            const int32_t *gate = acc + m * 2 * inter, *up = gate + inter;
            float scale = acc_row_scale[m];
            for (long k = 0; k < inter; k += LANES) {
                long count = inter - k < LANES ? inter - k : LANES;
                vf16 g = splat(0.0f), u = splat(0.0f);
                if (count == LANES) {
                    vi16 gate_sum, up_sum;
                    vf16 gate_scale, up_scale;
                    memcpy(&gate_sum, gate + k, sizeof gate_sum);
                    memcpy(&up_sum, up + k, sizeof up_sum);
                    memcpy(&gate_scale, col_scale + k, sizeof gate_scale);
                    memcpy(&up_scale, col_scale + inter + k, sizeof up_scale);
                    g = (__builtin_convertvector(gate_sum, vf16) * gate_scale) * scale;
                    u = (__builtin_convertvector(up_sum, vf16) * up_scale) * scale;
                } else {
                    for (long i = 0; i < count; ++i) {
                        g[i] = ((float)gate[k + i] * col_scale[k + i]) * scale;
                        u[i] = ((float)up[k + i] * col_scale[inter + k + i]) * scale;
                    }
                }
                vf16 result = silu_times(g, u);
                memcpy(hidden + k, &result, sizeof result);
            }
            row_scale[m] = quantize_row(hidden, inter, q + m * inter);
        }
        free(hidden);
    }
    return failed ? -2 : 0;
}

/* After the q/k/v matmul of a decode step: dequantise acc [rows][(n_heads + 2 n_kv_heads) hd]
 * (q heads, then k, then v; or, when acc is NULL, read them from bf16 qkv_bf16), rotate q and k by RoPE with this row's cos/sin [rows][hd]
 * (x * cos + rotate_half(x) * sin, rotate_half(x) = (-x[hd/2:], x[:hd/2])), write q as bf16
 * into q_out [rows][n_heads hd], and k and v as bf16 into cache column `column` of
 * keys_t [rows][n_kv_heads][hd][width] and values [rows][n_kv_heads][width][hd]. */
void bl_rope_store(const int32_t *acc, const float *col_scale, const float *acc_row_scale,
                   const uint16_t *qkv_bf16,
                   long rows, long n_heads, long n_kv_heads, long head_dim, const float *cos,
                   const float *sin, uint16_t *q_out, uint16_t *keys_t, uint16_t *values,
                   long width, long column, int threads)
{
    const long heads = n_heads + 2 * n_kv_heads, cols = heads * head_dim, half = head_dim / 2;
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (long m = 0; m < rows; ++m) {
        const int32_t *sums = acc == NULL ? NULL : acc + m * cols;
        const uint16_t *halves = qkv_bf16 == NULL ? NULL : qkv_bf16 + m * cols;
        const float *c = cos + m * head_dim, *s = sin + m * head_dim;
        float scale = acc_row_scale == NULL ? 1.0f : acc_row_scale[m];
        float head[256];
        for (long h = 0; h < heads; ++h) {
            const long base = h * head_dim;
            for (long d = 0; d < head_dim; ++d)
                head[d] = sums != NULL ? ((float)sums[base + d] * col_scale[base + d]) * scale
                                       : bf16_to_float(halves[base + d]);
            if (h >= n_heads + n_kv_heads) { /* a value head: no rotation */
                uint16_t *dest = values + ((m * n_kv_heads + h - n_heads - n_kv_heads) * width
                                           + column) * head_dim;
                for (long d = 0; d < head_dim; ++d) dest[d] = float_to_bf16(head[d]);
                continue;
            }
            float rotated[256];
            for (long d = 0; d < half; ++d) {
                rotated[d] = head[d] * c[d] - head[d + half] * s[d];
                rotated[d + half] = head[d + half] * c[d + half] + head[d] * s[d + half];
            }
            if (h < n_heads) {
                uint16_t *dest = q_out + (m * n_heads + h) * head_dim;
                for (long d = 0; d < head_dim; ++d) dest[d] = float_to_bf16(rotated[d]);
            } else {
                uint16_t *dest = keys_t + (m * n_kv_heads + h - n_heads) * head_dim * width + column;
                for (long d = 0; d < head_dim; ++d) dest[d * width] = float_to_bf16(rotated[d]);
            }
        }
    }
}

/* ---------------------------------------------------------------- top-p candidates */

typedef struct { float value; int64_t index; } candidate;

/* Reorder items[0..count) so that items[0..wanted) hold the `wanted` largest values
 * (in no particular order): quickselect with a median-of-three pivot. */
static void select_largest(candidate *items, long count, long wanted) {
    long low = 0, high = count - 1;
    while (low < high) {
        long middle = low + (high - low) / 2;
        float a = items[low].value, b = items[middle].value, c = items[high].value;
        float pivot = a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
        long i = low, j = high;
        while (i <= j) {
            while (items[i].value > pivot) ++i;
            while (items[j].value < pivot) --j;
            if (i <= j) {
                candidate swap = items[i];
                items[i++] = items[j];
                items[j--] = swap;
            }
        }
        if (wanted - 1 <= j) high = j;
        else if (wanted - 1 >= i) low = i;
        else return;
    }
}

/* Distances below the row maximum, in units of temperature-scaled logits (nats), that
 * candidate thresholds try in turn; past the last, the whole row is a candidate. */
#define N_THRESHOLDS 8
static const float THRESHOLDS[N_THRESHOLDS] = {
    2, 4, 6, 8, 12, 16, 32, 64};

/* For each row of float32 logits [rows][vocab]:
 *   row_max[m]   = max_v l[v],
 *   row_total[m] = sum_v exp((l[v] - row_max[m]) * inv_temperature),
 *   values/indices [m][k]: the k largest logits and their token ids, the `first` largest
 *   of them in positions 0..first-1 (neither part sorted).
 * Only logits within the smallest threshold that holds k of them are gathered and
 * partially sorted, instead of sorting the vocabulary. Returns -2 when out of memory. */
int bl_top_candidates(const float *logits, long rows, long vocab, long k, long first,
                      float inv_temperature, float *values, int64_t *indices, float *row_max,
                      float *row_total, int threads)
{
    if (k < 1 || k > vocab || first < 0 || first > k) return -1;
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        candidate *pool = malloc(sizeof(candidate) * (size_t)vocab);
        if (pool == NULL) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (long m = 0; m < rows; ++m) {
            if (pool == NULL) continue;
            const float *row = logits + m * vocab;
            vf16 lane_max = splat(-INFINITY);
            long v = 0;
            for (; v + LANES <= vocab; v += LANES) {
                vf16 value;
                memcpy(&value, row + v, sizeof value);
                lane_max = vmax(lane_max, value);
            }
            float largest = -INFINITY;
            for (int i = 0; i < LANES; ++i) largest = lane_max[i] > largest ? lane_max[i] : largest;
            for (; v < vocab; ++v) largest = row[v] > largest ? row[v] : largest;

            /* Exponent sum, and how many logits lie within each threshold. */
            vf16 total = splat(0.0f);
            vi16 within[N_THRESHOLDS];
            for (int t = 0; t < N_THRESHOLDS; ++t) within[t] = (vi16){0};
            for (v = 0; v + LANES <= vocab; v += LANES) {
                vf16 value;
                memcpy(&value, row + v, sizeof value);
                vf16 scaled = (value - largest) * inv_temperature;
                total += exp_nonpositive(scaled);
                for (int t = 0; t < N_THRESHOLDS; ++t) within[t] -= scaled >= -THRESHOLDS[t];
            }
            float sum = 0.0f;
            long counts[N_THRESHOLDS] = {0};
            for (int i = 0; i < LANES; ++i) {
                sum += total[i];
                for (int t = 0; t < N_THRESHOLDS; ++t) counts[t] += within[t][i];
            }
            for (; v < vocab; ++v) {
                float scaled = (row[v] - largest) * inv_temperature;
                sum += expf(scaled);
                for (int t = 0; t < N_THRESHOLDS; ++t) counts[t] += scaled >= -THRESHOLDS[t];
            }
            row_max[m] = largest;
            row_total[m] = sum;

            float cutoff = -INFINITY; /* in raw logits */
            for (int t = 0; t < N_THRESHOLDS; ++t)
                if (counts[t] >= k) {
                    cutoff = largest - THRESHOLDS[t] / inv_temperature;
                    break;
                }
            long gathered = 0;
            for (v = 0; v < vocab; ++v)
                if (row[v] >= cutoff) {
                    pool[gathered].value = row[v];
                    pool[gathered++].index = v;
                }
            /* Rounding can put a logit on either side of the cutoff; never gather fewer than k. */
            if (gathered < k) {
                for (v = 0, gathered = 0; v < vocab; ++v) {
                    pool[gathered].value = row[v];
                    pool[gathered++].index = v;
                }
            }
            select_largest(pool, gathered, k);
            if (first > 0 && first < k) select_largest(pool, k, first);
            for (long i = 0; i < k; ++i) {
                values[m * k + i] = pool[i].value;
                indices[m * k + i] = pool[i].index;
            }
        }
        free(pool);
    }
    return failed ? -2 : 0;
}

/* out[m][j] = sum_h table[ids[m][j]][h] * states[m][h]: float32 logits of chosen tokens,
 * reading only the chosen rows of the [vocab][hidden] table (no gathered copy). */
void bl_gathered_dot(const float *table, const float *states, const int64_t *ids, long rows,
                     long count, long hidden, float *out, int threads)
{
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (long m = 0; m < rows; ++m) {
        const float *state = states + m * hidden;
        for (long j = 0; j < count; ++j) {
            const float *weights = table + ids[m * count + j] * hidden;
            vf16 acc = splat(0.0f);
            long h = 0;
            for (; h + LANES <= hidden; h += LANES) {
                vf16 a, b;
                memcpy(&a, weights + h, sizeof a);
                memcpy(&b, state + h, sizeof b);
                acc += a * b;
            }
            float sum = 0.0f;
            for (int i = 0; i < LANES; ++i) sum += acc[i];
            for (; h < hidden; ++h) sum += weights[h] * state[h];
            out[m * count + j] = sum;
        }
    }
}

/* ---------------------------------------------------------------- fused bf16 decode step
 * The same stages for a bf16 layer, whose matmuls (F.linear) return bf16:
 *   norm_bf16           x -> bf16(rmsnorm(x) * w)
 *   rope_store_bf16     qkv (bf16) -> q (bf16), K/V written into the cache
 *   residual_norm_bf16  x += delta (bf16); -> bf16(rmsnorm(x) * w)
 *   silu_bf16           [gate | up] (bf16) -> bf16(silu(gate) * up)                    */

static inline void store_bf16_row(const float *src, long cols, uint16_t *dest) {
    for (long k = 0; k < cols; ++k) dest[k] = float_to_bf16(src[k]);
}

static inline void norm_bf16_row(const float *x, long cols, const uint16_t *weight, float eps,
                                 float *scratch, uint16_t *dest) {
    float inverse = inverse_rms(x, cols, eps);
    for (long k = 0; k < cols; ++k) scratch[k] = bf16_to_float(weight[k]) * (x[k] * inverse);
    store_bf16_row(scratch, cols, dest);
}

int bl_norm_bf16(const float *x, long rows, long cols, const uint16_t *weight, float eps,
                 uint16_t *out, int threads)
{
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        float *scratch = malloc(sizeof(float) * (size_t)cols);
        if (scratch == NULL) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (long m = 0; m < rows; ++m)
            if (scratch != NULL) norm_bf16_row(x + m * cols, cols, weight, eps, scratch, out + m * cols);
        free(scratch);
    }
    return failed ? -2 : 0;
}

int bl_residual_norm_bf16(const uint16_t *delta, float *x, long rows, long cols,
                          const uint16_t *weight, float eps, uint16_t *out, int threads)
{
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        float *scratch = weight == NULL ? NULL : malloc(sizeof(float) * (size_t)cols);
        if (weight != NULL && scratch == NULL) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (long m = 0; m < rows; ++m) {
            float *row = x + m * cols;
            const uint16_t *change = delta + m * cols;
            for (long n = 0; n < cols; ++n) row[n] += bf16_to_float(change[n]);
            if (scratch != NULL) norm_bf16_row(row, cols, weight, eps, scratch, out + m * cols);
        }
        free(scratch);
    }
    return failed ? -2 : 0;
}

void bl_silu_bf16(const uint16_t *gate_up, long rows, long inter, uint16_t *out, int threads)
{
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (long m = 0; m < rows; ++m) {
        const uint16_t *gate = gate_up + m * 2 * inter, *up = gate + inter;
        uint16_t *dest = out + m * inter;
        for (long k = 0; k < inter; k += LANES) {
            long count = inter - k < LANES ? inter - k : LANES;
            vf16 g, u;
            if (count == LANES) {
                g = load_bf16(gate + k);
                u = load_bf16(up + k);
            } else {
                g = load_bf16_tail(gate + k, count);
                u = load_bf16_tail(up + k, count);
            }
            vf16 result = silu_times(g, u);
            for (long i = 0; i < count; ++i) dest[k + i] = float_to_bf16(result[i]);
        }
    }
}
