/* sample.cu — Philox4x32-10 and the token sampler on the GPU. A sampled token
 * must be the one the CPU picks (ref/sample.c) for the same logits and key,
 * so the rule is copied exactly:
 *   - greedy: argmax, ties to the lowest index (a serial scan);
 *   - else weights w_i = exp((z_i - max) / temperature) in fp32, sorted by w
 *     descending, ties by index ascending (a total order, so any correct sort
 *     gives the same sequence); top-k keeps the first k; top-p keeps the
 *     shortest prefix whose mass (summed in double in sorted order) reaches
 *     top_p of the kept mass; the inverse CDF of u * mass over that prefix.
 * exp is evaluated in double and rounded to float: glibc's expf is correctly
 * rounded in all but very rare cases and so is this, whereas CUDA's expf may
 * be off by an ulp or two, which would move the CDF. The order-sensitive
 * sums run in one thread, in the CPU's order. */
#include <math.h>
#include <stdlib.h>

#include "common.cuh"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* ref/philox.c, verbatim */
__device__ void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * (uint64_t)c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * (uint64_t)c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c1 ^ k0;
        uint32_t n1 = lo1;
        uint32_t n2 = hi0 ^ c3 ^ k1;
        uint32_t n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* opd_uniform: key = the 64-bit seed, counter = (a, b, c, 0), top 24 bits */
__device__ float uniform_keyed(uint64_t seed, uint32_t a, uint32_t b, uint32_t c, int word) {
    const uint32_t ctr[4] = {a, b, c, 0};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t out[4];
    philox4x32_10(ctr, key, out);
    return (float)(out[word & 3] >> 8) * (1.0f / 16777216.0f);
}

__global__ void uniform_kernel(float *out, size_t n, uint64_t seed, uint32_t a,
                               uint32_t b, uint32_t c0, int word) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = uniform_keyed(seed, a, b, c0 + (uint32_t)i, word);
}

extern "C" int opd_cuda_uniform(opd_cuda *cu, float *out, size_t n, uint64_t seed,
                                uint32_t a, uint32_t b, uint32_t c0, int word) {
    if (n == 0) return 0;
    uniform_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>(out, n, seed, a, b, c0, word);
    KERNEL_CHECK();
    return 0;
}

/* one candidate: (weight, index) */
struct candidate { float w; int idx; };

/* a precedes b: larger weight first, then lower index */
__device__ inline bool precedes(candidate a, candidate b) {
    if (a.w != b.w) return a.w > b.w;
    return a.idx < b.idx;
}

/* One block per row. cand (B, n2) is scratch, n2 = V rounded up to a power
 * of two; padding entries (w = -1, below every real weight) sort last. */
