// Reading, splitting and writing the tagged sentences of the NER job; see dataset.h.
#include "runner/job/dataset.h"

#include "kernels/rng.h"
#include "runner/error.h"
#include "runner/job/csv.h"
#include "runner/job/files.h"
#include "runner/log.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int text_split_words(const char *text, char ***words) {
    int n = 0, cap = 16;
    char **w = malloc((size_t)cap * sizeof *w);
    if (!w) return -1;
    const char *p = text;
    for (;;) {
        while (*p && isspace((unsigned char)*p)) p++;
        if (!*p) break;
        const char *start = p;
        while (*p && !isspace((unsigned char)*p)) p++;
        if (n == cap) {
            cap *= 2;
            char **grown = realloc(w, (size_t)cap * sizeof *grown);
            if (!grown) goto oom;
            w = grown;
        }
        w[n] = strndup(start, (size_t)(p - start));
        if (!w[n]) goto oom;
        n++;
    }
    *words = w;
    return n;
oom:
    for (int i = 0; i < n; i++) free(w[i]);
    free(w);
    return -1;
}

static void free_words(char **words, int n) {
    for (int i = 0; i < n; i++) free(words[i]);
    free(words);
}

static void sentence_free(ner_sentence *s) {
    free(s->identifier);
    free_words(s->words, s->nwords);
    free(s->tags);
    memset(s, 0, sizeof *s);
}

