/* The libFuzzer entry point every target defines; replay_main.c calls it
 * when the targets are built without libFuzzer. */
#ifndef PX_TESTS_FUZZ_FUZZ_H
#define PX_TESTS_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Invariant checks must fire in release builds too, so not assert(). */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#endif
