// Atomic checkpoints with a checksummed manifest; see checkpoint.h.
#include "runner/job/checkpoint.h"
#include "runner/job/checkpoint_internal.h"

#include "runner/error.h"
#include "runner/fault.h"
#include "runner/job/files.h"
#include "runner/log.h"
#include "runner/model/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char STATE_MAGIC[8] = {'R', 'N', 'R', 'C', 'K', 'P', 'T', '1'};
const char *const CHECKPOINT_FILES[CHECKPOINT_NFILES] = {"state.bin", "model.safetensors",
                                                          "trainer_state.json"};

void train_state_init(train_state *st, uint64_t seed) {
    memset(st, 0, sizeof *st);
    st->seed = seed;
    st->best_eval_loss = INFINITY;
    st->best_eval_f1 = 0;
    st->best_step = -1;
    st->curve = cJSON_CreateArray();
}

void train_state_free(train_state *st) {
    cJSON_Delete(st->curve);
    st->curve = NULL;
    cJSON_Delete(st->fingerprint);
    st->fingerprint = NULL;
}

// The keys of `want` and `got` (either may be NULL) whose values differ, as a cJSON
// array of strings; NULL when they are equal.
static cJSON *fingerprint_differences(const cJSON *want, const cJSON *got) {
    cJSON *keys = cJSON_CreateArray();
    for (const cJSON *w = want ? want->child : NULL; w; w = w->next) {
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(got, w->string);
        if (!g || !cJSON_Compare(w, g, true)) cJSON_AddItemToArray(keys, cJSON_CreateString(w->string));
    }
    for (const cJSON *g = got ? got->child : NULL; g; g = g->next)
        if (!cJSON_GetObjectItemCaseSensitive(want, g->string))
            cJSON_AddItemToArray(keys, cJSON_CreateString(g->string));
    if (!cJSON_IsObject(got)) cJSON_AddItemToArray(keys, cJSON_CreateString("(no fingerprint)"));
    if (cJSON_GetArraySize(keys) == 0) {
        cJSON_Delete(keys);
        return NULL;
    }
    return keys;
}

// The fingerprint recorded in checkpoint `ck` (owned), NULL when none can be read.
static cJSON *read_fingerprint(const char *ck) {
    char path[PATH_MAX], *text = NULL;
    if (files_join(path, sizeof path, "%s/trainer_state.json", ck) ||
        files_read_all(path, &text, NULL) != 0) {
        error_clear();
        return NULL;
    }
    cJSON *state = cJSON_Parse(text);
    free(text);
    cJSON *fingerprint = cJSON_DetachItemFromObjectCaseSensitive(state, "fingerprint");
    cJSON_Delete(state);
    return fingerprint;
}

static cJSON *state_to_json(const train_state *st) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)st->step);
    cJSON_AddNumberToObject(o, "epoch", st->epoch);
    cJSON_AddNumberToObject(o, "batch_in_epoch", st->batch_in_epoch);
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)st->seed);
    cJSON_AddStringToObject(o, "seed", seed); // 64 bits do not fit a JSON double
    // Doubles as hex floats: restored bit for bit.
    char hex[40];
    snprintf(hex, sizeof hex, "%a", st->loss_sum);
    cJSON_AddStringToObject(o, "loss_sum", hex);
    cJSON_AddNumberToObject(o, "loss_count", (double)st->loss_count);
    snprintf(hex, sizeof hex, "%a", st->best_eval_loss);
    cJSON_AddStringToObject(o, "best_eval_loss", hex);
    snprintf(hex, sizeof hex, "%a", st->best_eval_f1);
    cJSON_AddStringToObject(o, "best_eval_f1", hex);
    cJSON_AddNumberToObject(o, "best_step", (double)st->best_step);
    cJSON_AddNumberToObject(o, "bad_epochs", st->bad_epochs);
    cJSON_AddBoolToObject(o, "finished", st->finished);
    cJSON_AddBoolToObject(o, "halted", st->halted);
    cJSON_AddItemToObject(o, "curve", cJSON_Duplicate(st->curve, 1));
    if (st->fingerprint) cJSON_AddItemToObject(o, "fingerprint", cJSON_Duplicate(st->fingerprint, 1));
    return o;
}

