// Checkpoints of several safetensors files: model.safetensors.index.json, as
// transformers' save_pretrained(max_shard_size=...) writes it, names the shard of every
// tensor in its "weight_map". See safetensors.h.
#include "runner/model/safetensors.h"

#include "runner/error.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { INDEX_MAX_BYTES = 64 << 20 }; // an index is tens of KiB: anything larger is not one

typedef struct {
    const char *name;            // owned by the index JSON, or by the single file
    const safetensors_file *file;
    const st_tensor_info *info;
} set_entry;

struct safetensors_set {
    char *path;                 // the index, or the single file
    cJSON *index;               // NULL for a single file
    safetensors_file **files;   // nfiles, in the order the index first names them
    int nfiles;
    set_entry *entries;         // count, in weight_map order (header order for one file)
    int *by_name;               // indices into entries, sorted by name
    int count;
};

bool safetensors_is_index(const char *path) {
    size_t n = strlen(path), m = strlen(".index.json");
    return n >= m && strcmp(path + n - m, ".index.json") == 0;
}

// A shard name stays inside the checkpoint's folder: relative, no empty, "." or ".."
// component, no backslash or control character (a Hub file name, nothing else).
static bool shard_name_valid(const char *name) {
    size_t len = strlen(name);
    if (len == 0 || len > 255 || name[0] == '/' || name[len - 1] == '/') return false;
    for (const char *c = name; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == '\\' || *c == 0x7f) return false;
    for (const char *part = name; part; part = strchr(part, '/') ? strchr(part, '/') + 1 : NULL) {
        size_t n = strchr(part, '/') ? (size_t)(strchr(part, '/') - part) : strlen(part);
        if (n == 0 || (n == 1 && part[0] == '.') || (n == 2 && part[0] == '.' && part[1] == '.'))
            return false;
    }
    return true;
}

static char *read_index(const char *path, int *rc) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        *rc = error_set(EXIT_BAD_INPUT, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || size > INDEX_MAX_BYTES || fseek(f, 0, SEEK_SET) != 0) {
        *rc = error_set(EXIT_BAD_INPUT, "%s: %s", path,
                        size > INDEX_MAX_BYTES ? "larger than 64 MiB, not an index"
                                               : "cannot read its size");
    } else if (!(buf = malloc((size_t)size + 1))) {
        *rc = error_set(EXIT_RESOURCES, "%s: out of memory", path);
    } else if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        *rc = error_set(EXIT_BAD_INPUT, "%s: read error", path);
        free(buf);
        buf = NULL;
    } else {
        buf[size] = '\0';
    }
    fclose(f);
    return buf;
}

// Parse and check the index: {"metadata": {...}, "weight_map": {"tensor": "shard", ...}},
// every value a valid shard name. *root owns it; *map points inside.
static int index_parse(const char *path, cJSON **root, const cJSON **map) {
    int rc = 0;
    char *text = read_index(path, &rc);
    if (!text) return rc;
    *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(*root))
        return error_set(EXIT_BAD_INPUT, "%s: not a JSON object (a sharded checkpoint's index)",
                         path);
    *map = cJSON_GetObjectItemCaseSensitive(*root, "weight_map");
    if (!cJSON_IsObject(*map))
        return error_set(EXIT_BAD_INPUT, "%s: no \"weight_map\" object", path);
    if (!(*map)->child) return error_set(EXIT_BAD_INPUT, "%s: \"weight_map\" is empty", path);
    const cJSON *e;
    cJSON_ArrayForEach(e, *map) {
        if (!e->string || !e->string[0])
            return error_set(EXIT_BAD_INPUT, "%s: weight_map: a tensor without a name", path);
        if (!cJSON_IsString(e))
            return error_set(EXIT_BAD_INPUT, "%s: weight_map[\"%s\"] is not a file name", path,
                             e->string);
        if (!shard_name_valid(e->valuestring))
            return error_set(EXIT_BAD_INPUT, "%s: weight_map[\"%s\"] = \"%s\" is not a file in "
                             "the checkpoint's folder", path, e->string, e->valuestring);
    }
    return 0;
}

// The distinct values of the weight map, in first-seen order.
static cJSON *shard_list(const cJSON *map) {
    cJSON *list = cJSON_CreateArray();
    const cJSON *e, *seen;
    cJSON_ArrayForEach(e, map) {
        bool dup = false;
        cJSON_ArrayForEach(seen, list) dup = dup || strcmp(seen->valuestring, e->valuestring) == 0;
        if (!dup) cJSON_AddItemToArray(list, cJSON_CreateString(e->valuestring));
    }
    return list;
}

int safetensors_index_shards(const char *index_path, cJSON **shards) {
    *shards = NULL;
    cJSON *root = NULL;
    const cJSON *map = NULL;
    int rc = index_parse(index_path, &root, &map);
    if (rc == 0 && !(*shards = shard_list(map)))
        rc = error_set(EXIT_RESOURCES, "%s: out of memory", index_path);
    cJSON_Delete(root);
    return rc;
}

void safetensors_set_close(safetensors_set *s) {
    if (!s) return;
    for (int i = 0; i < s->nfiles; i++) safetensors_close(s->files[i]);
    free(s->files);
    free(s->entries);
    free(s->by_name);
    cJSON_Delete(s->index);
    free(s->path);
    free(s);
}

static _Thread_local const set_entry *sort_entries; // qsort has no context argument

static int by_entry_name(const void *a, const void *b) {
    return strcmp(sort_entries[*(const int *)a].name, sort_entries[*(const int *)b].name);
}

