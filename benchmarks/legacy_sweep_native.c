/* The two vocabulary sweeps of evolens.tracing.sweep as fused tile loops (see native.py).
 *
 * The same float64 sums as ``chunk_sumexp`` and ``chunk_sums``: every value after the fp32 logits is
 * float64; exp and log are MKL's vector functions (vmdExp, vmdLn, the ones PyTorch's own CPU kernels
 * call for float64 tensors, taken from libtorch_cpu) in their "low accuracy" mode: at most 4 ulp, i.e.
 * 1e-15 relative, far below what the metrics need, and faster than the 1-ulp mode. Where the eager
 * path makes ~20 passes over chunk-sized float64 buffers, this works on tiles of TILE vocabulary entries
 * of all layers of one row (a few hundred KiB, within L2): each logit is read twice (log-sum-exp, then
 * the rest), and the probabilities of the tile are formed once and used for every sum.
 *
 * Layout: logits (G, n, V) fp32 contiguous; per row-layer inputs and outputs (G, n) float64 (the
 * consecutive-layer outputs (G, n-1), the to-last-layer mixtures (G, n-2)). Outputs are added to, so a
 * caller can split the vocabulary [v0, v1) between threads, each with its own zeroed outputs.
 */
#include <stdint.h>
#include <stdlib.h>

void vmdExp(int n, const double *a, double *r, int64_t mode);
void vmdLn(int n, const double *a, double *r, int64_t mode);
int MKL_Set_Num_Threads_Local(int threads); /* 0 restores the global setting */

#define TILE 512

static const double EXP_FLOOR = -700.0; /* as sweep.EXP_FLOOR: no probability is exactly 0 */

static const int64_t ACCURACY = 0x1; /* VML_LA: at most 4 ulp (1e-15 relative) */

static void exp_in_place(int64_t n, double *values) { vmdExp((int)n, values, values, ACCURACY); }

static void log_of(int64_t n, const double *values, double *logs) { vmdLn((int)n, values, logs, ACCURACY); }

static double dot(int64_t n, const double *a, const double *b) {
    double total = 0.0;
#pragma omp simd reduction(+ : total)
    for (int64_t j = 0; j < n; j++) total += a[j] * b[j];
    return total;
}

static double *tile_buffer(int64_t layers) { return aligned_alloc(64, (size_t)layers * TILE * sizeof(double)); }

/* total[g, l] += sum_{v in [v0, v1)} exp(z - shift[g, l]). Returns -1 when out of memory. */
static int sumexp_range(const float *z, int64_t rows, int64_t layers, int64_t vocab, int64_t v0, int64_t v1,
                        const double *shift, double *total) {
    double *values = tile_buffer(layers);
    if (!values) return -1;
    MKL_Set_Num_Threads_Local(1); /* the caller runs one call per thread; MKL must not add its own */
    for (int64_t g = 0; g < rows; g++) {
        for (int64_t start = v0; start < v1; start += TILE) {
            int64_t width = v1 - start < TILE ? v1 - start : TILE;
            for (int64_t l = 0; l < layers; l++) {
                const float *logits = z + (g * layers + l) * vocab + start;
                double *row = values + l * width, m = shift[g * layers + l];
#pragma omp simd
                for (int64_t j = 0; j < width; j++) row[j] = (double)logits[j] - m;
            }
            exp_in_place(layers * width, values);
            for (int64_t l = 0; l < layers; l++) {
                const double *row = values + l * width;
                double sum = 0.0;
#pragma omp simd reduction(+ : sum)
                for (int64_t j = 0; j < width; j++) sum += row[j];
                total[g * layers + l] += sum;
            }
        }
    }
    free(values);
    MKL_Set_Num_Threads_Local(0);
    return 0;
}

/* Every other sum over [v0, v1) (see sweep.ChunkSums); next_cross/prev_cross only when paper != 0,
 * last_slogs, last_cross and above only when full != 0. Returns -1 when out of memory. */