static double hex_double(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? strtod(v->valuestring, NULL) : NAN;
}

static int state_from_json(const cJSON *o, train_state *st, const char *path) {
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(o, "seed");
    const cJSON *curve = cJSON_GetObjectItemCaseSensitive(o, "curve");
    if (!cJSON_IsString(seed) || !cJSON_IsArray(curve) ||
        !cJSON_IsNumber(cJSON_GetObjectItem(o, "step")))
        return error_set(EXIT_BAD_INPUT, "%s: not a trainer state", path);
    train_state_free(st);
    st->step = (long)cJSON_GetObjectItem(o, "step")->valuedouble;
    st->epoch = cJSON_GetObjectItem(o, "epoch")->valueint;
    st->batch_in_epoch = cJSON_GetObjectItem(o, "batch_in_epoch")->valueint;
    st->seed = strtoull(seed->valuestring, NULL, 10);
    st->loss_sum = hex_double(o, "loss_sum");
    st->loss_count = (long)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "loss_count"));
    st->best_eval_loss = hex_double(o, "best_eval_loss");
    st->best_eval_f1 = hex_double(o, "best_eval_f1");
    st->best_step = (long)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "best_step"));
    st->bad_epochs = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "bad_epochs"));
    st->finished = cJSON_IsTrue(cJSON_GetObjectItem(o, "finished"));
    st->halted = cJSON_IsTrue(cJSON_GetObjectItem(o, "halted"));
    st->curve = cJSON_Duplicate(curve, 1);
    const cJSON *fingerprint = cJSON_GetObjectItemCaseSensitive(o, "fingerprint");
    st->fingerprint = cJSON_IsObject(fingerprint) ? cJSON_Duplicate(fingerprint, 1) : NULL;
    return 0;
}

// Steps of every checkpoint-<N> directory, complete or not, newest first.
int checkpoint_list(const char *dir, long **steps) {
    *steps = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, "checkpoint-", 11) != 0) continue;
        long step = strtol(e->d_name + 11, &end, 10);
        if (*end || end == e->d_name + 11) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            long *grown = realloc(*steps, (size_t)cap * sizeof *grown);
            if (!grown) break;
            *steps = grown;
        }
        (*steps)[n++] = step;
    }
    closedir(d);
    for (int i = 1; i < n; i++) // newest first
        for (int j = i; j > 0 && (*steps)[j - 1] < (*steps)[j]; j--) {
            long t = (*steps)[j];
            (*steps)[j] = (*steps)[j - 1];
            (*steps)[j - 1] = t;
        }
    return n;
}

// Whether `ck` is already a valid checkpoint of exactly this trainer state: the same step
// saved twice (the end-of-epoch save, then a stop at the next epoch's first batch; a stop
// right after a resume). Its weights are these too, and rewriting it in place would leave
// no valid checkpoint if the process were killed half way.
static bool already_saved(const char *ck, const train_state *st) {
    char path[PATH_MAX], *saved = NULL;
    if (checkpoint_verify(ck) != 0 || files_join(path, sizeof path, "%s/trainer_state.json", ck) ||
        files_read_all(path, &saved, NULL) != 0) {
        error_clear(); // absent or broken: written afresh
        return false;
    }
    // Printed as files_write_json printed it, so equal states give equal texts.
    cJSON *json = state_to_json(st);
    char *ours = cJSON_Print(json);
    cJSON_Delete(json);
    bool same = ours && strcmp(ours, saved) == 0;
    free(ours);
    free(saved);
    return same;
}

