#pragma once
// The BERT WordPiece tokenizer (and RoBERTa's byte-level BPE: tokenizer_bpe.c, loaded by
// tokenizer_load_dir), giving the same ids as Hugging Face's BertTokenizerFast
// (the `tokenizers` BertNormalizer + BertPreTokenizer + WordPiece + BERT post-processor):
//   1. special tokens ([CLS], [SEP], [PAD], [MASK], [UNK]) written literally in the text
//      are kept whole, as the fast tokenizer's added-token matching does;
//   2. clean: drop U+0000, U+FFFD and control/format/private-use/unassigned characters,
//      turn every other whitespace character into a space;
//   3. put spaces around CJK ideographs, so each is a word of its own;
//   4. when strip_accents: NFD, then drop non-spacing marks (Mn);
//   5. when lowercase: per-character lower-casing (Unicode full lower-case mapping);
//   6. split on whitespace, and make every punctuation character (ASCII punctuation and
//      Unicode P* categories) a word of its own;
//   7. greedy longest-match WordPiece per word with "##" continuations; a word longer
//      than max_input_chars_per_word (100) characters, or with a part that matches
//      nothing, becomes one [UNK].
// All Unicode properties come from utf8proc. Invalid UTF-8 bytes are read as U+FFFD
// (and therefore dropped), as Python's decode(errors="replace") would.
// A tokenizer is immutable once loaded: any number of threads may encode with it.
#include <stdbool.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;

enum { TOKENIZER_MAX_CHARS_PER_WORD = 100 };

// Load vocab.txt (one token per line, id = line number; lines end at "\n", "\r\n" or
// "\r", as transformers' load_vocab() reads them; a repeated token maps to its last
// line). [UNK], [CLS], [SEP] and [PAD] must be present.
// strip_accents follows HF: pass the same value as lowercase unless the model's
// tokenizer_config.json sets "strip_accents". 0 or EXIT_BAD_INPUT naming the file.
int tokenizer_load(const char *vocab_txt_path, bool lowercase, bool strip_accents,
                   tokenizer **out);
// Load a model directory: dir/vocab.json + dir/merges.txt, RoBERTa's byte-level BPE
// (tokenizer_bpe.c; "add_prefix_space" from tokenizer_config.json, default false; pre-split
// words always get one), or dir/vocab.txt (or, when there is none, the WordPiece vocabulary
// of dir/tokenizer.json) plus, when present, dir/tokenizer_config.json ("do_lower_case"
// (default true), "strip_accents" (null = follow do_lower_case), "tokenize_chinese_chars"
// (default true)), as BertTokenizerFast applies them. 0 or EXIT_BAD_INPUT.
int tokenizer_load_dir(const char *dir, tokenizer **out);
// Load RoBERTa's byte-level BPE alone: dir/vocab.json and dir/merges.txt (what
// RobertaTokenizer reads), whatever else dir holds (the demo data has a vocab.txt too).
// 0 or EXIT_BAD_INPUT naming the file (and line).
int tokenizer_bpe_load(const char *dir, bool add_prefix_space, tokenizer **out);
// Write dir/vocab.txt, dir/tokenizer_config.json and dir/special_tokens_map.json so that
// transformers' AutoTokenizer.from_pretrained(dir) rebuilds the same tokenizer.
// `wordpiece_class` names the WordPiece tokenizer class (NULL: "BertTokenizer"); a
// DistilBERT model needs "DistilBertTokenizer", whose inputs have no token_type_ids (its
// forward() refuses them). A BPE tokenizer is always "RobertaTokenizer". 0 or EXIT_OUTPUT.
int tokenizer_save_dir(const tokenizer *t, const char *dir, int model_max_length,
                       const char *wordpiece_class);
void tokenizer_free(tokenizer *t);

int tokenizer_vocab_size(const tokenizer *t);
// The id of a token, or -1 when it is not in the vocabulary.
int32_t tokenizer_token_id(const tokenizer *t, const char *token);
// The token of an id, or NULL when out of range.
const char *tokenizer_token(const tokenizer *t, int32_t id);
int32_t tokenizer_unk_id(const tokenizer *t);
int32_t tokenizer_cls_id(const tokenizer *t);
int32_t tokenizer_sep_id(const tokenizer *t);
int32_t tokenizer_pad_id(const tokenizer *t);
int32_t tokenizer_mask_id(const tokenizer *t); // -1 when the vocabulary has no [MASK]

// Text -> WordPiece ids, without [CLS]/[SEP], appended to *ids (a malloc'd array the
// caller owns and frees; start with *ids = NULL, *n = 0). 0 or EXIT_RESOURCES.
int tokenizer_encode(const tokenizer *t, const char *text, int32_t **ids, int *n);

// One model input from words already split (HF is_split_into_words=True):
// [CLS] tokens... [SEP], truncated to max_len (tokens of the last words are dropped),
// then padded with [PAD] to max_len. ids, mask (1 token / 0 padding) and
// word_of_token (-1 for [CLS], [SEP] and padding, else the index of the word the token
// came from; may be NULL) each hold max_len entries. A word that yields no token (only
// control characters, say) has no entry. *ntokens (may be NULL) receives the number of
// non-padding tokens. 0, EXIT_USAGE when max_len < 2, or EXIT_RESOURCES.
int tokenizer_encode_words(const tokenizer *t, const char *const *words, int nwords,
                           int max_len, int32_t *ids, int32_t *mask, int32_t *word_of_token,
                           int *ntokens);
// The same for one text: [CLS] tokens... [SEP], truncated and padded to max_len.
int tokenizer_encode_text(const tokenizer *t, const char *text, int max_len, int32_t *ids,
                          int32_t *mask, int *ntokens);
// Label alignment as the original job did it: the tag of each word on its first
// sub-token, -100 (ignored by the loss) on the other sub-tokens, specials and padding.
// word_labels has one entry per word; labels receives max_len entries.
void tokenizer_align_labels(const int32_t *word_of_token, int max_len,
                            const int32_t *word_labels, int32_t *labels);
