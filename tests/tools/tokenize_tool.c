// Drives runner/model/tokenizer for tests/integration/test_tokenizer*.py: one input line
// (up to "\n") in, one output line out, so the Python side compares with transformers.
//
//   tokenize_tool encode VOCAB LOWER STRIP < lines   ids without specials
//   tokenize_tool text   VOCAB LOWER STRIP MAX_LEN   [CLS] ids [SEP] (padding dropped)
//   tokenize_tool words  VOCAB LOWER STRIP MAX_LEN   words separated by TAB; prints
//                                                    "ids<TAB>word_of_token<TAB>labels"
//                                                    (labels: word index as its tag)
//   tokenize_tool dir    MODEL_DIR MODE [MAX_LEN]    as above, tokenizer_load_dir()
//   tokenize_tool save   VOCAB LOWER STRIP OUT_DIR   tokenizer_save_dir() (no stdin)
//   tokenize_tool dir    MODEL_DIR save OUT_DIR      the same for a loaded directory
// LOWER, STRIP: 0 or 1. Errors: the one-line reason on stderr, exit with its code.
#include "runner/error.h"
#include "runner/model/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_ids(const int32_t *ids, int n) {
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
}

static int run(const tokenizer *t, const char *mode, int max_len) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int32_t *ids = malloc((size_t)(max_len > 0 ? max_len : 1) * 3 * sizeof *ids);
    int32_t *words = ids + (max_len > 0 ? max_len : 1), *labels = words + (max_len > 0 ? max_len : 1);
    int rc = 0;
    while (!rc && (len = getline(&line, &cap, stdin)) >= 0) {
        if (len > 0 && line[len - 1] == '\n') line[--len] = '\0';
        if (strcmp(mode, "encode") == 0) {
            int32_t *out = NULL;
            int n = 0;
            rc = tokenizer_encode(t, line, &out, &n);
            print_ids(out, n);
            free(out);
        } else if (strcmp(mode, "text") == 0) {
            int n = 0;
            rc = tokenizer_encode_text(t, line, max_len, ids, NULL, &n);
            print_ids(ids, n);
        } else if (strcmp(mode, "words") == 0) {
            int nwords = 1;
            for (char *p = line; *p; p++) nwords += *p == '\t';
            const char **list = malloc((size_t)nwords * sizeof *list);
            int32_t *tags = malloc((size_t)nwords * sizeof *tags);
            char *save = line;
            for (int w = 0; w < nwords; w++) {
                list[w] = save;
                tags[w] = w;
                char *tab = strchr(save, '\t');
                if (tab) {
                    *tab = '\0';
                    save = tab + 1;
                }
            }
            int n = 0;
            rc = tokenizer_encode_words(t, list, len ? nwords : 0, max_len, ids, NULL, words, &n);
            tokenizer_align_labels(words, max_len, tags, labels);
            print_ids(ids, n);
            putchar('\t');
            print_ids(words, n);
            putchar('\t');
            print_ids(labels, max_len);
            free(list);
            free(tags);
        } else {
            fprintf(stderr, "unknown mode %s\n", mode);
            rc = 2;
        }
        putchar('\n');
    }
    free(line);
    free(ids);
    return rc;
}

int main(int argc, char **argv) {
    tokenizer *t = NULL;
    const char *mode;
    int max_len = 0, rc;
    if (argc >= 4 && strcmp(argv[1], "dir") == 0) {
        mode = argv[3];
        max_len = argc > 4 ? atoi(argv[4]) : 0;
        rc = tokenizer_load_dir(argv[2], &t);
    } else if (argc >= 5) {
        mode = argv[1];
        max_len = argc > 5 ? atoi(argv[5]) : 0;
        rc = tokenizer_load(argv[2], atoi(argv[3]) != 0, atoi(argv[4]) != 0, &t);
    } else {
        fprintf(stderr, "usage: tokenize_tool MODE VOCAB LOWER STRIP [MAX_LEN] | dir MODEL_DIR MODE [MAX_LEN]\n");
        return 2;
    }
    if (!rc && strcmp(mode, "save") == 0)
        rc = tokenizer_save_dir(t, argv[argc - 1], 512, NULL); // OUT_DIR: the last argument
    else if (!rc)
        rc = run(t, mode, max_len);
    if (rc && error_message()[0]) fprintf(stderr, "%s\n", error_message());
    tokenizer_free(t);
    return rc;
}