// Whether `ck` is a complete checkpoint: its manifest (written last) parses and every
// file it names exists with the size it says. Cheaper than checkpoint_verify (no CRC of
// gigabytes at every save); a complete but corrupt one is resume's to skip.
static bool is_complete(const char *ck) {
    char path[PATH_MAX], *text = NULL;
    if (files_join(path, sizeof path, "%s/manifest.json", ck) || !files_exists(path) ||
        files_read_all(path, &text, NULL) != 0) {
        error_clear();
        return false;
    }
    cJSON *manifest = cJSON_Parse(text);
    free(text);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(manifest, "files");
    bool complete = cJSON_IsObject(files);
    for (int i = 0; i < CHECKPOINT_NFILES && complete; i++) {
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(files, CHECKPOINT_FILES[i]), "size");
        struct stat st;
        complete = cJSON_IsNumber(size) &&
                   files_join(path, sizeof path, "%s/%s", ck, CHECKPOINT_FILES[i]) == 0 &&
                   stat(path, &st) == 0 && (double)st.st_size == size->valuedouble;
    }
    cJSON_Delete(manifest);
    error_clear();
    return complete;
}

// save_total_limit after checkpoint-<current> was written: keep the newest `keep`
// complete checkpoints up to `current`. Incomplete folders (a save killed half way) are
// not counted — counted, they pushed complete ones out and left fewer than `keep` that a
// resume can use — and not deleted: a folder without its manifest may be one being
// written. Never deleted: `current` (the newest complete one), `best` (reloaded at the
// end) and anything newer than `current` (from a run that went further: not ours).
void checkpoint_rotate(const char *dir, long current, long best, int keep, const cJSON *fingerprint) {
    long *steps;
    int n = checkpoint_list(dir, &steps), kept = 0;
    for (int i = 0; i < n; i++) {
        if (steps[i] > current) continue;
        char ck[PATH_MAX];
        if (files_join(ck, sizeof ck, "%s/checkpoint-%ld", dir, steps[i]) != 0) {
            error_clear();
            continue;
        }
        if (steps[i] != current && !is_complete(ck)) continue;
        // Another run's checkpoint (another fingerprint): neither counted nor deleted.
        if (steps[i] != current && fingerprint) {
            cJSON *theirs = read_fingerprint(ck);
            cJSON *differ = fingerprint_differences(fingerprint, theirs);
            cJSON_Delete(theirs);
            cJSON_Delete(differ);
            if (differ) continue;
        }
        if (kept < keep || steps[i] == current) {
            kept++;
            continue;
        }
        if (steps[i] == best) continue; // the best model outlives the limit
        if (files_remove_tree(ck, dir) == 0) {
            log_info("checkpoint_deleted", "%s (save_total_limit %d)", ck, keep);
        } else {
            log_warn("checkpoint_delete_failed", "%s: %s", ck, error_message());
            error_clear();
        }
    }
    free(steps);
}

// A complete checkpoint of another run (another fingerprint) where this run saves the
// same step: renamed, contents untouched, to <ck>.other-<N>, a name that no listing
// takes for a checkpoint. Overwritten, it would be lost; kept under its name, the end of
// this run could reload its weights as this run's best. 0 or EXIT_OUTPUT.
int checkpoint_set_aside(const char *ck, const cJSON *fingerprint) {
    if (!fingerprint || !is_complete(ck)) return 0;
    cJSON *theirs = read_fingerprint(ck);
    cJSON *differ = fingerprint_differences(fingerprint, theirs);
    cJSON_Delete(theirs);
    if (!differ) return 0;
    char aside[PATH_MAX];
    for (int n = 1; n < 1000; n++) {
        if (files_join(aside, sizeof aside, "%s.other-%d", ck, n)) break;
        if (files_exists(aside)) continue;
        if (rename(ck, aside) != 0) break;
        cJSON *fields = cJSON_CreateObject();
        cJSON_AddStringToObject(fields, "checkpoint", ck);
        cJSON_AddStringToObject(fields, "moved_to", aside);
        cJSON_AddItemToObject(fields, "keys", differ);
        log_fields(LOG_WARN, "checkpoint_set_aside", fields);
        return 0;
    }
    cJSON_Delete(differ);
    error_clear();
    return error_set(EXIT_OUTPUT, "%s: another run's checkpoint holds this step and cannot "
                     "be set aside: %s", ck, strerror(errno));
}

