/* libFuzzer harness: opd_model_load of a checkpoint with optimizer state
 * (and, when that fails, as weights only). */
#include "fuzz_common.h"
#include "opd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("in.safetensors", data, size);
    opd_model m;
    opd_adamw opt;
    if (opd_model_load(&m, path, &opt) == 0) {
        if (opt.n != m.num_params) abort();
        opd_adamw_free(&opt);
        opd_model_free(&m);
    } else if (opd_model_load(&m, path, NULL) == 0) {
        opd_model_free(&m);
    }
    unlink(path);
    return 0;
}
