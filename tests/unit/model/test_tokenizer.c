// tokenizer: hand-checked encodings of the BERT rules, sequence packing and label
// alignment, save/load, and bad vocabularies refused with EXIT_BAD_INPUT.
// (The id-for-id comparison with transformers is tests/integration/test_tokenizer.py.)
#include "check.h"

#include "runner/error.h"
#include "runner/model/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static const char *path_of(const char *name) {
    static char path[4][160];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", dir, name);
    return p;
}

static const char *write_file(const char *name, const char *text, size_t len) {
    const char *p = path_of(name);
    FILE *f = fopen(p, "wb");
    fwrite(text, 1, len, f);
    fclose(f);
    return p;
}

static const char *write_text(const char *name, const char *text) {
    return write_file(name, text, strlen(text));
}

// ids:      0      1      2      3      4       5    6     7       8       9    10
static const char VOCAB[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nun\n##aff\n##able\nhello\n,\n!\n"
//   11     12     13      14    15     16   17  18   19      20      21
    "cafe\nnaive\nstrasse\nst\n##ras\n##se\n東\n京\nworld\nCafé\r\n##s\r"
//   22   23
    "a\n##a\n";

// Encode `text` and compare with the expected ids (terminated by -2).
static void expect_ids(const tokenizer *t, const char *text, const int32_t *expected) {
    int32_t *ids = NULL;
    int n = 0;
    CHECK_INT(tokenizer_encode(t, text, &ids, &n), 0);
    int m = 0;
    while (expected[m] != -2) m++;
    bool same = n == m && (n == 0 || memcmp(ids, expected, (size_t)n * sizeof *ids) == 0);
    if (!same) {
        fprintf(stderr, "  \"%s\":", text);
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    CHECK(same);
    free(ids);
}
#define IDS(...) ((const int32_t[]){__VA_ARGS__, -2})

static void test_rules(void) {
    tokenizer *t = NULL;
    CHECK_INT(tokenizer_load(write_file("vocab.txt", VOCAB, sizeof VOCAB - 1), true, true, &t), 0);
    if (!t) return;
    CHECK_INT(tokenizer_vocab_size(t), 24);
    CHECK_INT(tokenizer_token_id(t, "Café"), 20);     // "\r\n" ends a line
    CHECK_INT(tokenizer_token_id(t, "##s"), 21);      // so does a lone "\r"
    CHECK_INT(tokenizer_token_id(t, "absent"), -1);
    CHECK_STR(tokenizer_token(t, 8), "hello");
    CHECK(tokenizer_token(t, 24) == NULL && tokenizer_token(t, -1) == NULL);
    CHECK_INT(tokenizer_cls_id(t), 2);
    CHECK_INT(tokenizer_sep_id(t), 3);
    CHECK_INT(tokenizer_pad_id(t), 0);
    CHECK_INT(tokenizer_unk_id(t), 1);
    CHECK_INT(tokenizer_mask_id(t), 4);

    expect_ids(t, "unaffable", IDS(5, 6, 7));                 // greedy longest match
    expect_ids(t, "Hello,World!", IDS(8, 9, 19, 10));         // punctuation split, lower
    expect_ids(t, "CAFÉ naïve", IDS(11, 12));                 // accents stripped
    expect_ids(t, "cafe\xcc\x81", IDS(11));                   // combining acute (NFD input)
    expect_ids(t, "Strasses", IDS(13, 21));                   // strasse ##s
    expect_ids(t, "Strass", IDS(14, 15, 21));                 // st ##ras ##s
    expect_ids(t, "東京", IDS(17, 18));                        // CJK split into words
    expect_ids(t, "unknown", IDS(1));                         // no match: [UNK]
    expect_ids(t, "unaffablex", IDS(1));                      // a part fails: whole word [UNK]
    expect_ids(t, "hello\x01\x7fworld", IDS(1));              // controls dropped: "helloworld"
    expect_ids(t, "hello\xe2\x80\x8b" "world", IDS(1));       // U+200B (Cf) dropped too
    expect_ids(t, "hello\xc2\xa0world\xe3\x80\x80!", IDS(8, 19, 10)); // NBSP, ideographic space
    expect_ids(t, "hello\xff\xfeworld", IDS(1));              // invalid UTF-8 dropped
    expect_ids(t, "hello [MASK] [SEP]x", IDS(8, 4, 3, 1));    // literal specials kept whole
    expect_ids(t, "[mask]", IDS(1, 1, 1));                    // lower case is not special
    expect_ids(t, "", IDS(-2));
    expect_ids(t, " \t\r ", IDS(-2));

    // 100 characters are one word; 101 are [UNK] whatever the vocabulary says.
    char word[120];
    memset(word, 'a', 100);
    word[100] = '\0';
    int32_t *ids = NULL;
    int n = 0;
    CHECK_INT(tokenizer_encode(t, word, &ids, &n), 0);
    CHECK_INT(n, 100);
    CHECK(n == 100 && ids[0] == 22 && ids[99] == 23);
    free(ids);
    memset(word, 'a', 101);
    word[101] = '\0';
    expect_ids(t, word, IDS(1));

    // Appending: a second call adds to the same array.
    ids = NULL;
    n = 0;
    CHECK_INT(tokenizer_encode(t, "hello", &ids, &n), 0);
    CHECK_INT(tokenizer_encode(t, "world", &ids, &n), 0);
    CHECK(n == 2 && ids[0] == 8 && ids[1] == 19);
    free(ids);
    tokenizer_free(t);

    // Cased, accents kept.
    CHECK_INT(tokenizer_load(path_of("vocab.txt"), false, false, &t), 0);
    if (!t) return;
    expect_ids(t, "Café hello Hello", IDS(20, 8, 1));
    tokenizer_free(t);
}

static void test_sequences(void) {
    tokenizer *t = NULL;
    CHECK_INT(tokenizer_load(path_of("vocab.txt"), true, true, &t), 0);
    if (!t) return;
    int32_t ids[8], mask[8], words[8], labels[8];
    int n = 0;
    CHECK_INT(tokenizer_encode_text(t, "hello world", 8, ids, mask, &n), 0);
    const int32_t want_ids[8] = {2, 8, 19, 3, 0, 0, 0, 0}, want_mask[8] = {1, 1, 1, 1, 0, 0, 0, 0};
    CHECK_INT(n, 4);
    CHECK(memcmp(ids, want_ids, sizeof ids) == 0);
    CHECK(memcmp(mask, want_mask, sizeof mask) == 0);

    // Words: "unaffable" is three pieces; truncation to 6 keeps [CLS] + 4 + [SEP].
    const char *sentence[] = {"unaffable", "hello", "world", "!"};
    const int32_t tags[] = {7, 8, 9, 10};
    CHECK_INT(tokenizer_encode_words(t, sentence, 4, 6, ids, mask, words, &n), 0);
    CHECK_INT(n, 6);
    const int32_t w_ids[6] = {2, 5, 6, 7, 8, 3}, w_words[6] = {-1, 0, 0, 0, 1, -1};
    CHECK(memcmp(ids, w_ids, sizeof w_ids) == 0);
    CHECK(memcmp(words, w_words, sizeof w_words) == 0);
    tokenizer_align_labels(words, 6, tags, labels);
    const int32_t w_labels[6] = {-100, 7, -100, -100, 8, -100};
    CHECK(memcmp(labels, w_labels, sizeof w_labels) == 0);

    // No truncation, padding: a word that yields nothing ("\x01") has no token.
    const char *odd[] = {"hello", "\x01", "world"};
    CHECK_INT(tokenizer_encode_words(t, odd, 3, 8, ids, mask, words, &n), 0);
    const int32_t o_words[8] = {-1, 0, 2, -1, -1, -1, -1, -1};
    CHECK_INT(n, 4);
    CHECK(memcmp(words, o_words, sizeof o_words) == 0);
    CHECK(memcmp(mask, want_mask, sizeof want_mask) == 0);

    CHECK_INT(tokenizer_encode_words(t, odd, 3, 1, ids, mask, words, &n), EXIT_USAGE);
    CHECK_INT(tokenizer_encode_text(t, "x", 0, ids, mask, &n), EXIT_USAGE);
    // max_len 2: only [CLS] [SEP]
    CHECK_INT(tokenizer_encode_text(t, "hello world", 2, ids, mask, &n), 0);
    CHECK(n == 2 && ids[0] == 2 && ids[1] == 3);
    tokenizer_free(t);
}

static void test_save_and_load_dir(void) {
    tokenizer *t = NULL, *u = NULL;
    CHECK_INT(tokenizer_load(path_of("vocab.txt"), false, true, &t), 0);
    if (!t) return;
    char model[160];
    snprintf(model, sizeof model, "%s/model", dir);
    CHECK_INT(mkdir(model, 0755), 0);
    CHECK_INT(tokenizer_save_dir(t, model, 128, NULL), 0);
    CHECK_INT(tokenizer_load_dir(model, &u), 0);
    if (u) {
        CHECK_INT(tokenizer_vocab_size(u), tokenizer_vocab_size(t));
        for (int i = 0; i < tokenizer_vocab_size(t); i++)
            CHECK_STR(tokenizer_token(u, i), tokenizer_token(t, i));
        expect_ids(u, "Café cafÉ naïve", IDS(1, 1, 12)); // cased ("Cafe" unknown), no accents
    }
    CHECK_INT(tokenizer_save_dir(t, "/nonexistent-dir", 8, NULL), EXIT_OUTPUT);
    CHECK(strstr(error_message(), "/nonexistent-dir") != NULL);
    tokenizer_free(u);
    tokenizer_free(t);
}

static void expect_bad_vocab(const char *path, const char *needle) {
    tokenizer *t = (tokenizer *)1;
    error_clear();
    CHECK_INT(tokenizer_load(path, true, true, &t), EXIT_BAD_INPUT);
    CHECK(t == NULL);
    CHECK(strstr(error_message(), path) != NULL);
    if (!strstr(error_message(), needle))
        fprintf(stderr, "  reason \"%s\" lacks \"%s\"\n", error_message(), needle);
    CHECK(strstr(error_message(), needle) != NULL);
}

static void test_bad_vocab(void) {
    expect_bad_vocab(path_of("missing.txt"), "cannot open");
    expect_bad_vocab(dir, "not a regular file");
    expect_bad_vocab(write_file("empty.txt", "", 0), "empty");
    expect_bad_vocab(write_text("nounk.txt", "[PAD]\n[CLS]\n[SEP]\nhello\n"), "[UNK]");
    expect_bad_vocab(write_text("nosep.txt", "[PAD]\n[UNK]\n[CLS]\n"), "[SEP]");
    expect_bad_vocab(write_text("utf8.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n\xff\xfe\n"),
                     "UTF-8");
    expect_bad_vocab(write_file("nul.txt", "[PAD]\n[UNK]\0\n[CLS]\n[SEP]\n", 26), "NUL");
    static char long_token[3000];
    memcpy(long_token, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n", 24);
    memset(long_token + 24, 'x', 2000);
    expect_bad_vocab(write_file("long.txt", long_token, 2024), "token of 2000 bytes");
    // A binary file (a safetensors header, say) given as vocab.txt
    expect_bad_vocab(write_file("binary.txt", "\x10\0\0\0\0\0\0\0{\"a\":1}", 15), "NUL");

    char model[160];
    snprintf(model, sizeof model, "%s/badcfg", dir);
    CHECK_INT(mkdir(model, 0755), 0);
    char p[200];
    snprintf(p, sizeof p, "%s/vocab.txt", model);
    FILE *f = fopen(p, "wb");
    fwrite(VOCAB, 1, sizeof VOCAB - 1, f);
    fclose(f);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", model);
    f = fopen(p, "wb");
    fputs("{\"do_lower_case\": \"yes\"}", f);
    fclose(f);
    tokenizer *t = NULL;
    CHECK_INT(tokenizer_load_dir(model, &t), EXIT_BAD_INPUT);
    CHECK(strstr(error_message(), "do_lower_case") != NULL);
    f = fopen(p, "wb");
    fputs("{not json", f);
    fclose(f);
    CHECK_INT(tokenizer_load_dir(model, &t), EXIT_BAD_INPUT);
    CHECK(strstr(error_message(), "tokenizer_config.json") != NULL);
    CHECK(t == NULL);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/test_tokenizer.XXXXXX");
    if (!mkdtemp(dir)) return 1;
    test_rules();
    test_sequences();
    test_save_and_load_dir();
    test_bad_vocab();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_summary();
}
