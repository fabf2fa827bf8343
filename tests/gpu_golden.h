/* gpu_golden.h — the golden tensors (golden/) through the CUDA path: every
 * golden layer through its opd_cuda_* kernel, and the whole golden step
 * through the GPU step driver (opd_cuda_distill_step), each written as a
 * candidate safetensors file with the golden names, for opd_golden_check.
 *
 * Linked into tests/gpu_check (real kernels, a GPU) and into
 * tests/test_cuda_shim (tests/cuda_host_shim.c: the kernels emulated by the
 * CPU reference, no GPU: this checks the driver's orchestration only). */
#ifndef OPD_GPU_GOLDEN_H
#define OPD_GPU_GOLDEN_H

#include <stdio.h>
#include "opd_cuda.h"

/* Read golden_layers.safetensors at golden_path, run each layer's golden
 * inputs through the opd_cuda_* kernels and write every tensor of the
 * golden file to out_path: kernel outputs where there is a kernel, the
 * reference's own values for inputs and for the few outputs without a GPU
 * kernel (listed on `log`). Returns 0, or -1 with opd_last_error(). */
int gpu_golden_layers(opd_cuda *cu, const char *golden_path, const char *out_path, FILE *log);

/* Read golden_step.safetensors, upload its weights, and run one
 * opd_cuda_distill_step per loss kind from those weights (golden/README.md:
 * step k = 0, H = 8, seed 1234, AdamW defaults); write the rollout, the
 * scored tokens, every activation of both models, log-probs, losses,
 * dlogits, gradients, updated weights and moments under the golden names.
 * The teacher's per-layer activations come from a full forward
 * (opd_cuda_model_forward) over the step's tokens, since the step itself
 * scores with the one-layer inference forward. */
int gpu_golden_step(opd_cuda *cu, const char *golden_path, const char *out_path, FILE *log);

#endif
