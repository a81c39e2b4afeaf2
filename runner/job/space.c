// The search space and schedule defaults by starting point; see space.h.
#include "runner/job/space.h"

#include "runner/error.h"
#include "runner/job/files.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Fine-tuning pretrained BERT: the BERT paper's learning rates (2e-5 to 5e-5; its 3e-5 in
// the middle), weight decay 0.01 and a 10 % warm-up, as the original Trainer job used.
// That range is for bert-base's width (768) and up. Narrower pretrained models fine-tune
// with larger steps (Turc et al. 2019 tune their compact BERTs up to 1e-4; MiniLM-L6,
// width 384, reached test F1 0.82 on the demo at 4.6e-5 with batch 32 and 0.95 at 8e-5),
// so below 768 the range grows as 768 / width, at most 4 times.
static const double PRETRAINED_LR_LOW = 2e-5, PRETRAINED_LR_HIGH = 5e-5;
static const double PRETRAINED_WIDTH = 768, PRETRAINED_MAX_SCALE = 4;
static const double PRETRAINED_WEIGHT_DECAY = 0.01, PRETRAINED_WARMUP = 0.1;

// From random weights: bert-tiny (hidden 128, 2 layers) learns the demo data with peak
// rates of 5e-4 to 5e-3 and no warm-up (data/demo/hyperspace.json, test F1 0.98). Wider
// and deeper models diverge or collapse to all-"O" there (bert-small: F1 0 at 2.9e-3), so
// the range shrinks with the width (as Adam's stable step does, roughly 1/width) and with
// the square root of the depth, and they warm up over the first tenth of the steps.
static const double SCRATCH_LR_HIGH = 5e-3, SCRATCH_WIDTH = 128, SCRATCH_DEPTH = 2;
static const double SCRATCH_WARMUP = 0.1;

void space_defaults_for(const space_start *start, space_defaults *out) {
    memset(out, 0, sizeof *out);
    if (start->pretrained) {
        double scale = start->hidden_size > 0 ? PRETRAINED_WIDTH / start->hidden_size : 1;
        if (scale < 1) scale = 1;
        if (scale > PRETRAINED_MAX_SCALE) scale = PRETRAINED_MAX_SCALE;
        out->lr_low = PRETRAINED_LR_LOW * scale;
        out->lr_high = PRETRAINED_LR_HIGH * scale;
        out->weight_decay_low = out->weight_decay_high = PRETRAINED_WEIGHT_DECAY;
        out->warmup_ratio = PRETRAINED_WARMUP;
        return;
    }
    double width = start->hidden_size > 0 ? start->hidden_size : SCRATCH_WIDTH;
    double depth = start->num_layers > 0 ? start->num_layers : SCRATCH_DEPTH;
    double scale = SCRATCH_WIDTH / width * sqrt(SCRATCH_DEPTH / depth);
    if (scale > 1) scale = 1; // never above the range bert-tiny was tuned with
    out->lr_high = SCRATCH_LR_HIGH * scale;
    out->lr_low = out->lr_high / 10;
    out->weight_decay_low = 0.0;
    out->weight_decay_high = 0.1;
    out->warmup_ratio = scale < 1 ? SCRATCH_WARMUP : 0.0;
}

double space_default_learning_rate(const space_defaults *d) {
    return sqrt(d->lr_low * d->lr_high);
}

cJSON *space_defaults_json(const space_defaults *d) {
    cJSON *root = cJSON_CreateObject();
    cJSON *continuous = cJSON_AddObjectToObject(root, "continuous");
    cJSON *choice = cJSON_AddObjectToObject(root, "choice");
    double lr[2] = {d->lr_low, d->lr_high};
    cJSON_AddItemToObject(continuous, "learning_rate", cJSON_CreateDoubleArray(lr, 2));
    if (d->weight_decay_low < d->weight_decay_high) {
        double wd[2] = {d->weight_decay_low, d->weight_decay_high};
        cJSON_AddItemToObject(continuous, "weight_decay", cJSON_CreateDoubleArray(wd, 2));
    } else {
        cJSON_AddItemToObject(choice, "weight_decay", cJSON_CreateDoubleArray(&d->weight_decay_low, 1));
    }
    const int batches[2] = {16, 32};
    cJSON_AddItemToObject(choice, "per_device_train_batch_size", cJSON_CreateIntArray(batches, 2));
    return root;
}