__global__ void sample_kernel(int *tokens, float *logprobs, const float *logits, int V,
                              int n2, float temperature, int top_k, float top_p,
                              uint64_t seed, uint32_t step, const uint32_t *seq,
                              const uint32_t *pos, candidate *cand_all) {
    __shared__ double shd[BLOCK_REDUCE];
    __shared__ float sh_max;
    __shared__ int sh_arg;
    int b = blockIdx.x, tid = threadIdx.x;
    const float *z = logits + (size_t)b * V;
    candidate *cand = cand_all + (size_t)b * n2;

    // argmax, ties to the lowest index: the CPU's serial scan
    if (tid == 0) {
        int am = 0;
        float mx = z[0];
        for (int i = 1; i < V; i++) if (z[i] > mx) { mx = z[i]; am = i; }
        sh_max = mx;
        sh_arg = am;
    }
    __syncthreads();
    float maxv = sh_max;
    if (!isfinite(maxv)) {   // reported by the host
        if (tid == 0) tokens[b] = -1;
        return;
    }

    int token = sh_arg;
    if (temperature != 0.0f) {
        for (int i = tid; i < n2; i += blockDim.x) {
            candidate c;
            c.idx = i;
            c.w = i < V ? (float)exp((double)((z[i] - maxv) / temperature)) : -1.0f;
            cand[i] = c;
        }
        __syncthreads();
        // bitonic sort of n2 entries into "precedes" order, in global memory
        for (int size = 2; size <= n2; size <<= 1) {
            for (int stride = size >> 1; stride > 0; stride >>= 1) {
                for (int i = tid; i < n2; i += blockDim.x) {
                    int j = i ^ stride;
                    if (j <= i) continue;
                    candidate a = cand[i], c = cand[j];
                    bool up = (i & size) == 0;   // this run ascends in "precedes" order
                    bool swap = up ? precedes(c, a) : precedes(a, c);
                    if (swap) { cand[i] = c; cand[j] = a; }
                }
                __syncthreads();
            }
        }
        if (tid == 0) {
            int n = V;
            if (top_k > 0 && top_k < n) n = top_k;
            double mass = 0.0;
            for (int i = 0; i < n; i++) mass += cand[i].w;
            if (top_p < 1.0f) {
                double target = (double)top_p * mass, cum = 0.0;
                int keep = n;
                for (int i = 0; i < n; i++) {
                    cum += cand[i].w;
                    if (cum >= target) { keep = i + 1; break; }
                }
                n = keep;
                mass = 0.0;
                for (int i = 0; i < n; i++) mass += cand[i].w;
            }
            double u = uniform_keyed(seed, step, seq[b], pos[b], 0) * mass, cum = 0.0;
            int k = n - 1;
            for (int i = 0; i < n; i++) {
                cum += cand[i].w;
                if (u < cum) { k = i; break; }
            }
            sh_arg = cand[k].idx;
        }
        __syncthreads();
        token = sh_arg;
    }
    if (tid == 0) tokens[b] = token;

    if (logprobs) {
        // the model's own probability: temperature 1, no filtering
        double s = 0.0;
        for (int i = tid; i < V; i += blockDim.x) s += exp((double)z[i] - maxv);
        s = block_sum_double(s, shd);
        if (tid == 0) logprobs[b] = (float)((double)z[token] - maxv - log(s));
    }
}

extern "C" int opd_cuda_sample_tokens(opd_cuda *cu, int *tokens, float *logprobs,
                                      const float *logits, int B, int V,
                                      const opd_sampler_config *s, uint64_t seed,
                                      uint32_t step, const uint32_t *seq,
                                      const uint32_t *pos) {
    if (V < 1) return opd_set_error("opd_cuda_sample_tokens: vocab size %d < 1", V);
    if (!(s->temperature >= 0.0f) || !isfinite(s->temperature))
        return opd_set_error("opd_cuda_sample_tokens: temperature %g must be finite and >= 0", s->temperature);
    if (s->top_k < 0) return opd_set_error("opd_cuda_sample_tokens: top_k %d < 0", s->top_k);
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
        return opd_set_error("opd_cuda_sample_tokens: top_p %g not in (0, 1]", s->top_p);
    if (B <= 0) return 0;
    int n2 = 1;
    while (n2 < V) n2 <<= 1;
    candidate *cand = NULL;
    if (s->temperature != 0.0f) {
        cand = (candidate *)opd_cuda_scratch(cu, (size_t)B * n2 * sizeof(candidate));
        if (!cand) return -1;
    }
    sample_kernel<<<B, BLOCK_REDUCE, 0, cu->stream>>>(tokens, logprobs, logits, V, n2,
                                                      s->temperature, s->top_k, s->top_p,
                                                      seed, step, seq, pos, cand);
    KERNEL_CHECK();
    // a row with non-finite logits has token -1: name it, as the CPU does
    int *h = (int *)malloc((size_t)B * sizeof(int));
    if (!h) return opd_set_error("opd_cuda_sample_tokens: out of host memory");
    if (opd_cuda_download(cu, h, tokens, (size_t)B * sizeof(int)) != 0) { free(h); return -1; }
    for (int b = 0; b < B; b++)
        if (h[b] < 0) {
            free(h);
            return opd_set_error("opd_cuda_sample_tokens: non-finite logits in row %d", b);
        }
    free(h);
    return 0;
}