void dataset_free(ner_dataset *ds) {
    for (int i = 0; i < ds->n; i++) sentence_free(&ds->items[i]);
    free(ds->items);
    for (int i = 0; i < ds->num_labels; i++) free(ds->labels[i]);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

int dataset_label_id(const ner_dataset *ds, const char *label) {
    for (int i = 0; i < ds->num_labels; i++)
        if (strcmp(ds->labels[i], label) == 0) return i;
    return -1;
}

static void dir_of(const char *path, char *dir, size_t cap) {
    snprintf(dir, cap, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, cap, ".");
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static cJSON *read_json(const char *path) {
    char *text;
    if (files_read_all(path, &text, NULL) != 0) return NULL;
    cJSON *json = cJSON_Parse(text);
    free(text);
    if (!json) error_set(EXIT_BAD_INPUT, "%s: not valid JSON", path);
    return json;
}

int dataset_load_labels(const char *dir, ner_dataset *ds) {
    char enum_path[PATH_MAX], arch_path[PATH_MAX];
    int rc = files_join(enum_path, sizeof enum_path, "%s/enumerator.json", dir);
    if (rc == 0) rc = files_join(arch_path, sizeof arch_path, "%s/archetype.json", dir);
    if (rc) return error_set(EXIT_BAD_INPUT, "%s: path too long", dir);
    cJSON *enumerator = read_json(enum_path);
    if (!enumerator) return EXIT_BAD_INPUT;
    cJSON *archetype = read_json(arch_path);
    if (!archetype) {
        cJSON_Delete(enumerator);
        return EXIT_BAD_INPUT;
    }
    rc = 0;
    int n = cJSON_GetArraySize(enumerator);
    if (!cJSON_IsObject(enumerator) || n < 1 || n > 4096) {
        rc = error_set(EXIT_BAD_INPUT, "%s: expected an object {label: id}", enum_path);
        goto done;
    }
    if (!cJSON_IsObject(archetype) || cJSON_GetArraySize(archetype) != n) {
        rc = error_set(EXIT_BAD_INPUT, "%s: expected an object {id: label} with %d entries",
                       arch_path, n);
        goto done;
    }
    ds->labels = calloc((size_t)n, sizeof *ds->labels);
    if (!ds->labels) {
        rc = error_set(EXIT_RESOURCES, "out of memory");
        goto done;
    }
    ds->num_labels = n;
    const cJSON *item;
    cJSON_ArrayForEach(item, enumerator) {
        if (!cJSON_IsNumber(item) || item->valuedouble != (double)item->valueint ||
            item->valueint < 0 || item->valueint >= n || ds->labels[item->valueint]) {
            rc = error_set(EXIT_BAD_INPUT, "%s: label \"%s\" has an id that is not a unique "
                           "integer in 0..%d", enum_path, item->string, n - 1);
            goto done;
        }
        ds->labels[item->valueint] = strdup(item->string);
        if (!ds->labels[item->valueint]) {
            rc = error_set(EXIT_RESOURCES, "out of memory");
            goto done;
        }
    }
    for (int id = 0; id < n; id++) {
        char key[16];
        snprintf(key, sizeof key, "%d", id);
        const cJSON *label = cJSON_GetObjectItemCaseSensitive(archetype, key);
        if (!cJSON_IsString(label) || strcmp(label->valuestring, ds->labels[id]) != 0) {
            rc = error_set(EXIT_BAD_INPUT, "%s: id \"%s\" should map to \"%s\" as in %s",
                           arch_path, key, ds->labels[id], enum_path);
            goto done;
        }
    }
done:
    cJSON_Delete(enumerator);
    cJSON_Delete(archetype);
    return rc;
}

static int push_sentence(ner_dataset *ds, int *cap, ner_sentence *s) {
    if (ds->n == *cap) {
        int grown_cap = *cap ? *cap * 2 : 1024;
        ner_sentence *grown = realloc(ds->items, (size_t)grown_cap * sizeof *grown);
        if (!grown) return error_set(EXIT_RESOURCES, "out of memory reading the data");
        ds->items = grown;
        *cap = grown_cap;
    }
    ds->items[ds->n++] = *s;
    memset(s, 0, sizeof *s);
    return 0;
}

// Parse one CSV record's sentence, tags and (optional) codes into *s; on a bad row fill
// `why` and return false.
static bool parse_csv_row(const ner_dataset *ds, const char *identifier, const char *sentence,
                          const char *tagstr, const char *codes, ner_sentence *s, char *why,
                          size_t why_cap) {
    char **tags = NULL, **code_words = NULL;
    int ntags = 0, ncodes = 0;
    bool ok = false;
    s->identifier = strdup(identifier);
    s->nwords = text_split_words(sentence, &s->words);
    if (s->nwords < 0) s->nwords = 0;
    ntags = text_split_words(tagstr, &tags);
    if (!s->identifier || !s->words || ntags < 0) {
        snprintf(why, why_cap, "out of memory");
        goto done;
    }
    if (s->nwords == 0) {
        snprintf(why, why_cap, "empty sentence");
        goto done;
    }
    if (ntags != s->nwords) {
        snprintf(why, why_cap, "%d words but %d tags", s->nwords, ntags);
        goto done;
    }
    if (codes) {
        ncodes = text_split_words(codes, &code_words);
        if (ncodes >= 0 && ncodes != ntags) {
            snprintf(why, why_cap, "%d tags but %d codes in code_per_tag", ntags, ncodes);
            goto done;
        }
    }
    s->tags = malloc((size_t)s->nwords * sizeof *s->tags);
    if (!s->tags) {
        snprintf(why, why_cap, "out of memory");
        goto done;
    }
    for (int i = 0; i < ntags; i++) {
        int id = dataset_label_id(ds, tags[i]);
        if (id < 0) {
            snprintf(why, why_cap, "unknown tag \"%.40s\" (not in enumerator.json)", tags[i]);
            goto done;
        }
        if (codes && ncodes > 0) {
            char *end;
            long code = strtol(code_words[i], &end, 10);
            if (*end || code != id) {
                snprintf(why, why_cap, "code_per_tag \"%.20s\" disagrees with tag \"%.40s\" (%d)",
                         code_words[i], tags[i], id);
                goto done;
            }
        }
        s->tags[i] = id;
    }
    ok = true;
done:
    if (tags) free_words(tags, ntags);
    if (code_words) free_words(code_words, ncodes);
    return ok;
}

static int header_index(const csv_reader *r, const char *name) {
    for (int i = 0; i < r->nfields; i++)
        if (strcmp(csv_field(r, i), name) == 0) return i;
    return -1;
}

static int check_bad_rows(const char *path, long bad, long total, double fraction) {
    if (bad == 0) return 0;
    if (total == 0 || (double)bad / (double)total > fraction)
        return error_set(EXIT_BAD_INPUT, "%s: %ld of %ld rows malformed, more than the %.4g allowed "
                         "(max_bad_rows)", path, bad, total, fraction);
    log_warn("data_bad_rows", "%s: skipped %ld malformed rows of %ld", path, bad, total);
    return 0;
}

static int load_csv(const char *path, const dataset_options *opt, ner_dataset *ds) {
    char *text;
    size_t len;
    int rc = files_read_all(path, &text, &len);
    if (rc) return rc;
    rc = dataset_parse_csv(text, len, path, opt, ds);
    free(text);
    return rc;
}

int dataset_parse_csv(const char *text, size_t len, const char *path, const dataset_options *opt,
                      ner_dataset *ds) {
    int rc = 0;
    csv_reader r;
    csv_reader_init(&r, text, len);
    int col_id = 0, col_sentence = 1, col_tags = 2, col_codes = 3, min_fields = 3;
    long total = 0, bad = 0;
    int cap = 0;
    ner_sentence s = {0};
    for (;;) {
        int got = csv_next(&r);
        if (got == CSV_END) break;
        if (got == CSV_NOMEM) {
            rc = error_set(EXIT_RESOURCES, "%s: out of memory", path);
            break;
        }
        if (got == CSV_RECORD && r.line == 1 && header_index(&r, "sentence") >= 0) {
            col_id = header_index(&r, "sentence_identifier");
            col_sentence = header_index(&r, "sentence");
            col_tags = header_index(&r, "tagstr");
            col_codes = header_index(&r, "code_per_tag");
            if (col_tags < 0) {
                rc = error_set(EXIT_BAD_INPUT, "%s:1: header has no tagstr column", path);
                break;
            }
            min_fields = 1 + (col_sentence > col_tags ? col_sentence : col_tags);
            if (col_id + 1 > min_fields) min_fields = col_id + 1;
            continue;
        }
        total++;
        char why[200];
        if (got == CSV_MALFORMED) {
            snprintf(why, sizeof why, "%s", r.error);
        } else if (r.nfields == 1 && csv_field(&r, 0)[0] == '\0') {
            total--; // a blank line is no row
            continue;
        } else if (r.nfields < min_fields) {
            snprintf(why, sizeof why, "%d fields, expected %d", r.nfields, min_fields);
        } else {
            char fallback_id[32];
            snprintf(fallback_id, sizeof fallback_id, "%ld", r.line);
            const char *codes = col_codes >= 0 && col_codes < r.nfields ? csv_field(&r, col_codes)
                                                                        : NULL;
            if (parse_csv_row(ds, col_id >= 0 ? csv_field(&r, col_id) : fallback_id,
                              csv_field(&r, col_sentence), csv_field(&r, col_tags), codes, &s,
                              why, sizeof why)) {
                if ((rc = push_sentence(ds, &cap, &s))) break;
                if (opt->max_instances > 0 && ds->n >= opt->max_instances) break;
                continue;
            }
            sentence_free(&s);
        }
        bad++;
        log_warn("data_bad_row", "%s:%ld: %s", path, r.line, why);
    }
    sentence_free(&s);
    csv_reader_free(&r);
    ds->bad_rows = bad;
    if (rc == 0) rc = check_bad_rows(path, bad, total, opt->max_bad_fraction);
    if (rc == 0 && ds->n == 0) rc = error_set(EXIT_BAD_INPUT, "%s: no usable rows", path);
    return rc;
}

static int add_label(ner_dataset *ds, const char *label) {
    int id = dataset_label_id(ds, label);
    if (id >= 0) return id;
    char **grown = realloc(ds->labels, (size_t)(ds->num_labels + 1) * sizeof *grown);
    if (!grown) return -1;
    ds->labels = grown;
    ds->labels[ds->num_labels] = strdup(label);
    return ds->labels[ds->num_labels] ? ds->num_labels++ : -1;
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// A word or tag must be one whitespace-free word: the CSV the job writes separates words
// (and tags) with spaces, so "New York" would come back as two words against one tag.
static bool is_one_word(const char *s) {
    if (!*s) return false;
    for (; *s; s++)
        if (isspace((unsigned char)*s)) return false;
    return true;
}

// Check a JSONL row's shape and every token and tag; fill `why` when it is malformed.
static void check_jsonl_row(const ner_dataset *ds, const cJSON *obj, bool fixed_labels, char *why,
                            size_t why_cap) {
    const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(obj, "tokens");
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(obj, "tags");
    if (!obj) {
        snprintf(why, why_cap, "not valid JSON");
    } else if (!cJSON_IsArray(tokens) || !cJSON_IsArray(tags)) {
        snprintf(why, why_cap, "expected {\"tokens\": [...], \"tags\": [...]}");
    } else if (cJSON_GetArraySize(tokens) == 0) {
        snprintf(why, why_cap, "empty sentence");
    } else if (cJSON_GetArraySize(tokens) != cJSON_GetArraySize(tags)) {
        snprintf(why, why_cap, "%d tokens but %d tags", cJSON_GetArraySize(tokens),
                 cJSON_GetArraySize(tags));
    } else {
        const cJSON *w = tokens->child, *t = tags->child;
        for (int i = 0; w && t; i++, w = w->next, t = t->next) {
            if (!cJSON_IsString(w) || !cJSON_IsString(t) || !w->valuestring[0] ||
                !t->valuestring[0]) {
                snprintf(why, why_cap, "token and tag %d must be non-empty strings", i);
            } else if (!is_one_word(w->valuestring) || !is_one_word(t->valuestring)) {
                snprintf(why, why_cap, "token %d (\"%.40s\") or its tag contains whitespace", i,
                         w->valuestring);
            } else if (fixed_labels && dataset_label_id(ds, t->valuestring) < 0) {
                snprintf(why, why_cap, "unknown tag \"%.40s\"", t->valuestring);
            }
            if (why[0]) return;
        }
    }
}

// Copy a checked JSONL row into *s. Its tags become labels here, once the whole row is
// known to be good: a rejected row must leave no label behind. 0 or EXIT_RESOURCES.
static int take_jsonl_row(ner_dataset *ds, const cJSON *obj, long line_no, bool fixed_labels,
                          ner_sentence *s) {
    const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(obj, "tokens");
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(obj, "tags");
    int n = cJSON_GetArraySize(tokens);
    char id[32];
    snprintf(id, sizeof id, "%ld", line_no);
    s->identifier = strdup(id);
    s->words = calloc((size_t)n, sizeof *s->words);
    s->tags = calloc((size_t)n, sizeof *s->tags);
    if (!s->identifier || !s->words || !s->tags)
        return error_set(EXIT_RESOURCES, "out of memory reading line %ld", line_no);
    s->nwords = n; // only now: sentence_free walks the words
    const cJSON *w = tokens->child, *t = tags->child;
    for (int i = 0; i < n; i++, w = w->next, t = t->next) {
        s->words[i] = strdup(w->valuestring);
        s->tags[i] = fixed_labels ? dataset_label_id(ds, t->valuestring)
                                  : add_label(ds, t->valuestring);
        if (!s->words[i] || s->tags[i] < 0)
            return error_set(EXIT_RESOURCES, "out of memory reading line %ld", line_no);
    }
    return 0;
}

static int load_jsonl(const char *path, const dataset_options *opt, ner_dataset *ds,
                      bool fixed_labels) {
    char *text;
    int rc = files_read_all(path, &text, NULL);
    if (rc) return rc;
    long total = 0, bad = 0, line_no = 0;
    int cap = 0;
    // With labels discovered from the data, tags get ids in the order first seen, then
    // are renumbered once the sorted label set is known.
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        line_no++;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r') line[--len] = '\0';
        if (len == 0) continue;
        total++;
        char why[200] = "";
        cJSON *obj = cJSON_Parse(line);
        check_jsonl_row(ds, obj, fixed_labels, why, sizeof why);
        if (why[0]) {
            cJSON_Delete(obj);
            bad++;
            log_warn("data_bad_row", "%s:%ld: %s", path, line_no, why);
            continue;
        }
        ner_sentence s = {0};
        rc = take_jsonl_row(ds, obj, line_no, fixed_labels, &s);
        cJSON_Delete(obj);
        if (rc == 0) rc = push_sentence(ds, &cap, &s);
        if (rc) {
            sentence_free(&s);
            break;
        }
        if (opt->max_instances > 0 && ds->n >= opt->max_instances) break;
    }
    free(text);
    ds->bad_rows = bad;
    if (rc == 0 && !fixed_labels && ds->num_labels > 0) {
        // Sorted labels, so the same data always gives the same ids.
        char **sorted = malloc((size_t)ds->num_labels * sizeof *sorted);
        int *remap = malloc((size_t)ds->num_labels * sizeof *remap);
        if (!sorted || !remap) {
            free(sorted);
            free(remap);
            return error_set(EXIT_RESOURCES, "out of memory");
        }
        memcpy(sorted, ds->labels, (size_t)ds->num_labels * sizeof *sorted);
        qsort(sorted, (size_t)ds->num_labels, sizeof *sorted, compare_strings);
        for (int old = 0; old < ds->num_labels; old++)
            for (int id = 0; id < ds->num_labels; id++)
                if (sorted[id] == ds->labels[old]) remap[old] = id;
        for (int i = 0; i < ds->n; i++)
            for (int w = 0; w < ds->items[i].nwords; w++)
                ds->items[i].tags[w] = remap[ds->items[i].tags[w]];
        free(ds->labels);
        ds->labels = sorted;
        free(remap);
    }
    if (rc == 0) rc = check_bad_rows(path, bad, total, opt->max_bad_fraction);
    if (rc == 0 && ds->n == 0) rc = error_set(EXIT_BAD_INPUT, "%s: no usable rows", path);
    return rc;
}

int dataset_load(const char *path, const dataset_options *opt, ner_dataset *out) {
    memset(out, 0, sizeof *out);
    char file[PATH_MAX], dir[PATH_MAX];
    int rc = 0;
    if (files_is_dir(path)) {
        snprintf(dir, sizeof dir, "%s", path);
        rc = files_join(file, sizeof file, "%s/dataset.csv", path);
        if (rc == 0 && !files_exists(file)) rc = files_join(file, sizeof file, "%s/dataset.jsonl", path);
        if (rc) return error_set(EXIT_BAD_INPUT, "%s: path too long", path);
    } else {
        snprintf(file, sizeof file, "%s", path);
        dir_of(path, dir, sizeof dir);
    }
    if (!files_exists(file))
        return error_set(EXIT_BAD_INPUT, "%s: no such data file (want dataset.csv or dataset.jsonl)",
                         file);
    char enum_path[PATH_MAX];
    if (files_join(enum_path, sizeof enum_path, "%s/enumerator.json", dir))
        return error_set(EXIT_BAD_INPUT, "%s: path too long", dir);
    bool have_labels = files_exists(enum_path);
    if (have_labels && (rc = dataset_load_labels(dir, out))) goto fail;
    if (ends_with(file, ".jsonl") || ends_with(file, ".json")) {
        rc = load_jsonl(file, opt, out, have_labels);
    } else {
        if (!have_labels) {
            rc = error_set(EXIT_BAD_INPUT, "%s: missing (the CSV's label -> id map)", enum_path);
            goto fail;
        }
        rc = load_csv(file, opt, out);
    }
    if (rc) goto fail;
    log_info("data_loaded", "%s: %d sentences, %d labels, %ld malformed rows skipped", file,
             out->n, out->num_labels, out->bad_rows);
    return 0;
fail:
    dataset_free(out);
    return rc;
}

int dataset_split(int n, uint64_t seed, double train_fraction, double valid_fraction, int *order,
                  int *n_train, int *n_valid, int *n_test) {
    for (int i = 0; i < n; i++) order[i] = i;
    // Fisher-Yates with the counter-based generator of kernels/rng.h.
    for (int i = n - 1; i > 0; i--) {
        uint64_t r = rng_mix64(rng_mix64(seed) + (uint64_t)i * 0x9e3779b97f4a7c15ULL);
        int j = (int)(r % (uint64_t)(i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    *n_train = (int)(n * train_fraction);
    *n_valid = (int)(n * valid_fraction);
    *n_test = n - *n_train - *n_valid;
    if (n >= 3 && (*n_valid == 0 || *n_test == 0)) {
        // Tiny data: keep one sentence in each evaluation split.
        *n_valid = 1;
        *n_test = 1;
        *n_train = n - 2;
    }
    return 0;
}

int dataset_write_csv(const ner_dataset *ds, const int *order, int count, const char *path) {
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out) return error_set(EXIT_RESOURCES, "out of memory writing %s", path);
    fputs("sentence_identifier,sentence,tagstr,code_per_tag\n", out);
    for (int k = 0; k < count; k++) {
        const ner_sentence *s = &ds->items[order ? order[k] : k];
        char *field = NULL;
        size_t field_len = 0;
        csv_write_field(out, s->identifier);
        for (int part = 0; part < 3; part++) {
            FILE *f = open_memstream(&field, &field_len);
            for (int w = 0; w < s->nwords; w++) {
                if (w) fputc(' ', f);
                if (part == 0) fputs(s->words[w], f);
                else if (part == 1) fputs(ds->labels[s->tags[w]], f);
                else fprintf(f, "%d", s->tags[w]);
            }
            fclose(f);
            fputc(',', out);
            csv_write_field(out, field);
            free(field);
        }
        fputc('\n', out);
    }
    fclose(out);
    int rc = files_write_atomic(path, text, len);
    free(text);
    return rc;
}

int dataset_write_labels(const ner_dataset *ds, const char *dir) {
    cJSON *enumerator = cJSON_CreateObject(), *archetype = cJSON_CreateObject();
    for (int i = 0; i < ds->num_labels; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        cJSON_AddNumberToObject(enumerator, ds->labels[i], i);
        cJSON_AddStringToObject(archetype, key, ds->labels[i]);
    }
    char *e = cJSON_Print(enumerator), *a = cJSON_Print(archetype);
    char path[PATH_MAX];
    int rc = files_join(path, sizeof path, "%s/enumerator.json", dir);
    if (rc == 0) rc = files_write_text(path, e);
    if (rc == 0) rc = files_join(path, sizeof path, "%s/archetype.json", dir);
    if (rc == 0) rc = files_write_text(path, a);
    free(e);
    free(a);
    cJSON_Delete(enumerator);
    cJSON_Delete(archetype);
    return rc;
}

void text_free(char **texts, int n) {
    for (int i = 0; i < n; i++) free(texts[i]);
    free(texts);
}

int text_load(const char *path, long max_instances, char ***texts, int *n) {
    char *data;
    *texts = NULL;
    *n = 0;
    int rc = files_read_all(path, &data, NULL);
    if (rc) return rc;
    bool jsonl = ends_with(path, ".jsonl");
    int cap = 0, count = 0;
    char **out = NULL;
    long line_no = 0;
    for (char *line = data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        line_no++;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r') line[--len] = '\0';
        if (len == 0) continue;
        char *value = NULL;
        if (jsonl) {
            cJSON *obj = cJSON_Parse(line);
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "text");
            const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(obj, "tokens");
            if (cJSON_IsString(t)) {
                value = strdup(t->valuestring);
            } else if (cJSON_IsArray(tokens)) {
                char *joined = NULL;
                size_t jl = 0;
                FILE *f = open_memstream(&joined, &jl);
                const cJSON *w;
                int i = 0;
                cJSON_ArrayForEach(w, tokens) {
                    if (cJSON_IsString(w)) fprintf(f, "%s%s", i++ ? " " : "", w->valuestring);
                }
                fclose(f);
                value = joined;
            }
            cJSON_Delete(obj);
            if (!value) {
                rc = error_set(EXIT_BAD_INPUT, "%s:%ld: expected {\"text\": ...} or {\"tokens\": [...]}",
                               path, line_no);
                break;
            }
        } else {
            value = strdup(line);
        }
        if (count == cap) {
            cap = cap ? cap * 2 : 256;
            char **grown = realloc(out, (size_t)cap * sizeof *grown);
            if (!grown) {
                free(value);
                rc = error_set(EXIT_RESOURCES, "out of memory");
                break;
            }
            out = grown;
        }
        out[count++] = value;
        if (max_instances > 0 && count >= max_instances) break;
    }
    free(data);
    if (rc == 0 && count == 0) rc = error_set(EXIT_BAD_INPUT, "%s: no sentences", path);
    if (rc) {
        text_free(out, count);
        return rc;
    }
    *texts = out;
    *n = count;
    return 0;
}
