// Fuzz target for RoBERTa's byte-level BPE: arbitrary bytes split at "\n\n\n" into
// vocab.json, merges.txt and a text. Loading the directory must succeed or fail with
// EXIT_BAD_INPUT; encoding (plain, as words split at TAB, and packed to a length taken
// from the first byte) must never crash, overrun, or give an id outside the vocabulary.
// Inputs whose files do not load are encoded with a small built-in vocabulary, so the
// encoder is fuzzed whatever the loader makes of them.
#include "runner/error.h"
#include "runner/model/tokenizer.h"
#include "tests/fuzz/fuzz_encode_checks.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// Every byte's character (so nothing is unknown), the specials and a few merges.
static const char MERGES[] = "#version: 0.2\n\xc4\xa0 t\nt h\n\xc4\xa0t h\nh e\n\xc4\xa0th e\n";

#define SEED_ONE                                                                                   \
    "{\"<s>\":0,\"<pad>\":1,\"</s>\":2,\"<unk>\":3,\"<mask>\":4,\"a\":5}\n\n\n"                    \
    "#version: 0.2\na a\n\n\n\x05 aaa <mask> a\t<s>x"
#define SEED_TWO "\x11The theme, the\xc2\xa0 <mask>\t\xf0\x9f\x98\x80 \xff\xfe 'll  \t"
#define SEED_THREE "{\"<s>\":0}\n\n\nnot a pair\n\n\n\x40zzz"
const char *const fuzz_seeds[] = {SEED_ONE, SEED_TWO, SEED_THREE, NULL};
const size_t fuzz_seed_sizes[] = {sizeof SEED_ONE - 1, sizeof SEED_TWO - 1, sizeof SEED_THREE - 1,
                                  0};

static char dir[64];

static void write_file(const char *name, const void *data, size_t size) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fwrite(data, 1, size, f);
    fclose(f);
}

static void write_builtin(void) {
    // bytes_to_unicode's 256 characters: the printable Latin-1 bytes stand for
    // themselves, the others are U+0100 onwards.
    char json[8192];
    size_t used = (size_t)snprintf(json, sizeof json,
                                   "{\"<s>\":0,\"<pad>\":1,\"</s>\":2,\"<unk>\":3,\"<mask>\":4");
    int id = 5, next = 256;
    for (int byte = 0; byte < 256; byte++) {
        bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) ||
                         (byte >= 0xAE && byte <= 0xFF);
        int cp = printable ? byte : next++;
        if (cp == '"' || cp == '\\')
            used += (size_t)snprintf(json + used, sizeof json - used, ",\"\\%c\":%d", cp, id++);
        else if (cp < 0x80)
            used += (size_t)snprintf(json + used, sizeof json - used, ",\"%c\":%d", cp, id++);
        else
            used += (size_t)snprintf(json + used, sizeof json - used, ",\"\\u%04x\":%d", cp, id++);
    }
    used += (size_t)snprintf(json + used, sizeof json - used,
                             ",\"\xc4\xa0t\":%d,\"th\":%d,\"\xc4\xa0th\":%d,\"he\":%d,"
                             "\"\xc4\xa0the\":%d}",
                             id, id + 1, id + 2, id + 3, id + 4);
    write_file("vocab.json", json, used);
    write_file("merges.txt", MERGES, sizeof MERGES - 1);
}

static const uint8_t *next_part(const uint8_t **data, size_t *size, size_t *part) {
    const uint8_t *start = *data;
    for (size_t i = 0; i + 3 <= *size; i++)
        if (memcmp(start + i, "\n\n\n", 3) == 0) {
            *part = i;
            *data = start + i + 3;
            *size -= i + 3;
            return start;
        }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/fuzz_tokenizer_bpe.%d", (int)getpid());
        mkdir(dir, 0700);
    }
    size_t vocab_len = 0, merges_len = 0;
    const uint8_t *vocab = next_part(&data, &size, &vocab_len);
    const uint8_t *merges = vocab ? next_part(&data, &size, &merges_len) : NULL;
    tokenizer *t = NULL;
    if (vocab && merges) {
        write_file("vocab.json", vocab, vocab_len);
        write_file("merges.txt", merges, merges_len);
        int rc = tokenizer_load_dir(dir, &t);
        if (rc != 0 && rc != EXIT_BAD_INPUT) abort();
    }
    if (!t) {
        write_builtin();
        if (tokenizer_load_dir(dir, &t) != 0) abort();
    }
    if (size == 0) {
        tokenizer_free(t);
        return 0;
    }
    fuzz_check_encodings(t, data, size);
    tokenizer_free(t);
    return 0;
}
