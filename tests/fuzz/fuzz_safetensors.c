/* libFuzzer harness: opd_st_read on arbitrary bytes. */
#include "fuzz_common.h"
#include "opd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("in.safetensors", data, size);
    opd_safetensors st;
    if (opd_st_read(path, &st) == 0) {
        /* every tensor is findable by name through the index */
        for (int i = 0; i < st.n; i++)
            if (opd_st_find(&st, st.t[i].name) != &st.t[i]) abort();
        opd_st_free(&st);
    }
    unlink(path);
    return 0;
}
