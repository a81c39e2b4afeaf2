// Fuzz target for the CSV reader and the dataset rows read through it: arbitrary bytes as
// a dataset.csv. The reader (csv_next) must end, move forward on every record, give
// every record at least one field and lines that never go back; the records it reads
// must come back unchanged when written with csv_write_field and read again. Then the
// same bytes as the job's data (dataset_parse_csv with data/demo's labels) must give 0
// or EXIT_BAD_INPUT, and every sentence kept has words without white space and tags that
// are label ids. Anything else aborts.
#include "runner/error.h"
#include "runner/job/csv.h"
#include "runner/job/dataset.h"
#include "runner/log.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEED_ONE                                                                                   \
    "sentence_identifier,sentence,tagstr,code_per_tag\n"                                           \
    "0,\"Inflation in Somalia fell , he said .\",O O B-geo O O O O O,0 0 1 0 0 0 0 0\r\n"          \
    "1,Iranian media report,B-gpe O O,3 0 0\n\n"                                                   \
    "2,\"a \"\"quoted\"\"\nword\",O O O"
#define SEED_TWO                                                                                   \
    "\xEF\xBB\xBF"                                                                                 \
    "sentence,tagstr\nx y,B-per I-per\n\"unclosed,O\n"
#define SEED_THREE "a,b,,\"\"\r\n\"x\"y,1\n,\r"
const char *const fuzz_seeds[] = {SEED_ONE, SEED_TWO, SEED_THREE, NULL};
const size_t fuzz_seed_sizes[] = {sizeof SEED_ONE - 1, sizeof SEED_TWO - 1, sizeof SEED_THREE - 1,
                                  0};

static const char *const LABELS[] = {"O",     "B-geo", "I-geo", "B-gpe", "I-gpe", "B-tim",
                                     "I-tim", "B-org", "I-org", "B-per", "I-per"};
enum { NUM_LABELS = sizeof LABELS / sizeof LABELS[0] };

// Records as one NUL-separated string per record: "field\0field\0" and a count.
typedef struct {
    char *text;
    size_t len, cap;
    long records;
} record_log;

static void log_record(record_log *l, const csv_reader *r) {
    for (int i = 0; i < r->nfields; i++) {
        size_t n = strlen(csv_field(r, i)) + 1;
        if (l->len + n + 1 > l->cap) {
            l->cap = 2 * (l->len + n + 1);
            l->text = realloc(l->text, l->cap);
            if (!l->text) abort();
        }
        memcpy(l->text + l->len, csv_field(r, i), n);
        l->len += n;
    }
    l->text[l->len++] = '\x01'; // end of record
    l->records++;
}

// Read `data` to the end, checking the reader's promises; the good records go to `good`
// and, written back as CSV, to `rewritten` (NULL: not wanted).
static void read_all(const char *data, size_t size, record_log *good, FILE *rewritten) {
    csv_reader r;
    csv_reader_init(&r, data, size);
    long last_line = 0;
    for (;;) {
        size_t before = r.pos;
        int got = csv_next(&r);
        if (got == CSV_END) break;
        if (got == CSV_NOMEM) abort();
        if (r.pos <= before || r.pos > size || r.line < last_line || r.line < 1) abort();
        last_line = r.line;
        if (got == CSV_MALFORMED) {
            if (!r.error[0]) abort();
            continue;
        }
        if (got != CSV_RECORD || r.nfields < 1) abort();
        for (int i = 0; i < r.nfields; i++)
            if (r.offsets[i] >= r.buf_cap || (i && r.offsets[i] <= r.offsets[i - 1])) abort();
        log_record(good, &r);
        if (rewritten) {
            for (int i = 0; i < r.nfields; i++) {
                if (i) fputc(',', rewritten);
                csv_write_field(rewritten, csv_field(&r, i));
            }
            fputc('\n', rewritten);
        }
    }
    csv_reader_free(&r);
}

static void check_round_trip(const char *data, size_t size) {
    record_log first = {0}, second = {0};
    char *written = NULL;
    size_t written_len = 0;
    FILE *out = open_memstream(&written, &written_len);
    if (!out) abort();
    read_all(data, size, &first, out);
    fclose(out);
    read_all(written, written_len, &second, NULL);
    if (first.records != second.records || first.len != second.len ||
        (first.len && memcmp(first.text, second.text, first.len) != 0))
        abort();
    free(written);
    free(first.text);
    free(second.text);
}

static void check_dataset(const char *data, size_t size) {
    ner_dataset ds = {0};
    ds.labels = malloc(NUM_LABELS * sizeof *ds.labels);
    for (int i = 0; i < NUM_LABELS; i++)
        ds.labels[i] = strdup(LABELS[i]);
    ds.num_labels = NUM_LABELS;
    dataset_options opt = {.max_instances = (long)(size % 4),
                           .max_bad_fraction = size & 4 ? 1 : 0.01};
    error_clear();
    int rc = dataset_parse_csv(data, size, "fuzz/dataset.csv", &opt, &ds);
    if (rc != 0 && rc != EXIT_BAD_INPUT) abort();
    if (rc == 0 && (ds.n < 1 || (opt.max_instances && ds.n > opt.max_instances))) abort();
    for (int i = 0; i < ds.n; i++) {
        const ner_sentence *s = &ds.items[i];
        if (s->nwords < 1 || !s->identifier) abort();
        for (int w = 0; w < s->nwords; w++) {
            if (!s->words[w][0] || s->tags[w] < 0 || s->tags[w] >= NUM_LABELS) abort();
            for (const char *p = s->words[w]; *p; p++)
                if (isspace((unsigned char)*p)) abort();
        }
    }
    dataset_free(&ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bool quiet;
    if (!quiet) {
        log_init(LOG_FORMAT_TEXT, LOG_ERROR); // the skipped rows' warnings are expected
        quiet = true;
    }
    check_round_trip((const char *)data, size);
    check_dataset((const char *)data, size);
    return 0;
}