void space_describe_start(const space_start *start, char *out, size_t cap) {
    if (start->pretrained)
        snprintf(out, cap, "pretrained weights (L%d C%d)", start->num_layers, start->hidden_size);
    else
        snprintf(out, cap, "%s from random weights", start->shape ? start->shape : "the model");
}

// Does the file's "tuned_for" match the run? No "tuned_for" matches every run. *tuned
// receives a description of what the file was tuned for ("" without tuned_for).
static int tuned_for_matches(const char *path, const cJSON *root, const space_start *start,
                             bool *matches, char *tuned, size_t cap) {
    *matches = true;
    tuned[0] = '\0';
    const cJSON *tuned_for = cJSON_GetObjectItemCaseSensitive(root, "tuned_for");
    if (!tuned_for) return 0;
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(tuned_for, "start");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(tuned_for, "shape");
    if (!cJSON_IsObject(tuned_for) || (kind && !cJSON_IsString(kind)) ||
        (shape && !cJSON_IsString(shape)))
        return error_set(EXIT_BAD_INPUT, "%s: tuned_for must be {\"start\": \"random\" or "
                         "\"pretrained\", \"shape\": \"NAME\"}", path);
    if (kind && strcmp(kind->valuestring, "random") != 0 &&
        strcmp(kind->valuestring, "pretrained") != 0)
        return error_set(EXIT_BAD_INPUT, "%s: tuned_for.start is \"%s\"; expected \"random\" or "
                         "\"pretrained\"", path, kind->valuestring);
    bool pretrained = kind && strcmp(kind->valuestring, "pretrained") == 0;
    if (kind && pretrained != start->pretrained) *matches = false;
    if (shape && (!start->shape || strcmp(shape->valuestring, start->shape) != 0)) *matches = false;
    snprintf(tuned, cap, "%s%s", shape ? shape->valuestring : "any shape",
             kind ? (pretrained ? " from pretrained weights" : " from random weights") : "");
    return 0;
}

// The built-in space for the starting point (the caller says why in out->why).
static void choose_builtin(const space_start *start, space_choice *out) {
    space_defaults d;
    space_defaults_for(start, &d);
    out->space = space_defaults_json(&d);
    out->builtin = true;
    snprintf(out->origin, sizeof out->origin, "built-in defaults");
}

int space_choose(const space_start *start, const char *path, bool given, space_choice *out) {
    memset(out, 0, sizeof *out);
    char run[256];
    space_describe_start(start, run, sizeof run);
    if (path && path[0]) {
        char *text;
        size_t len;
        int rc = files_read_all(path, &text, &len);
        if (rc) return rc;
        rc = space_choose_text(start, path, text, len, given, out);
        free(text);
        return rc;
    }
    choose_builtin(start, out);
    snprintf(out->why, sizeof out->why, "no hyperspace.json given or beside the data: the "
             "defaults for %s", run);
    return 0;
}

int space_choose_text(const space_start *start, const char *path, const char *text, size_t len,
                      bool given, space_choice *out) {
    memset(out, 0, sizeof *out);
    char run[256];
    space_describe_start(start, run, sizeof run);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    // Only white space may follow the object (as in a --config file).
    while (root && end && end < text + len &&
           (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (!cJSON_IsObject(root) || (end && end < text + len)) {
        cJSON_Delete(root);
        return error_set(EXIT_BAD_INPUT, "%s: not a JSON object", path);
    }
    bool matches;
    char tuned[256];
    int rc = tuned_for_matches(path, root, start, &matches, tuned, sizeof tuned);
    if (rc) {
        cJSON_Delete(root);
        return rc;
    }
    if (given || matches) {
        out->space = root;
        snprintf(out->origin, sizeof out->origin, "%s", path);
        if (given)
            snprintf(out->why, sizeof out->why, "named by --hyperspace%s%s%s",
                     matches ? "" : " (it says it was tuned for ", matches ? "" : tuned,
                     matches ? "" : "; a space the user names always wins)");
        else
            snprintf(out->why, sizeof out->why, "found beside the data%s%s%s",
                     tuned[0] ? ", tuned for " : "", tuned, tuned[0] ? " as this run is" : "");
        return 0;
    }
    cJSON_Delete(root);
    choose_builtin(start, out);
    snprintf(out->why, sizeof out->why, "%s is tuned for %s, not for %s: the defaults for %s "
             "replace it (--hyperspace FILE to use it anyway)", path, tuned, run, run);
    return 0;
}

void space_choice_free(space_choice *c) {
    cJSON_Delete(c->space);
    memset(c, 0, sizeof *c);
}
