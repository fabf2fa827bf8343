/* common.cuh — what every CUDA file of libopd shares: the context struct,
 * error checks that report file:line through opd_set_error (the library never
 * exits), and block-reduction helpers. Internal: not installed. */
#ifndef OPD_CUDA_COMMON_CUH
#define OPD_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "opd_cuda.h"

struct opd_cuda {
    int device;
    cudaStream_t stream;
    cublasHandle_t cublas;
    void *scratch;          /* grown on demand by opd_cuda_scratch */
    size_t scratch_bytes;
};

/* Return -1 from the calling function with file:line and the CUDA message. */
#define CUDA_CHECK(call) do { \
    cudaError_t err_ = (call); \
    if (err_ != cudaSuccess) \
        return opd_set_error("%s:%d: %s: %s", __FILE__, __LINE__, #call, \
                             cudaGetErrorString(err_)); \
} while (0)

#define CUBLAS_CHECK(call) do { \
    cublasStatus_t st_ = (call); \
    if (st_ != CUBLAS_STATUS_SUCCESS) \
        return opd_set_error("%s:%d: %s: cuBLAS status %d", __FILE__, __LINE__, \
                             #call, (int)st_); \
} while (0)

/* after a kernel launch: a bad configuration shows up here */
#define KERNEL_CHECK() CUDA_CHECK(cudaGetLastError())

static inline unsigned int ceil_div(size_t a, size_t b) { return (unsigned int)((a + b - 1) / b); }

/* At least `nbytes` of device scratch, valid until the next call (one
 * buffer per context: the functions using it run one at a time on the
 * context's stream). Returns NULL with the error set. */
void *opd_cuda_scratch(opd_cuda *cu, size_t nbytes);

/* Block-wide reductions for blocks of BLOCK_REDUCE threads (a power of two,
 * <= 1024). The tree is fixed, so results do not depend on timing. Every
 * thread receives the result. `sh` holds BLOCK_REDUCE elements. */
#define BLOCK_REDUCE 256

__device__ inline double block_sum_double(double x, double *sh) {
    int tid = threadIdx.x;
    sh[tid] = x;
    __syncthreads();
    for (int s = BLOCK_REDUCE / 2; s > 0; s >>= 1) {
        if (tid < s) sh[tid] += sh[tid + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();   /* sh may be reused right after */
    return r;
}

__device__ inline float block_max_float(float x, float *sh) {
    int tid = threadIdx.x;
    sh[tid] = x;
    __syncthreads();
    for (int s = BLOCK_REDUCE / 2; s > 0; s >>= 1) {
        if (tid < s) sh[tid] = fmaxf(sh[tid], sh[tid + s]);
        __syncthreads();
    }
    float r = sh[0];
    __syncthreads();
    return r;
}

#endif /* OPD_CUDA_COMMON_CUH */