int checkpoint_save(const char *dir, const bert_model *m, const train_state *st, int keep) {
    char ck[PATH_MAX], path[PATH_MAX];
    int rc = files_join(ck, sizeof ck, "%s/checkpoint-%ld", dir, st->step);
    if (rc) return rc;
    if ((rc = checkpoint_set_aside(ck, st->fingerprint))) return rc;
    if (already_saved(ck, st)) {
        log_info("checkpoint_kept", "%s already holds step %ld; not written again", ck, st->step);
        return 0;
    }
    if ((rc = files_mkdirs(ck))) return rc;
    // A checkpoint being rewritten (another state at this step, or a broken one) loses its
    // manifest first, so that it is never taken for complete half way.
    if (files_join(path, sizeof path, "%s/manifest.json", ck) == 0) remove(path);

    size_t P = bert_num_parameters(m);
    float *buf = malloc(3 * P * sizeof(float));
    if (!buf) return error_set(EXIT_RESOURCES, "out of memory writing a checkpoint");
    rc = bert_get_state(m, buf, buf + P, buf + 2 * P);
    uint64_t count = P;
    const void *parts[] = {STATE_MAGIC, &count, buf};
    size_t lens[] = {sizeof STATE_MAGIC, sizeof count, 3 * P * sizeof(float)};
    if (rc == 0) rc = files_join(path, sizeof path, "%s/state.bin", ck);
    if (rc == 0) fault_point("checkpoint_file", path);
    if (rc == 0) rc = files_write_atomic_parts(path, parts, lens, 3);
    free(buf);
    if (rc == 0) rc = files_join(path, sizeof path, "%s/model.safetensors", ck);
    if (rc == 0) fault_point("checkpoint_file", path);
    if (rc == 0) rc = bert_save_safetensors(m, path);
    if (rc == 0) rc = files_join(path, sizeof path, "%s/trainer_state.json", ck);
    if (rc == 0) fault_point("checkpoint_file", path);
    if (rc == 0) rc = files_write_json(path, state_to_json(st));
    if (rc) return rc;

    cJSON *manifest = cJSON_CreateObject();
    cJSON_AddNumberToObject(manifest, "step", (double)st->step);
    cJSON *files = cJSON_AddObjectToObject(manifest, "files");
    for (int i = 0; i < CHECKPOINT_NFILES && rc == 0; i++) {
        uint32_t crc;
        uint64_t size;
        rc = files_join(path, sizeof path, "%s/%s", ck, CHECKPOINT_FILES[i]);
        if (rc == 0) rc = files_crc32(path, &crc, &size);
        if (rc) break;
        cJSON *f = cJSON_AddObjectToObject(files, CHECKPOINT_FILES[i]);
        cJSON_AddNumberToObject(f, "size", (double)size);
        char hex[16];
        snprintf(hex, sizeof hex, "%08x", crc);
        cJSON_AddStringToObject(f, "crc32", hex);
    }
    if (rc) {
        cJSON_Delete(manifest);
        return rc;
    }
    if ((rc = files_join(path, sizeof path, "%s/manifest.json", ck))) {
        cJSON_Delete(manifest);
        return rc;
    }
    fault_point("checkpoint_file", path);
    if ((rc = files_write_json(path, manifest))) return rc;
    log_info("checkpoint_saved", "%s", ck);

    if (keep > 0) checkpoint_rotate(dir, st->step, st->best_step, keep, st->fingerprint);
    return 0;
}

