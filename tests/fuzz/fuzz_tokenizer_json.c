// Fuzz target for tokenizers' JSON files: arbitrary bytes split at "\n\n\n" into
// tokenizer_config.json, tokenizer.json and a text (one part: tokenizer.json alone; two:
// the config and tokenizer.json). Loading the directory (tokenizer_load_dir: the config's
// settings, the WordPiece vocabulary of tokenizer.json when there is no vocab.txt) must
// succeed or fail with EXIT_BAD_INPUT; a tokenizer that loads must encode the text without
// crashing, overrunning or giving an id outside its vocabulary.
#include "runner/error.h"
#include "runner/model/tokenizer.h"
#include "tests/fuzz/fuzz_encode_checks.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MODEL                                                                                      \
    "{\"version\":\"1.0\",\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\","              \
    "\"continuing_subword_prefix\":\"##\",\"max_input_chars_per_word\":100,\"vocab\":{"            \
    "\"[PAD]\":0,\"[UNK]\":1,\"[CLS]\":2,\"[SEP]\":3,\"[MASK]\":4,\"hello\":5,\"##s\":6,"          \
    "\"caf\\u00e9\":7,\"\\u6771\":8,\"a\":9}}}"
#define SEED_ONE                                                                                   \
    "{\"do_lower_case\": true, \"strip_accents\": null}\n\n\n" MODEL                               \
    "\n\n\n\x07Hellos caf\xc3\xa9 [MASK]\tA"
#define SEED_TWO MODEL
#define SEED_THREE                                                                                 \
    "{\"tokenize_chinese_chars\": false, \"do_lower_case\": false}\n\n\n" MODEL                    \
    "\n\n\n\x30\xe6\x9d\xb1 a\ta"
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

static void remove_file(const char *name) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

static const uint8_t *find_split(const uint8_t *data, size_t size) {
    for (size_t i = 0; i + 3 <= size; i++)
        if (memcmp(data + i, "\n\n\n", 3) == 0) return data + i;
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/fuzz_tokenizer_json.%d", (int)getpid());
        mkdir(dir, 0700);
    }
    const uint8_t *end = data + size;
    const uint8_t *first = find_split(data, size);
    const uint8_t *second = first ? find_split(first + 3, (size_t)(end - first - 3)) : NULL;
    const uint8_t *text = NULL;
    if (!first) {
        remove_file("tokenizer_config.json");
        write_file("tokenizer.json", data, size);
    } else {
        write_file("tokenizer_config.json", data, (size_t)(first - data));
        const uint8_t *model = first + 3, *model_end = second ? second : end;
        write_file("tokenizer.json", model, (size_t)(model_end - model));
        if (second) text = second + 3;
    }
    tokenizer *t = NULL;
    int rc = tokenizer_load_dir(dir, &t);
    if (rc != 0 && rc != EXIT_BAD_INPUT) abort();
    if ((rc == 0) != (t != NULL)) abort();
    if (t && tokenizer_vocab_size(t) < 1) abort();
    if (t && text && text < end) fuzz_check_encodings(t, text, (size_t)(end - text));
    tokenizer_free(t);
    return 0;
}
