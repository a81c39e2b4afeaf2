// Fuzz target: arbitrary bytes split at the first "\n\n\n" into a vocabulary and a text.
// Loading must succeed or fail with EXIT_BAD_INPUT; encoding (plain, as words split at
// TAB, and packed to a length taken from the first byte) must never crash or overrun.
#include "runner/error.h"
#include "runner/model/tokenizer.h"
#include "tests/fuzz/fuzz_encode_checks.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char VOCAB[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nun\n##aff\n##able\nhello\n"
                            ",\n!\ncafe\n東\n##京\na\n##a\n";

const char *const fuzz_seeds[] = {
    "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhe\n##llo\n\n\n\x05Hello, wörld! 東京 [MASK]\tcafé",
    "\x10unaffable\xcc\x81 \xf0\x9f\x98\x80 x\x01y\t[SEP]\t\xff\xfe",
    "\x02\xe3\x80\x80\xc2\xa0\xe2\x80\x8b aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    NULL,
};
const size_t fuzz_seed_sizes[] = {
    sizeof "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhe\n##llo\n\n\n\x05Hello, wörld! 東京 [MASK]\tcafé" - 1,
    sizeof "\x10unaffable\xcc\x81 \xf0\x9f\x98\x80 x\x01y\t[SEP]\t\xff\xfe" - 1,
    sizeof "\x02\xe3\x80\x80\xc2\xa0\xe2\x80\x8b aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" - 1,
    0,
};

static tokenizer *load(const uint8_t *data, size_t size, bool lower, bool strip) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz_tokenizer.%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    fwrite(data, 1, size, f);
    fclose(f);
    tokenizer *t = NULL;
    int rc = tokenizer_load(path, lower, strip, &t);
    if (rc != 0 && rc != EXIT_BAD_INPUT) abort();
    unlink(path);
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *split = NULL;
    for (size_t i = 0; i + 3 <= size && !split; i++)
        if (memcmp(data + i, "\n\n\n", 3) == 0) split = data + i;
    tokenizer *t = NULL;
    if (split) {
        t = load(data, (size_t)(split - data), size & 1, size & 2);
        size -= (size_t)(split + 3 - data);
        data = split + 3;
    }
    if (!t) t = load((const uint8_t *)VOCAB, sizeof VOCAB - 1, true, size & 1);
    if (!t || size == 0) {
        tokenizer_free(t);
        return 0;
    }
    fuzz_check_encodings(t, data, size);
    tokenizer_free(t);
    return 0;
}
