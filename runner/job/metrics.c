// Token- and entity-level evaluation reports; see metrics.h. The arithmetic follows
// scikit-learn 1.5 (precision_recall_fscore_support, F = 2 tp / (true + pred)) and
// seqeval 1.2 (get_entities chunking, F = 2 P R / (P + R)), zero divisions giving 0.
#include "runner/job/metrics.h"

#include "runner/error.h"
#include "runner/job/files.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void metrics_free(metrics_report *r) {
    for (int i = 0; r->labels && i < r->num_labels; i++) free(r->labels[i]);
    free(r->labels);
    free(r->tp);
    free(r->fp);
    free(r->fn);
    free(r->tn);
    for (int i = 0; i < r->n_types; i++) free(r->types[i]);
    free(r->types);
    free(r->entity_tp);
    free(r->entity_pred);
    free(r->entity_true);
    memset(r, 0, sizeof *r);
}

// seqeval's reading of a tag: prefix letter and type ("O" has type "_"); *type points
// into `label` (or at a literal), so long names are compared whole.
static void split_tag(const char *label, char *tag, const char **type) {
    *tag = label[0];
    const char *dash = strchr(label + 1, '-');
    const char *t = dash ? dash + 1 : label + 1;
    *type = *t ? t : "_";
}

static bool end_of_chunk(char prev_tag, char tag, const char *prev_type, const char *type) {
    if (prev_tag == 'E' || prev_tag == 'S') return true;
    if ((prev_tag == 'B' || prev_tag == 'I') && (tag == 'B' || tag == 'S' || tag == 'O')) return true;
    return prev_tag != 'O' && prev_tag != '.' && strcmp(prev_type, type) != 0;
}

static bool start_of_chunk(char prev_tag, char tag, const char *prev_type, const char *type) {
    if (tag == 'B' || tag == 'S') return true;
    if ((prev_tag == 'E' || prev_tag == 'S' || prev_tag == 'O') && (tag == 'E' || tag == 'I'))
        return true;
    return tag != 'O' && tag != '.' && strcmp(prev_type, type) != 0;
}

typedef struct {
    int type; // index into report types
    long begin, end;
} entity;

// The index of `type` in r->types, added when new; -1 when out of memory or past the
// num_labels + 1 the arrays were sized for (a bug: every type comes from a label).
static int type_index(metrics_report *r, const char *type) {
    for (int i = 0; i < r->n_types; i++)
        if (strcmp(r->types[i], type) == 0) return i;
    if (r->n_types == r->num_labels + 1) {
        error_set(EXIT_INTERNAL, "metrics: more entity types than the %d labels allow",
                  r->num_labels);
        return -1;
    }
    r->types[r->n_types] = strdup(type);
    if (!r->types[r->n_types]) {
        error_set(EXIT_RESOURCES, "out of memory computing metrics");
        return -1;
    }
    return r->n_types++;
}