int checkpoint_verify(const char *ck) {
    char path[PATH_MAX], *text;
    int rc = files_join(path, sizeof path, "%s/manifest.json", ck);
    if (rc) return rc;
    if (!files_exists(path)) return error_set(EXIT_BAD_INPUT, "%s: no manifest (incomplete)", ck);
    if ((rc = files_read_all(path, &text, NULL))) return rc;
    cJSON *manifest = cJSON_Parse(text);
    free(text);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(manifest, "files");
    if (!cJSON_IsObject(files)) {
        cJSON_Delete(manifest);
        return error_set(EXIT_BAD_INPUT, "%s: manifest is not valid", ck);
    }
    for (int i = 0; i < CHECKPOINT_NFILES && rc == 0; i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(files, CHECKPOINT_FILES[i]);
        const cJSON *want_crc = cJSON_GetObjectItemCaseSensitive(f, "crc32");
        const cJSON *want_size = cJSON_GetObjectItemCaseSensitive(f, "size");
        uint32_t crc;
        uint64_t size;
        if (!cJSON_IsString(want_crc) || !cJSON_IsNumber(want_size)) {
            rc = error_set(EXIT_BAD_INPUT, "%s: manifest lacks %s", ck, CHECKPOINT_FILES[i]);
            break;
        }
        rc = files_join(path, sizeof path, "%s/%s", ck, CHECKPOINT_FILES[i]);
        if (rc == 0) rc = files_crc32(path, &crc, &size);
        if (rc) break;
        char hex[16];
        snprintf(hex, sizeof hex, "%08x", crc);
        if (size != (uint64_t)want_size->valuedouble || strcmp(hex, want_crc->valuestring) != 0)
            rc = error_set(EXIT_BAD_INPUT, "%s: checksum mismatch (size %llu crc32 %s, manifest "
                           "says %.0f %s)", path, (unsigned long long)size, hex,
                           want_size->valuedouble, want_crc->valuestring);
    }
    cJSON_Delete(manifest);
    return rc;
}

static int load_state_bin(const char *ck, bert_model *m, bool optimizer) {
    char path[PATH_MAX], *data;
    size_t len;
    int rc = files_join(path, sizeof path, "%s/state.bin", ck);
    if (rc == 0) rc = files_read_all(path, &data, &len);
    if (rc) return rc;
    size_t P = bert_num_parameters(m);
    uint64_t count;
    if (len < 16 || memcmp(data, STATE_MAGIC, 8) != 0) {
        free(data);
        return error_set(EXIT_BAD_INPUT, "%s: not a runner checkpoint state", path);
    }
    memcpy(&count, data + 8, sizeof count);
    if (count != P || len != 16 + 3 * P * sizeof(float)) {
        free(data);
        return error_set(EXIT_BAD_INPUT, "%s: holds %llu parameters, the model has %zu", path,
                         (unsigned long long)count, P);
    }
    // The file's floats are at offset 16 of a malloc'd block: aligned for float.
    const float *state = (const float *)(void *)(data + 16);
    if (optimizer) {
        rc = bert_set_state(m, state, state + P, state + 2 * P);
    } else {
        // Weights only: keep the model's own optimizer moments.
        float *current = malloc(3 * P * sizeof(float));
        if (!current) rc = error_set(EXIT_RESOURCES, "out of memory");
        if (rc == 0) rc = bert_get_state(m, current, current + P, current + 2 * P);
        if (rc == 0) rc = bert_set_state(m, state, current + P, current + 2 * P);
        free(current);
    }
    free(data);
    return rc;
}

