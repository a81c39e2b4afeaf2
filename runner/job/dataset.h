#pragma once
// Tagged sentences for named-entity tagging, in the original job's formats:
// - CSV `sentence_identifier,sentence,tagstr,code_per_tag` (RFC 4180; `sentence` and
//   `tagstr` space-separated, `code_per_tag` the tag ids space-separated), with
//   `enumerator.json` (label -> id) and `archetype.json` (id -> label) beside it;
// - JSONL, one `{"tokens": [...], "tags": [...]}` per line.
// Malformed rows are reported as file:line and skipped, up to a fraction of all rows.
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *identifier; // sentence_identifier
    char **words;     // (nwords)
    int *tags;        // (nwords) label ids
    int nwords;
} ner_sentence;

typedef struct {
    ner_sentence *items;
    int n;
    char **labels; // id -> label (archetype)
    int num_labels;
    long bad_rows; // malformed rows skipped while reading
} ner_dataset;

typedef struct {
    long max_instances;     // N_INSTANCES: stop after this many good rows (0 = all)
    double max_bad_fraction; // skipped rows allowed, as a fraction of rows read
} dataset_options;

// Load `path`: a directory holding dataset.csv (or dataset.jsonl), or a .csv/.jsonl file.
// The label maps come from enumerator.json/archetype.json in the same directory (required
// for CSV; for JSONL, when absent, the labels are the sorted set of tags seen).
// 0, EXIT_BAD_INPUT (missing file, bad label map, too many bad rows) or EXIT_RESOURCES.
int dataset_load(const char *path, const dataset_options *opt, ner_dataset *out);
// The rows of a CSV file's text (`len` bytes; `path` names it in errors and warnings) into
// `ds`, whose labels are already loaded (dataset_load_labels): what dataset_load does with
// a .csv once it has read it. 0, EXIT_BAD_INPUT or EXIT_RESOURCES; the caller frees `ds`.
int dataset_parse_csv(const char *text, size_t len, const char *path, const dataset_options *opt,
                      ner_dataset *ds);
// Load enumerator.json + archetype.json from `dir` into ds->labels; 0 or EXIT_BAD_INPUT.
int dataset_load_labels(const char *dir, ner_dataset *ds);
void dataset_free(ner_dataset *ds);
// Label id of `label`, or -1.
int dataset_label_id(const ner_dataset *ds, const char *label);

// Shuffle 0..n-1 with `seed` and cut 80/15/5 (fractions train, valid; test the rest):
// order[0..n) receives the permutation; counts in n_train, n_valid, n_test.
int dataset_split(int n, uint64_t seed, double train_fraction, double valid_fraction, int *order,
                  int *n_train, int *n_valid, int *n_test);
// Write the sentences order[0..count) as the original's CSV (with header). 0 or EXIT_OUTPUT.
int dataset_write_csv(const ner_dataset *ds, const int *order, int count, const char *path);
// Write enumerator.json and archetype.json into `dir`. 0 or EXIT_OUTPUT.
int dataset_write_labels(const ner_dataset *ds, const char *dir);

// Plain sentences for predict/embed/pretrain: a .jsonl file whose lines hold "text" (or
// "tokens", joined with spaces), otherwise one sentence per non-empty line.
// *texts is a malloc'd array of malloc'd strings. 0 or EXIT_BAD_INPUT.
int text_load(const char *path, long max_instances, char ***texts, int *n);
void text_free(char **texts, int n);
// Split on ASCII whitespace into malloc'd words; returns the count (-1 out of memory).
int text_split_words(const char *text, char ***words);
