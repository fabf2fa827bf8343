/* libFuzzer harness: opd_hf_read_config of a Hugging Face config.json. */
#include "fuzz_common.h"
#include "opd.h"
#include "opd_hf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("config.json", data, size);
    opd_config cfg;
    /* a config it accepts is one the model can be built from */
    if (opd_hf_read_config(fuzz_dir(), &cfg) == 0 && opd_config_validate(&cfg, "fuzz") != 0) abort();
    unlink(path);
    return 0;
}
