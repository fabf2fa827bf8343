/* context.cu — device discovery, the context (cuBLAS handle + stream +
 * scratch) and device-memory helpers. */
#include <stdio.h>
#include <stdlib.h>

#include "common.cuh"

extern "C" int opd_cuda_available(char *why, size_t n) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        /* without a driver cudart says "driver version is insufficient" */
        if (why && n) snprintf(why, n, "cudaGetDeviceCount: %s; no usable NVIDIA driver/GPU here",
                               cudaGetErrorString(e));
        cudaGetLastError();   /* clear it: the caller may go on without CUDA */
        return 0;
    }
    if (count == 0) {
        if (why && n) snprintf(why, n, "no CUDA device found");
        return 0;
    }
    if (why && n) snprintf(why, n, "%d CUDA device(s)", count);
    return 1;
}

extern "C" int opd_cuda_create(opd_cuda **out, int device) {
    *out = NULL;
    char why[256];
    if (!opd_cuda_available(why, sizeof why))
        return opd_set_error("opd_cuda_create: %s", why);
    opd_cuda *cu = (opd_cuda *)calloc(1, sizeof *cu);
    if (!cu) return opd_set_error("opd_cuda_create: out of host memory");
    cu->device = device;
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaStreamCreate(&cu->stream);
    if (e != cudaSuccess) {
        free(cu);
        return opd_set_error("%s:%d: opd_cuda_create(device %d): %s", __FILE__,
                             __LINE__, device, cudaGetErrorString(e));
    }
    cublasStatus_t st = cublasCreate(&cu->cublas);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetStream(cu->cublas, cu->stream);
    /* plain fp32: TF32 tensor cores would round inputs to 10-bit mantissas,
     * far outside the tolerance against the CPU reference */
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetMathMode(cu->cublas, CUBLAS_PEDANTIC_MATH);
    if (st != CUBLAS_STATUS_SUCCESS) {
        if (cu->cublas) cublasDestroy(cu->cublas);
        cudaStreamDestroy(cu->stream);
        free(cu);
        return opd_set_error("%s:%d: opd_cuda_create: cuBLAS status %d", __FILE__,
                             __LINE__, (int)st);
    }
    *out = cu;
    return 0;
}

extern "C" void opd_cuda_destroy(opd_cuda *cu) {
    if (!cu) return;
    cudaStreamSynchronize(cu->stream);
    cudaFree(cu->scratch);
    cublasDestroy(cu->cublas);
    cudaStreamDestroy(cu->stream);
    free(cu);
}

extern "C" int opd_cuda_sync(opd_cuda *cu) {
    CUDA_CHECK(cudaStreamSynchronize(cu->stream));
    return 0;
}

void *opd_cuda_scratch(opd_cuda *cu, size_t nbytes) {
    if (nbytes <= cu->scratch_bytes) return cu->scratch;
    /* the old buffer may still be read by queued work */
    cudaError_t e = cudaStreamSynchronize(cu->stream);
    if (e == cudaSuccess) e = cudaFree(cu->scratch);
    cu->scratch = NULL;
    cu->scratch_bytes = 0;
    if (e == cudaSuccess) e = cudaMalloc(&cu->scratch, nbytes);
    if (e != cudaSuccess) {
        cu->scratch = NULL;
        opd_set_error("%s:%d: scratch of %zu bytes: %s", __FILE__, __LINE__,
                      nbytes, cudaGetErrorString(e));
        return NULL;
    }
    cu->scratch_bytes = nbytes;
    return cu->scratch;
}

extern "C" int opd_cuda_alloc(opd_cuda *cu, void **dptr, size_t nbytes) {
    *dptr = NULL;
    cudaError_t e = cudaMalloc(dptr, nbytes ? nbytes : 1);
    if (e != cudaSuccess) {
        *dptr = NULL;
        return opd_set_error("%s:%d: cudaMalloc(%zu bytes): %s", __FILE__, __LINE__,
                             nbytes, cudaGetErrorString(e));
    }
    CUDA_CHECK(cudaMemsetAsync(*dptr, 0, nbytes, cu->stream));
    return 0;
}

extern "C" void opd_cuda_free(void *dptr) {
    if (dptr) cudaFree(dptr);
}

extern "C" int opd_cuda_upload(opd_cuda *cu, void *dst, const void *host_src, size_t nbytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, nbytes, cudaMemcpyHostToDevice, cu->stream));
    CUDA_CHECK(cudaStreamSynchronize(cu->stream));   /* host_src may be freed next */
    return 0;
}

extern "C" int opd_cuda_download(opd_cuda *cu, void *host_dst, const void *src, size_t nbytes) {
    CUDA_CHECK(cudaMemcpyAsync(host_dst, src, nbytes, cudaMemcpyDeviceToHost, cu->stream));
    CUDA_CHECK(cudaStreamSynchronize(cu->stream));
    return 0;
}

extern "C" int opd_cuda_zero(opd_cuda *cu, void *dptr, size_t nbytes) {
    CUDA_CHECK(cudaMemsetAsync(dptr, 0, nbytes, cu->stream));
    return 0;
}

extern "C" int opd_cuda_copy(opd_cuda *cu, void *dst, const void *src, size_t nbytes) {
    if (nbytes == 0) return 0;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, cu->stream));
    return 0;
}