// seqeval's get_entities over the sentences joined with an "O" after each; -1 on error
// (error_code() says which).
static long get_entities(metrics_report *r, const char *const *labels, const int *tags,
                         const int *lengths, int n_sentences, entity *out) {
    char prev_tag = 'O';
    const char *prev_type = "_";
    long begin = 0, count = 0, i = 0, k = 0;
    for (int s = 0; s <= n_sentences; s++) {
        int len = s < n_sentences ? lengths[s] + 1 : 0;
        for (int w = 0; w < len; w++, i++) {
            char tag;
            const char *type;
            split_tag(w < lengths[s] ? labels[tags[k++]] : "O", &tag, &type);
            if (end_of_chunk(prev_tag, tag, prev_type, type)) {
                int t = type_index(r, prev_type);
                if (t < 0) return -1;
                out[count++] = (entity){t, begin, i - 1};
            }
            if (start_of_chunk(prev_tag, tag, prev_type, type)) begin = i;
            prev_tag = tag;
            prev_type = type;
        }
    }
    return count;
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// Sort the type names as seqeval does; remap[old index] receives the new one.
static int sort_types(metrics_report *r, int *remap) {
    char **sorted = malloc((size_t)(r->num_labels + 1) * sizeof *sorted);
    if (!sorted) return error_set(EXIT_RESOURCES, "out of memory computing metrics");
    memcpy(sorted, r->types, (size_t)r->n_types * sizeof *sorted);
    qsort(sorted, (size_t)r->n_types, sizeof *sorted, compare_strings);
    for (int i = 0; i < r->n_types; i++)
        for (int j = 0; j < r->n_types; j++)
            if (r->types[i] == sorted[j]) remap[i] = j;
    free(r->types);
    r->types = sorted;
    return 0;
}

// Token-level one-vs-rest counts. 0, or EXIT_INTERNAL for an id outside the labels.
static int count_tokens(metrics_report *r, const int *true_tags, const int *pred_tags, long n) {
    r->n_tokens = n;
    for (long i = 0; i < n; i++) {
        int t = true_tags[i], p = pred_tags[i];
        if (t < 0 || t >= r->num_labels || p < 0 || p >= r->num_labels)
            return error_set(EXIT_INTERNAL, "metrics: tag id out of range at word %ld", i);
        if (t == p) {
            r->n_correct++;
            r->tp[t]++;
        } else {
            r->fp[p]++;
            r->fn[t]++;
        }
    }
    for (int c = 0; c < r->num_labels; c++) r->tn[c] = n - r->tp[c] - r->fp[c] - r->fn[c];
    return 0;
}

static int report_alloc(metrics_report *r, const char *const *labels, int num_labels) {
    size_t types = (size_t)num_labels + 1;
    r->num_labels = num_labels;
    r->labels = calloc((size_t)num_labels, sizeof *r->labels);
    r->tp = calloc((size_t)num_labels, sizeof(long));
    r->fp = calloc((size_t)num_labels, sizeof(long));
    r->fn = calloc((size_t)num_labels, sizeof(long));
    r->tn = calloc((size_t)num_labels, sizeof(long));
    r->types = calloc(types, sizeof *r->types);
    r->entity_tp = calloc(types, sizeof(long));
    r->entity_pred = calloc(types, sizeof(long));
    r->entity_true = calloc(types, sizeof(long));
    if (!r->labels || !r->tp || !r->fp || !r->fn || !r->tn || !r->types || !r->entity_tp ||
        !r->entity_pred || !r->entity_true)
        return error_set(EXIT_RESOURCES, "out of memory computing metrics");
    for (int i = 0; i < num_labels; i++)
        if (!(r->labels[i] = strdup(labels[i])))
            return error_set(EXIT_RESOURCES, "out of memory computing metrics");
    return 0;
}

int metrics_compute(const char *const *labels, int num_labels, const int *true_tags,
                    const int *pred_tags, const int *lengths, int n_sentences, metrics_report *r) {
    memset(r, 0, sizeof *r);
    long n = 0;
    for (int s = 0; s < n_sentences; s++) n += lengths[s];
    entity *true_entities = malloc((size_t)(n + 1) * sizeof(entity));
    entity *pred_entities = malloc((size_t)(n + 1) * sizeof(entity));
    int *remap = malloc((size_t)(num_labels + 1) * sizeof *remap);
    int rc = report_alloc(r, labels, num_labels);
    if (rc == 0 && (!true_entities || !pred_entities || !remap))
        rc = error_set(EXIT_RESOURCES, "out of memory computing metrics");
    if (rc == 0) rc = count_tokens(r, true_tags, pred_tags, n);
    long nt = 0, np = 0;
    if (rc == 0) {
        nt = get_entities(r, labels, true_tags, lengths, n_sentences, true_entities);
        np = nt < 0 ? -1 : get_entities(r, labels, pred_tags, lengths, n_sentences, pred_entities);
        if (np < 0) rc = error_code() ? error_code() : EXIT_INTERNAL;
    }
    if (rc == 0) rc = sort_types(r, remap);
    if (rc == 0) {
        for (long i = 0; i < nt; i++) r->entity_true[remap[true_entities[i].type]]++;
        for (long i = 0; i < np; i++) r->entity_pred[remap[pred_entities[i].type]]++;
        // Both lists are ordered by position and their chunks do not overlap: merge.
        for (long a = 0, b = 0; a < nt && b < np;) {
            const entity *x = &true_entities[a], *y = &pred_entities[b];
            if (x->begin == y->begin && x->end == y->end && x->type == y->type) {
                r->entity_tp[remap[x->type]]++;
                a++;
                b++;
            } else if (x->begin < y->begin || (x->begin == y->begin && x->end < y->end)) {
                a++;
            } else {
                b++;
            }
        }
    }
    free(true_entities);
    free(pred_entities);
    free(remap);
    if (rc) metrics_free(r);
    return rc;
}

double metrics_accuracy(const metrics_report *r) {
    return r->n_tokens ? (double)r->n_correct / (double)r->n_tokens : 0.0;
}

static double divide(double num, double den) { return den == 0.0 ? 0.0 : num / den; }

// seqeval: F from the rounded-in-double precision and recall.
static metrics_prf seqeval_prf(long tp, long pred, long truth) {
    metrics_prf m;
    m.precision = divide((double)tp, (double)pred);
    m.recall = divide((double)tp, (double)truth);
    double den = m.precision + m.recall;
    m.f1 = den == 0.0 ? 0.0 : 2.0 * m.precision * m.recall / den;
    m.support = truth;
    return m;
}

metrics_prf metrics_entity_micro(const metrics_report *r) {
    long tp = 0, pred = 0, truth = 0;
    for (int i = 0; i < r->n_types; i++) {
        tp += r->entity_tp[i];
        pred += r->entity_pred[i];
        truth += r->entity_true[i];
    }
    return seqeval_prf(tp, pred, truth);
}

// scikit-learn: F = 2 tp / (true + pred).
static metrics_prf sklearn_prf(long tp, long fp, long fn) {
    metrics_prf m;
    m.precision = divide((double)tp, (double)(tp + fp));
    m.recall = divide((double)tp, (double)(tp + fn));
    m.f1 = divide(2.0 * (double)tp, (double)(2 * tp + fp + fn));
    m.support = tp + fn;
    return m;
}

static void write_row(FILE *out, int width, int digits, const char *name, metrics_prf m) {
    fprintf(out, "%*s  %9.*f %9.*f %9.*f %9ld\n", width, name, digits, m.precision, digits,
            m.recall, digits, m.f1, m.support);
}

static void write_header(FILE *out, int width) {
    fprintf(out, "%*s  %9s %9s %9s %9s\n\n", width, "", "precision", "recall", "f1-score",
            "support");
}

static int report_width(int name_width, int digits) {
    int width = name_width > 12 ? name_width : 12; // len("weighted avg")
    return width > digits ? width : digits;
}

// The labels scikit-learn reports: those present in the truth or the predictions, by name.
static int present_labels(const metrics_report *r, int *ids) {
    int n = 0;
    for (int c = 0; c < r->num_labels; c++)
        if (r->tp[c] + r->fp[c] + r->fn[c] > 0) ids[n++] = c;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(r->labels[ids[j - 1]], r->labels[ids[j]]) > 0; j--) {
            int t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    return n;
}

char *metrics_fine_text(const metrics_report *r, int digits) {
    int *ids = malloc((size_t)(r->num_labels + 1) * sizeof *ids);
    if (!ids) return NULL;
    int n = present_labels(r, ids), name_width = 0;
    for (int i = 0; i < n; i++) {
        int len = (int)strlen(r->labels[ids[i]]);
        if (len > name_width) name_width = len;
    }
    int width = report_width(name_width, digits);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    write_header(out, width);
    metrics_prf macro = {0}, weighted = {0};
    long support = 0;
    for (int i = 0; i < n; i++) support += r->tp[ids[i]] + r->fn[ids[i]];
    for (int i = 0; i < n; i++) {
        int c = ids[i];
        metrics_prf m = sklearn_prf(r->tp[c], r->fp[c], r->fn[c]);
        write_row(out, width, digits, r->labels[c], m);
        macro.precision += m.precision;
        macro.recall += m.recall;
        macro.f1 += m.f1;
        weighted.precision += m.precision * (double)m.support;
        weighted.recall += m.recall * (double)m.support;
        weighted.f1 += m.f1 * (double)m.support;
    }
    fputc('\n', out);
    // Every present label is reported, so the micro average is the accuracy.
    fprintf(out, "%*s  %9s %9s %9.*f %9ld\n", width, "accuracy", "", "", digits,
            metrics_accuracy(r), support);
    if (n > 0) {
        macro.precision /= n;
        macro.recall /= n;
        macro.f1 /= n;
    }
    macro.support = support;
    weighted.precision = divide(weighted.precision, (double)support);
    weighted.recall = divide(weighted.recall, (double)support);
    weighted.f1 = divide(weighted.f1, (double)support);
    weighted.support = support;
    write_row(out, width, digits, "macro avg", macro);
    write_row(out, width, digits, "weighted avg", weighted);
    fclose(out);
    free(ids);
    return text;
}

char *metrics_coarse_text(const metrics_report *r, int digits) {
    int name_width = 0;
    for (int i = 0; i < r->n_types; i++) {
        int len = (int)strlen(r->types[i]);
        if (len > name_width) name_width = len;
    }
    int width = report_width(name_width, digits);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    write_header(out, width);
    metrics_prf macro = {0}, weighted = {0};
    long support = 0;
    for (int i = 0; i < r->n_types; i++) {
        metrics_prf m = seqeval_prf(r->entity_tp[i], r->entity_pred[i], r->entity_true[i]);
        write_row(out, width, digits, r->types[i], m);
        support += m.support;
        macro.precision += m.precision;
        macro.recall += m.recall;
        macro.f1 += m.f1;
        weighted.precision += m.precision * (double)m.support;
        weighted.recall += m.recall * (double)m.support;
        weighted.f1 += m.f1 * (double)m.support;
    }
    fputc('\n', out);
    if (r->n_types > 0) {
        macro.precision /= r->n_types;
        macro.recall /= r->n_types;
        macro.f1 /= r->n_types;
    }
    macro.support = weighted.support = support;
    weighted.precision = divide(weighted.precision, (double)support);
    weighted.recall = divide(weighted.recall, (double)support);
    weighted.f1 = divide(weighted.f1, (double)support);
    write_row(out, width, digits, "micro avg", metrics_entity_micro(r));
    write_row(out, width, digits, "macro avg", macro);
    write_row(out, width, digits, "weighted avg", weighted);
    fclose(out);
    return text;
}

cJSON *metrics_score_json(const metrics_report *r, double eval_loss) {
    cJSON *o = cJSON_CreateObject();
    metrics_prf micro = metrics_entity_micro(r);
    cJSON_AddNumberToObject(o, "seqeval_overall_accuracy_score", metrics_accuracy(r));
    cJSON_AddNumberToObject(o, "seqeval_overall_precision_score", micro.precision);
    cJSON_AddNumberToObject(o, "seqeval_overall_recall_score", micro.recall);
    cJSON_AddNumberToObject(o, "seqeval_overall_f1_score", micro.f1);
    cJSON_AddNumberToObject(o, "eval_loss", eval_loss);
    cJSON_AddNumberToObject(o, "n_tokens", (double)r->n_tokens);
    long entities = 0;
    cJSON *per_type = cJSON_AddObjectToObject(o, "entities");
    for (int i = 0; i < r->n_types; i++) {
        metrics_prf m = seqeval_prf(r->entity_tp[i], r->entity_pred[i], r->entity_true[i]);
        cJSON *t = cJSON_AddObjectToObject(per_type, r->types[i]);
        cJSON_AddNumberToObject(t, "precision", m.precision);
        cJSON_AddNumberToObject(t, "recall", m.recall);
        cJSON_AddNumberToObject(t, "f1", m.f1);
        cJSON_AddNumberToObject(t, "support", (double)m.support);
        entities += m.support;
    }
    cJSON_AddNumberToObject(o, "n_entities", (double)entities);
    return o;
}

cJSON *metrics_fundamental_json(const metrics_report *r) {
    cJSON *o = cJSON_CreateObject();
    for (int c = 0; c < r->num_labels; c++) {
        cJSON *t = cJSON_AddObjectToObject(o, r->labels[c]);
        cJSON_AddNumberToObject(t, "tn", (double)r->tn[c]);
        cJSON_AddNumberToObject(t, "fp", (double)r->fp[c]);
        cJSON_AddNumberToObject(t, "fn", (double)r->fn[c]);
        cJSON_AddNumberToObject(t, "tp", (double)r->tp[c]);
    }
    return o;
}

static int write_json(const char *dir, const char *name, cJSON *json) {
    char path[PATH_MAX];
    int rc = files_join(path, sizeof path, "%s/%s", dir, name);
    if (rc) {
        cJSON_Delete(json);
        return rc;
    }
    return files_write_json(path, json);
}

int metrics_write(const metrics_report *r, double eval_loss, const char *dir) {
    int rc = files_mkdirs(dir);
    if (rc) return rc;
    char path[PATH_MAX];
    char *fine = metrics_fine_text(r, 2), *coarse = metrics_coarse_text(r, 2);
    if (!fine || !coarse) rc = error_set(EXIT_RESOURCES, "out of memory");
    if (rc == 0) rc = files_join(path, sizeof path, "%s/fine.txt", dir);
    if (rc == 0) rc = files_write_text(path, fine);
    if (rc == 0) rc = files_join(path, sizeof path, "%s/coarse.txt", dir);
    if (rc == 0) rc = files_write_text(path, coarse);
    free(fine);
    free(coarse);
    if (rc == 0) rc = write_json(dir, "score.json", metrics_score_json(r, eval_loss));
    if (rc == 0) rc = write_json(dir, "fundamental.json", metrics_fundamental_json(r));
    return rc;
}