// Open every shard the index names (once each) and resolve each tensor of the map.
static int set_load_index(safetensors_set *s) {
    const cJSON *map = NULL;
    int rc = index_parse(s->path, &s->index, &map);
    if (rc) return rc;
    cJSON *shards = shard_list(map);
    int n = cJSON_GetArraySize(shards), count = cJSON_GetArraySize(map);
    s->files = calloc((size_t)n, sizeof *s->files);
    s->entries = calloc((size_t)count, sizeof *s->entries);
    char *dir = strdup(s->path), *slash = dir ? strrchr(dir, '/') : NULL;
    if (!shards || !s->files || !s->entries || !dir) rc = error_set(EXIT_RESOURCES, "out of memory");
    if (slash) *slash = '\0';
    const cJSON *shard;
    cJSON_ArrayForEach(shard, shards) {
        if (rc) break;
        // The first tensor the map puts there: a missing shard is named with what it holds.
        const char *first = "";
        const cJSON *e;
        cJSON_ArrayForEach(e, map) if (strcmp(e->valuestring, shard->valuestring) == 0) {
            first = e->string;
            break;
        }
        size_t len = (slash ? strlen(dir) + 1 : 0) + strlen(shard->valuestring) + 1;
        char *file = malloc(len);
        if (!file) {
            rc = error_set(EXIT_RESOURCES, "out of memory");
            break;
        }
        snprintf(file, len, "%s%s%s", slash ? dir : "", slash ? "/" : "", shard->valuestring);
        if ((rc = safetensors_open(file, &s->files[s->nfiles]))) {
            char why[1024];
            snprintf(why, sizeof why, "%s", error_message());
            rc = error_set(rc, "%s: shard %s, which holds tensor '%s': %s", s->path,
                           shard->valuestring, first, why);
        } else {
            s->nfiles++;
        }
        free(file);
    }
    cJSON_ArrayForEach(shard, map) {
        if (rc) break;
        const safetensors_file *f = NULL;
        const cJSON *name;
        int i = 0;
        cJSON_ArrayForEach(name, shards) {
            if (strcmp(name->valuestring, shard->valuestring) == 0) f = s->files[i];
            i++;
        }
        const st_tensor_info *t = safetensors_find(f, shard->string);
        if (!t) {
            rc = error_set(EXIT_BAD_INPUT, "%s: tensor '%s' is not in its shard %s", s->path,
                           shard->string, safetensors_path(f));
            break;
        }
        s->entries[s->count++] = (set_entry){shard->string, f, t};
    }
    cJSON_Delete(shards);
    free(dir);
    return rc;
}

int safetensors_set_open(const char *path, safetensors_set **out) {
    *out = NULL;
    safetensors_set *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return error_set(EXIT_RESOURCES, "%s: out of memory", path);
    }
    int rc = 0;
    if (safetensors_is_index(path)) {
        rc = set_load_index(s);
    } else {
        s->files = calloc(1, sizeof *s->files);
        rc = s->files ? safetensors_open(path, &s->files[0])
                      : error_set(EXIT_RESOURCES, "%s: out of memory", path);
        if (rc == 0) {
            s->nfiles = 1;
            int n = safetensors_count(s->files[0]);
            s->entries = calloc(n ? (size_t)n : 1, sizeof *s->entries);
            if (!s->entries) rc = error_set(EXIT_RESOURCES, "%s: out of memory", path);
            for (int i = 0; i < n && rc == 0; i++) {
                const st_tensor_info *t = safetensors_tensor(s->files[0], i);
                s->entries[s->count++] = (set_entry){t->name, s->files[0], t};
            }
        }
    }
    if (rc == 0 && !(s->by_name = malloc((s->count ? (size_t)s->count : 1) * sizeof *s->by_name)))
        rc = error_set(EXIT_RESOURCES, "%s: out of memory", path);
    if (rc) {
        safetensors_set_close(s);
        return rc;
    }
    for (int i = 0; i < s->count; i++) s->by_name[i] = i;
    sort_entries = s->entries;
    qsort(s->by_name, (size_t)s->count, sizeof *s->by_name, by_entry_name);
    for (int i = 1; i < s->count && rc == 0; i++) // a JSON object may repeat a key
        if (strcmp(s->entries[s->by_name[i - 1]].name, s->entries[s->by_name[i]].name) == 0)
            rc = error_set(EXIT_BAD_INPUT, "%s: tensor '%s' appears twice", path,
                           s->entries[s->by_name[i]].name);
    if (rc) {
        safetensors_set_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

const char *safetensors_set_path(const safetensors_set *s) { return s->path; }

int safetensors_checkpoint_path(const char *dir, char *out, size_t n) {
    int len = snprintf(out, n, "%s/model.safetensors", dir);
    if (len < 0 || (size_t)len >= n) return error_set(EXIT_BAD_INPUT, "%s: path too long", dir);
    if (access(out, F_OK) == 0) return 0;
    char index[4096];
    len = snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    if (len > 0 && (size_t)len < n && (size_t)len < sizeof index && access(index, F_OK) == 0)
        snprintf(out, n, "%s", index);
    return 0; // neither: the single file's name, which the open then reports missing
}

int safetensors_set_count(const safetensors_set *s) { return s->count; }

const st_tensor_info *safetensors_set_tensor(const safetensors_set *s, int i,
                                             const safetensors_file **file) {
    if (i < 0 || i >= s->count) return NULL;
    if (file) *file = s->entries[i].file;
    return s->entries[i].info;
}

const st_tensor_info *safetensors_set_find(const safetensors_set *s, const char *name,
                                           const safetensors_file **file) {
    int lo = 0, hi = s->count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const set_entry *e = &s->entries[s->by_name[mid]];
        int c = strcmp(name, e->name);
        if (c == 0) {
            if (file) *file = e->file;
            return e->info;
        }
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}