static int sums_range(const float *z, int64_t rows, int64_t layers, int64_t vocab, int64_t v0, int64_t v1,
                      const double *lse, const float *token_logit, int full, int paper, double *p_logp,
                      double *next_slogs, double *last_slogs, double *last_cross, double *next_cross,
                      double *prev_cross, double *above) {
    double *p = tile_buffer(layers), *logp = tile_buffer(layers);
    double *mixture = tile_buffer(layers), *logs = tile_buffer(layers);
    int status = (p && logp && mixture && logs) ? 0 : -1;
    const int64_t last = layers - 1;
    MKL_Set_Num_Threads_Local(1);
    for (int64_t g = 0; g < rows && status == 0; g++) {
        for (int64_t start = v0; start < v1; start += TILE) {
            int64_t width = v1 - start < TILE ? v1 - start : TILE;
            /* log p and p of every layer over the tile */
            for (int64_t l = 0; l < layers; l++) {
                int64_t row_layer = g * layers + l;
                const float *logits = z + row_layer * vocab + start;
                double *p_l = p + l * width, *logp_l = logp + l * width, shift = lse[row_layer];
                double count = 0.0, token = (double)token_logit[row_layer];
#pragma omp simd reduction(+ : count)
                for (int64_t j = 0; j < width; j++) {
                    double logit = (double)logits[j], value = logit - shift;
                    logp_l[j] = value;
                    p_l[j] = value > EXP_FLOOR ? value : EXP_FLOOR;
                    count += logit > token ? 1.0 : 0.0;
                }
                if (full) above[row_layer] += count;
            }
            exp_in_place(layers * width, p);
            const double *p_last = p + last * width;
            for (int64_t l = 0; l < layers; l++) {
                int64_t row_layer = g * layers + l;
                const double *p_l = p + l * width, *logp_l = logp + l * width;
                if (full) {
                    double entropy_term = 0.0, cross = 0.0;
#pragma omp simd reduction(+ : entropy_term, cross)
                    for (int64_t j = 0; j < width; j++) {
                        entropy_term += p_l[j] * logp_l[j];
                        cross += p_last[j] * logp_l[j];
                    }
                    p_logp[row_layer] += entropy_term;
                    last_cross[row_layer] += cross;
                } else {
                    p_logp[row_layer] += dot(width, p_l, logp_l);
                }
                if (paper && l < last) {
                    next_cross[g * last + l] += dot(width, p_l + width, logp_l);
                    prev_cross[g * last + l] += dot(width, p_l, logp_l + width);
                }
            }
            /* s log s of the mixtures p_l + p_{l+1}, then of p_l + p_last (l < n - 2) */
#pragma omp simd
            for (int64_t j = 0; j < last * width; j++) mixture[j] = p[j] + p[j + width];
            log_of(last * width, mixture, logs);
            for (int64_t l = 0; l < last; l++)
                next_slogs[g * last + l] += dot(width, mixture + l * width, logs + l * width);
            if (full && layers > 2) {
                for (int64_t l = 0; l < last - 1; l++) {
                    double *mixture_l = mixture + l * width;
                    const double *p_l = p + l * width;
#pragma omp simd
                    for (int64_t j = 0; j < width; j++) mixture_l[j] = p_l[j] + p_last[j];
                }
                log_of((last - 1) * width, mixture, logs);
                for (int64_t l = 0; l < last - 1; l++)
                    last_slogs[g * (last - 1) + l] += dot(width, mixture + l * width, logs + l * width);
            }
        }
    }
    free(p);
    free(logp);
    free(mixture);
    free(logs);
    MKL_Set_Num_Threads_Local(0);
    return status;
}

/* The vocabulary split into ``parts`` ranges (multiples of 64 wide), one per thread of the OpenMP pool
 * PyTorch itself uses (the same libgomp, so no thread competes with PyTorch's spinning workers). Each
 * output holds ``parts`` zeroed slices, one per range; the caller adds them up. */
static void range_of(int64_t part, int64_t parts, int64_t vocab, int64_t *v0, int64_t *v1) {
    int64_t step = (vocab + parts - 1) / parts;
    step = (step + 63) / 64 * 64;
    *v0 = part * step < vocab ? part * step : vocab;
    *v1 = *v0 + step < vocab ? *v0 + step : vocab;
}

int evolens_sumexp(const float *z, int64_t rows, int64_t layers, int64_t vocab, int parts,
                   const double *shift, double *total) {
    int status = 0;
#pragma omp parallel for num_threads(parts) schedule(static, 1) reduction(| : status)
    for (int part = 0; part < parts; part++) {
        int64_t v0, v1;
        range_of(part, parts, vocab, &v0, &v1);
        status |= sumexp_range(z, rows, layers, vocab, v0, v1, shift, total + part * rows * layers);
    }
    return status;
}

int evolens_sums(const float *z, int64_t rows, int64_t layers, int64_t vocab, int parts, const double *lse,
                 const float *token_logit, int full, int paper, double *p_logp, double *next_slogs,
                 double *last_slogs, double *last_cross, double *next_cross, double *prev_cross,
                 double *above) {
    int status = 0;
    int64_t n = rows * layers, pairs = rows * (layers - 1), far = layers > 2 ? rows * (layers - 2) : 0;
#pragma omp parallel for num_threads(parts) schedule(static, 1) reduction(| : status)
    for (int part = 0; part < parts; part++) {
        int64_t v0, v1;
        range_of(part, parts, vocab, &v0, &v1);
        status |= sums_range(z, rows, layers, vocab, v0, v1, lse, token_logit, full, paper,
                             p_logp + part * n, next_slogs + part * pairs, last_slogs + part * far,
                             last_cross + part * n, next_cross + part * pairs, prev_cross + part * pairs,
                             above + part * n);
    }
    return status;
}