// state.bin's header and size as load_state_bin checks them, without reading its
// floats (the manifest's CRC-32 covered those): a rank checks before the ranks agree, and
// loads only afterwards.
static int check_state_bin(const char *ck, const bert_model *m) {
    char path[PATH_MAX], head[16];
    int rc = files_join(path, sizeof path, "%s/state.bin", ck);
    if (rc) return rc;
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(EXIT_BAD_INPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    bool read_all = fread(head, 1, sizeof head, f) == sizeof head;
    bool sized = fstat(fileno(f), &sb) == 0;
    fclose(f);
    size_t P = bert_num_parameters(m);
    uint64_t count = 0;
    if (read_all) memcpy(&count, head + 8, sizeof count);
    if (!read_all || memcmp(head, STATE_MAGIC, sizeof STATE_MAGIC) != 0)
        return error_set(EXIT_BAD_INPUT, "%s: not a runner checkpoint state", path);
    if (!sized || count != P || (uint64_t)sb.st_size != 16 + 3 * (uint64_t)P * sizeof(float))
        return error_set(EXIT_BAD_INPUT, "%s: holds %llu parameters, the model has %zu", path,
                         (unsigned long long)count, P);
    return 0;
}

// Everything a resume checks before it loads `ck` into m: the manifest and every file's
// size and CRC-32, the trainer state (parsed into *loaded, which the caller frees; freed
// here on failure), the run's fingerprint and seed, state.bin's header and the
// safetensors header. 0 or EXIT_BAD_INPUT (why in error_message()).
int checkpoint_validate(const char *ck, const bert_model *m, const train_state *st,
                        train_state *loaded) {
    char path[PATH_MAX], *text = NULL;
    train_state_init(loaded, st->seed);
    int rc = checkpoint_verify(ck);
    if (rc == 0) rc = files_join(path, sizeof path, "%s/trainer_state.json", ck);
    if (rc == 0) rc = files_read_all(path, &text, NULL);
    if (rc == 0) {
        cJSON *json = cJSON_Parse(text);
        rc = json ? state_from_json(json, loaded, path)
                  : error_set(EXIT_BAD_INPUT, "%s: not valid JSON", path);
        cJSON_Delete(json);
    }
    free(text);
    cJSON *differ = rc == 0 && st->fingerprint
                        ? fingerprint_differences(st->fingerprint, loaded->fingerprint)
                        : NULL;
    if (differ) {
        // Another run's checkpoint (a setting, the data, the model or the code changed
        // under the same output): not resumed, and never deleted.
        cJSON *fields = cJSON_CreateObject();
        cJSON_AddStringToObject(fields, "checkpoint", ck);
        cJSON_AddItemToObject(fields, "keys", differ);
        log_fields(LOG_WARN, "checkpoint_fingerprint_mismatch", fields);
        rc = error_set(EXIT_BAD_INPUT, "%s: written by a run with another fingerprint (left "
                       "as it is)", ck);
    }
    if (rc == 0 && loaded->seed != st->seed)
        rc = error_set(EXIT_BAD_INPUT, "%s: written with seed %llu, this run uses %llu", path,
                       (unsigned long long)loaded->seed, (unsigned long long)st->seed);
    if (rc == 0) rc = check_state_bin(ck, m);
    if (rc == 0) rc = files_join(path, sizeof path, "%s/model.safetensors", ck);
    if (rc == 0) {
        safetensors_file *weights = NULL;
        rc = safetensors_open(path, &weights);
        safetensors_close(weights);
    }
    if (rc) train_state_free(loaded);
    return rc;
}

// Load validated `ck` into m and take its trainer state (*loaded, moved into *st).
int checkpoint_restore(const char *ck, bert_model *m, train_state *st, train_state *loaded) {
    int rc = load_state_bin(ck, m, true);
    if (rc) {
        train_state_free(loaded);
        return rc;
    }
    train_state_free(st);
    *st = *loaded;
    log_info("checkpoint_resumed", "%s: step %ld, epoch %d, batch %d", ck, st->step, st->epoch,
             st->batch_in_epoch);
    return 0;
}

void checkpoint_log_skipped(const char *ck) {
    log_warn("checkpoint_skipped", "%s: %s; trying the previous checkpoint", ck, error_message());
    error_clear();
}

int checkpoint_resume(const char *dir, bert_model *m, train_state *st, bool *found) {
    *found = false;
    long *steps;
    int n = checkpoint_list(dir, &steps);
    for (int i = 0; i < n; i++) {
        char ck[PATH_MAX];
        if (files_join(ck, sizeof ck, "%s/checkpoint-%ld", dir, steps[i])) continue;
        train_state loaded;
        int rc = checkpoint_validate(ck, m, st, &loaded);
        if (rc == 0) rc = checkpoint_restore(ck, m, st, &loaded);
        if (rc == 0) {
            *found = true;
            free(steps);
            return 0;
        }
        checkpoint_log_skipped(ck);
    }
    free(steps);
    return 0;
}

int checkpoint_load_weights(const char *dir, long step, bert_model *m) {
    char ck[PATH_MAX];
    int rc = files_join(ck, sizeof ck, "%s/checkpoint-%ld", dir, step);
    if (rc == 0) rc = checkpoint_verify(ck);
    if (rc == 0) rc = load_state_bin(ck, m, false);
    return rc;
}

int checkpoint_remove_all(const char *dir) {
    long *steps;
    int n = checkpoint_list(dir, &steps), rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        char ck[PATH_MAX];
        rc = files_join(ck, sizeof ck, "%s/checkpoint-%ld", dir, steps[i]);
        if (rc == 0) rc = files_remove_tree(ck, dir);
    }
    free(steps);
    return rc;
}
