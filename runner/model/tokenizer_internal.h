#pragma once
// Shared by the tokenizer's two halves: tokenizer.c (WordPiece, loading, packing into
// model inputs) and tokenizer_bpe.c (RoBERTa's byte-level BPE). Not for other modules.
#include "runner/model/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    VOCAB_MAX_BYTES = 256 * 1024 * 1024, // a vocabulary is a few MB; refuse absurd files
    VOCAB_MAX_TOKEN_BYTES = 1024,
    SPECIAL_COUNT = 5,
};
// Slots of tokenizer.special: what [PAD]/<pad>, [UNK]/<unk>, [CLS]/<s>, [SEP]/</s> and
// [MASK]/<mask> are called in the vocabulary is in tokenizer.special_names.
enum { SPECIAL_PAD, SPECIAL_UNK, SPECIAL_CLS, SPECIAL_SEP, SPECIAL_MASK };

typedef struct tokenizer_bpe tokenizer_bpe;

struct tokenizer {
    char *text;          // the vocabulary's strings (one allocation)
    const char **tokens; // (size) id -> token
    int size;
    int32_t *slots;   // open-addressing hash table of ids (-1 empty), token -> id
    size_t slot_mask; // table size - 1 (a power of two)
    bool lowercase, strip_accents, chinese_chars; // WordPiece normalisation
    bool add_prefix_space;                        // BPE: encode a text as if it began with a space
    const char *const *special_names;             // (SPECIAL_COUNT)
    int32_t special[SPECIAL_COUNT];               // ids, -1 when absent
    tokenizer_bpe *bpe;                           // NULL for WordPiece
};

typedef struct {
    int32_t *ids;   // (n) token ids
    int32_t *words; // (n) source word of each token
    int n, cap;
} token_list;

bool token_list_push(token_list *l, int32_t id, int32_t word);
// FNV-1a of `len` bytes: the hash of the vocabulary and merge tables.
uint64_t tokenizer_hash_bytes(const char *s, size_t len);
// The id of `len` bytes at s, or -1.
int32_t tokenizer_vocab_lookup(const tokenizer *t, const char *s, size_t len);
// Add token `id` (t->tokens[id]) to the lookup table; a duplicate maps to the later id.
void tokenizer_vocab_insert(tokenizer *t, int32_t id);
// Hash tokens[0..size) (a repeated token maps to its last id) and find the specials by
// special_names. 0 or EXIT_BAD_INPUT naming `path`.
int tokenizer_index_vocab(tokenizer *t, const char *path);
// tokens/text/size from a JSON object of token -> id whose ids number the tokens 0..n-1
// (vocab.json, tokenizer.json's model.vocab). 0, EXIT_BAD_INPUT or EXIT_RESOURCES.
int tokenizer_vocab_from_json(tokenizer *t, const cJSON *vocab, const char *path);
// A whole regular file of at most `limit` bytes, NUL-terminated. 0 or EXIT_BAD_INPUT.
int tokenizer_read_file(const char *path, size_t limit, char **out, size_t *len);
// The same, parsed: a JSON object (caller frees with cJSON_Delete), else EXIT_BAD_INPUT.
int tokenizer_read_json_object(const char *path, size_t limit, cJSON **out);
// Temporary name, fsync, rename. 0 or EXIT_OUTPUT.
int tokenizer_write_atomic(const char *path, const char *data, size_t len);

// ---- tokenizer_bpe.c
// tokenizer_bpe_load: tokenizer.h.
// Byte-level BPE of `len` bytes of text that hold no special token.
bool tokenizer_bpe_encode(const tokenizer *t, const char *text, size_t len, int32_t word,
                          bool prefix_space, token_list *out);
// Write dir/vocab.json and dir/merges.txt. 0 or EXIT_OUTPUT.
int tokenizer_bpe_save(const tokenizer *t, const char *dir);
void tokenizer_bpe_free(tokenizer_bpe *b);
