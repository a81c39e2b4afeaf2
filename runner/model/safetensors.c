// safetensors reader and writer; see safetensors.h for the format and the checks.
#include "runner/model/safetensors.h"

#include "runner/error.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader copies it as is"
#endif

struct safetensors_file {
    char *path;
    int fd;
    const uint8_t *map; // the whole file
    size_t map_size;
    const uint8_t *data; // first byte after the header
    size_t data_size;
    cJSON *header; // owns the tensor names
    st_tensor_info *tensors; // header order
    int count;
    int *by_name; // indices into tensors, sorted by name (for safetensors_find)
    const cJSON *metadata; // "__metadata__" object inside header, or NULL
};

typedef struct {
    const char *name;
    size_t size;
} dtype_entry;

// Indexed by st_dtype.
static const dtype_entry DTYPES[] = {
    [ST_BOOL] = {"BOOL", 1},    [ST_U8] = {"U8", 1},     [ST_I8] = {"I8", 1},
    [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
    [ST_I16] = {"I16", 2},      [ST_U16] = {"U16", 2},   [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2},    [ST_I32] = {"I32", 4},   [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},      [ST_I64] = {"I64", 8},   [ST_U64] = {"U64", 8},
    [ST_F64] = {"F64", 8},
};
enum { DTYPE_COUNT = sizeof DTYPES / sizeof DTYPES[0] };

const char *safetensors_dtype_name(st_dtype dtype) {
    return (unsigned)dtype < DTYPE_COUNT ? DTYPES[dtype].name : "?";
}

size_t safetensors_dtype_size(st_dtype dtype) {
    return (unsigned)dtype < DTYPE_COUNT ? DTYPES[dtype].size : 0;
}

int safetensors_dtype_parse(const char *name, st_dtype *out) {
    for (int i = 0; i < DTYPE_COUNT; i++) {
        if (strcmp(DTYPES[i].name, name) == 0) {
            *out = (st_dtype)i;
            return 0;
        }
    }
    return -1;
}

// ---------------------------------------------------------------------------- reading

// A JSON number that is a non-negative integer a double represents exactly.
static bool json_to_size(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return false;
    double v = item->valuedouble;
    if (!(v >= 0.0) || v > 9007199254740992.0 || floor(v) != v) return false;
    *out = (uint64_t)v;
    return true;
}

static void file_free(safetensors_file *f) {
    if (!f) return;
    if (f->map) munmap((void *)f->map, f->map_size);
    if (f->fd >= 0) close(f->fd);
    cJSON_Delete(f->header);
    free(f->tensors);
    free(f->by_name);
    free(f->path);
    free(f);
}

void safetensors_close(safetensors_file *f) { file_free(f); }

// Parse one tensor entry of the header into *t; the caller checks placement.
static int parse_entry(const safetensors_file *f, const cJSON *entry, st_tensor_info *t) {
    const char *name = entry->string;
    if (!cJSON_IsObject(entry))
        return error_set(EXIT_BAD_INPUT, "%s: tensor '%s': header entry is not an object",
                         f->path, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsString(dtype) || safetensors_dtype_parse(dtype->valuestring, &t->dtype) != 0)
        return error_set(EXIT_BAD_INPUT, "%s: tensor '%s': missing or unknown dtype%s%s",
                         f->path, name, cJSON_IsString(dtype) ? " " : "",
                         cJSON_IsString(dtype) ? dtype->valuestring : "");
    if (!cJSON_IsArray(shape))
        return error_set(EXIT_BAD_INPUT, "%s: tensor '%s': missing shape", f->path, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > ST_MAX_DIMS)
        return error_set(EXIT_BAD_INPUT, "%s: tensor '%s': %d dimensions (at most %d)",
                         f->path, name, ndim, ST_MAX_DIMS);
    t->name = name;
    t->ndim = ndim;
    uint64_t numel = 1;
    int d = 0;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, shape) {
        uint64_t n;
        if (!json_to_size(dim, &n))
            return error_set(EXIT_BAD_INPUT, "%s: tensor '%s': shape[%d] is not a "
                             "non-negative integer", f->path, name, d);
        if (__builtin_mul_overflow(numel, n, &numel))
            return error_set(EXIT_BAD_INPUT, "%s: tensor '%s': shape overflows", f->path, name);
        t->shape[d++] = (int64_t)n;
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, (uint64_t)safetensors_dtype_size(t->dtype), &nbytes) ||
        nbytes > SIZE_MAX)
        return error_set(EXIT_BAD_INPUT, "%s: tensor '%s': shape overflows", f->path, name);
    uint64_t begin, end;
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        !json_to_size(cJSON_GetArrayItem(offsets, 0), &begin) ||
        !json_to_size(cJSON_GetArrayItem(offsets, 1), &end))
        return error_set(EXIT_BAD_INPUT, "%s: tensor '%s': data_offsets must be two "
                         "non-negative integers", f->path, name);
    if (begin > end)
        return error_set(EXIT_BAD_INPUT, "%s: tensor '%s': data_offsets begin %llu > end %llu",
                         f->path, name, (unsigned long long)begin, (unsigned long long)end);
    if (end > f->data_size)
        return error_set(EXIT_BAD_INPUT, "%s: tensor '%s': data_offsets end %llu is past the "
                         "data region (%zu bytes)", f->path, name, (unsigned long long)end,
                         f->data_size);
    if (end - begin != nbytes)
        return error_set(EXIT_BAD_INPUT, "%s: tensor '%s': %llu bytes for %s shape of %llu "
                         "elements (expected %llu)", f->path, name,
                         (unsigned long long)(end - begin), DTYPES[t->dtype].name,
                         (unsigned long long)numel, (unsigned long long)nbytes);
    t->numel = (size_t)numel;
    t->offset = (size_t)begin;
    t->nbytes = (size_t)nbytes;
    return 0;
}

// qsort comparators over indices; qsort has no context argument, so the array they
// index is passed through a file-scope pointer set just before each call (the calls
// happen with f private to one thread, but two threads may open files at once).
static _Thread_local const st_tensor_info *sort_tensors;

static int by_offset(const void *a, const void *b) {
    const st_tensor_info *x = &sort_tensors[*(const int *)a], *y = &sort_tensors[*(const int *)b];
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp(sort_tensors[*(const int *)a].name, sort_tensors[*(const int *)b].name);
}

static int parse_header(safetensors_file *f, const char *json, size_t len) {
    const char *end = NULL;
    f->header = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (!f->header)
        return error_set(EXIT_BAD_INPUT, "%s: header is not valid JSON (near byte %zu)",
                         f->path, (size_t)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - json : 0));
    // The writer pads the header with spaces to an 8-byte boundary; nothing else may follow.
    for (const char *p = end; p < json + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return error_set(EXIT_BAD_INPUT, "%s: trailing bytes after the header JSON", f->path);
    if (!cJSON_IsObject(f->header))
        return error_set(EXIT_BAD_INPUT, "%s: header is not a JSON object", f->path);

    int entries = cJSON_GetArraySize(f->header);
    f->tensors = calloc(entries ? (size_t)entries : 1, sizeof *f->tensors);
    f->by_name = calloc(entries ? (size_t)entries : 1, sizeof *f->by_name);
    if (!f->tensors || !f->by_name)
        return error_set(EXIT_RESOURCES, "%s: out of memory for %d tensors", f->path, entries);

    const cJSON *entry;
    cJSON_ArrayForEach(entry, f->header) {
        if (!entry->string)
            return error_set(EXIT_BAD_INPUT, "%s: header entry without a name", f->path);
        if (strcmp(entry->string, "__metadata__") == 0) {
            if (f->metadata)
                return error_set(EXIT_BAD_INPUT, "%s: __metadata__ appears twice", f->path);
            if (!cJSON_IsObject(entry))
                return error_set(EXIT_BAD_INPUT, "%s: __metadata__ is not an object", f->path);
            const cJSON *kv;
            cJSON_ArrayForEach(kv, entry) {
                if (!cJSON_IsString(kv))
                    return error_set(EXIT_BAD_INPUT, "%s: __metadata__ value '%s' is not a "
                                     "string", f->path, kv->string ? kv->string : "");
            }
            f->metadata = entry;
            continue;
        }
        int rc = parse_entry(f, entry, &f->tensors[f->count]);
        if (rc) return rc;
        f->count++;
    }

    int *order = malloc((f->count ? (size_t)f->count : 1) * sizeof *order);
    if (!order) return error_set(EXIT_RESOURCES, "%s: out of memory", f->path);
    for (int i = 0; i < f->count; i++) order[i] = f->by_name[i] = i;
    sort_tensors = f->tensors;
    qsort(order, (size_t)f->count, sizeof *order, by_offset);
    qsort(f->by_name, (size_t)f->count, sizeof *f->by_name, by_name);

    int rc = 0;
    for (int i = 1; i < f->count && !rc; i++) {
        const char *a = f->tensors[f->by_name[i - 1]].name, *b = f->tensors[f->by_name[i]].name;
        if (strcmp(a, b) == 0)
            rc = error_set(EXIT_BAD_INPUT, "%s: tensor '%s' appears twice", f->path, b);
    }
    // Sorted by offset, each tensor must start where the previous one ended: no overlap,
    // no gap, and the last one ends exactly at the end of the file.
    size_t expected = 0;
    const char *previous = NULL;
    for (int i = 0; i < f->count && !rc; i++) {
        const st_tensor_info *t = &f->tensors[order[i]];
        if (t->offset < expected)
            rc = error_set(EXIT_BAD_INPUT, "%s: tensor '%s' overlaps tensor '%s'", f->path,
                           t->name, previous);
        else if (t->offset > expected)
            rc = error_set(EXIT_BAD_INPUT, "%s: tensor '%s': gap of %zu bytes before its data",
                           f->path, t->name, t->offset - expected);
        expected = t->offset + t->nbytes;
        previous = t->name;
    }
    if (!rc && expected != f->data_size)
        rc = error_set(EXIT_BAD_INPUT, "%s: %zu bytes of data after the last tensor "
                       "(data region %zu bytes, tensors cover %zu)", f->path,
                       f->data_size - expected, f->data_size, expected);
    free(order);
    return rc;
}

int safetensors_open(const char *path, safetensors_file **out) {
    *out = NULL;
    safetensors_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return error_set(EXIT_RESOURCES, "%s: out of memory", path);
    }
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = 0;
    struct stat st;
    if (f->fd < 0) {
        rc = error_set(EXIT_BAD_INPUT, "%s: cannot open: %s", path, strerror(errno));
    } else if (fstat(f->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = error_set(EXIT_BAD_INPUT, "%s: not a regular file", path);
    } else if (st.st_size < 8) {
        rc = error_set(EXIT_BAD_INPUT, "%s: %lld bytes, too short for a safetensors header",
                       path, (long long)st.st_size);
    }
    if (!rc) {
        f->map_size = (size_t)st.st_size;
        void *map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, f->fd, 0);
        if (map == MAP_FAILED)
            rc = error_set(EXIT_BAD_INPUT, "%s: cannot map: %s", path, strerror(errno));
        else
            f->map = map;
    }
    if (!rc) {
        uint64_t header_len = 0;
        for (int i = 7; i >= 0; i--) header_len = header_len << 8 | f->map[i];
        if (header_len > ST_MAX_HEADER_BYTES)
            rc = error_set(EXIT_BAD_INPUT, "%s: header length %llu exceeds the %d-byte limit",
                           path, (unsigned long long)header_len, ST_MAX_HEADER_BYTES);
        else if (header_len > f->map_size - 8)
            rc = error_set(EXIT_BAD_INPUT, "%s: header length %llu runs past the end of the "
                           "file (%zu bytes): truncated?", path, (unsigned long long)header_len,
                           f->map_size);
        else if (header_len < 2)
            rc = error_set(EXIT_BAD_INPUT, "%s: header length %llu is too short", path,
                           (unsigned long long)header_len);
        if (!rc) {
            f->data = f->map + 8 + header_len;
            f->data_size = f->map_size - 8 - (size_t)header_len;
            rc = parse_header(f, (const char *)f->map + 8, (size_t)header_len);
        }
    }
    if (rc) {
        file_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

const char *safetensors_path(const safetensors_file *f) { return f->path; }

int safetensors_count(const safetensors_file *f) { return f->count; }

const st_tensor_info *safetensors_tensor(const safetensors_file *f, int i) {
    return i >= 0 && i < f->count ? &f->tensors[i] : NULL;
}

const st_tensor_info *safetensors_find(const safetensors_file *f, const char *name) {
    int lo = 0, hi = f->count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const st_tensor_info *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

const char *safetensors_metadata(const safetensors_file *f, const char *key) {
    if (!f->metadata) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(f->metadata, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

const void *safetensors_data(const safetensors_file *f, const st_tensor_info *t) {
    return f->data + t->offset;
}

// IEEE half to single, subnormals and NaN payloads included.
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else { // subnormal: normalise the mantissa
        int e = -1;
        do {
            e++;
            mant <<= 1;
        } while (!(mant & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ff) << 13);
    }
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

int safetensors_read_f32(const safetensors_file *f, const st_tensor_info *t, float *dst) {
    const uint8_t *src = f->data + t->offset;
    switch (t->dtype) {
    case ST_F32:
        memcpy(dst, src, t->nbytes);
        return 0;
    case ST_F16:
        for (size_t i = 0; i < t->numel; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = half_to_float(h);
        }
        return 0;
    case ST_BF16:
        for (size_t i = 0; i < t->numel; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&dst[i], &bits, 4);
        }
        return 0;
    case ST_F64:
        for (size_t i = 0; i < t->numel; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    default:
        return error_set(EXIT_BAD_INPUT, "%s: tensor '%s': dtype %s cannot be read as floats",
                         f->path, t->name, safetensors_dtype_name(t->dtype));
    }
}

static void format_shape(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? ", " : "",
                                 (long long)shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
}

int safetensors_read_f32_shape(const safetensors_file *f, const st_tensor_info *t, int ndim,
                               const int64_t *shape, float *dst) {
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char got[160], want[160];
        format_shape(got, sizeof got, t->ndim, t->shape);
        format_shape(want, sizeof want, ndim, shape);
        return error_set(EXIT_BAD_INPUT, "%s: tensor '%s' has shape %s, the model expects %s",
                         f->path, t->name, got, want);
    }
    return safetensors_read_f32(f, t, dst);
}

// ---------------------------------------------------------------------------- writing

static int write_all(int fd, const void *buf, size_t len) {
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len > (1u << 30) ? (1u << 30) : len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

// The header JSON, padded with spaces to a multiple of 8 bytes so the data is aligned.
static char *build_header(const char *path, const st_write_tensor *tensors, int n,
                          const cJSON *metadata, size_t *header_len, size_t *data_len,
                          int *rc) {
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = metadata ? cJSON_Duplicate(metadata, true) : cJSON_CreateObject();
    char *text = NULL;
    *rc = 0;
    if (!root || !meta) {
        *rc = error_set(EXIT_RESOURCES, "%s: out of memory", path);
        goto done;
    }
    if (!cJSON_IsObject(meta)) {
        *rc = error_set(EXIT_INTERNAL, "%s: metadata must be a JSON object", path);
        goto done;
    }
    const cJSON *kv;
    cJSON_ArrayForEach(kv, meta) {
        if (!cJSON_IsString(kv)) {
            *rc = error_set(EXIT_INTERNAL, "%s: metadata value '%s' is not a string", path,
                            kv->string);
            goto done;
        }
    }
    if (!cJSON_GetObjectItemCaseSensitive(meta, "format"))
        cJSON_AddStringToObject(meta, "format", "pt");
    cJSON_AddItemToObject(root, "__metadata__", meta);
    meta = NULL;

    size_t offset = 0;
    for (int i = 0; i < n; i++) {
        const st_write_tensor *t = &tensors[i];
        if (!t->name || !*t->name || strcmp(t->name, "__metadata__") == 0 || t->ndim < 0 ||
            t->ndim > ST_MAX_DIMS) {
            *rc = error_set(EXIT_INTERNAL, "%s: tensor %d has a bad name or rank", path, i);
            goto done;
        }
        if (cJSON_GetObjectItemCaseSensitive(root, t->name)) {
            *rc = error_set(EXIT_INTERNAL, "%s: tensor '%s' given twice", path, t->name);
            goto done;
        }
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0 || __builtin_mul_overflow(numel, (size_t)t->shape[d], &numel)) {
                *rc = error_set(EXIT_INTERNAL, "%s: tensor '%s' has a bad shape", path, t->name);
                goto done;
            }
        }
        if (numel > 0 && !t->data) {
            *rc = error_set(EXIT_INTERNAL, "%s: tensor '%s' has no data", path, t->name);
            goto done;
        }
        cJSON *entry = cJSON_AddObjectToObject(root, t->name);
        cJSON_AddStringToObject(entry, "dtype", "F32");
        cJSON *shape = cJSON_AddArrayToObject(entry, "shape");
        for (int d = 0; d < t->ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *offsets = cJSON_AddArrayToObject(entry, "data_offsets");
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)offset));
        offset += numel * sizeof(float);
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)offset));
    }
    char *json = cJSON_PrintUnformatted(root);
    if (!json) {
        *rc = error_set(EXIT_RESOURCES, "%s: out of memory for the header", path);
        goto done;
    }
    size_t len = strlen(json), padded = (len + 7) / 8 * 8;
    text = malloc(padded + 1);
    if (!text) {
        free(json);
        *rc = error_set(EXIT_RESOURCES, "%s: out of memory for the header", path);
        goto done;
    }
    memcpy(text, json, len);
    memset(text + len, ' ', padded - len);
    text[padded] = '\0';
    free(json);
    *header_len = padded;
    *data_len = offset;
done:
    cJSON_Delete(meta);
    cJSON_Delete(root);
    return text;
}

static void (*write_hook)(const char *path);

void safetensors_set_write_hook(void (*hook)(const char *path)) {
    write_hook = hook;
}

int safetensors_write_f32(const char *path, const st_write_tensor *tensors, int n,
                          const cJSON *metadata) {
    size_t header_len = 0, data_len = 0;
    int rc;
    char *header = build_header(path, tensors, n, metadata, &header_len, &data_len, &rc);
    if (!header) return rc;

    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof ".tmp.XXXXXX");
    char *dir_copy = strdup(path);
    if (!tmp || !dir_copy) {
        free(tmp);
        free(dir_copy);
        free(header);
        return error_set(EXIT_RESOURCES, "%s: out of memory", path);
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = error_set(EXIT_OUTPUT, "%s: cannot create a temporary file: %s", path,
                       strerror(errno));
        goto done;
    }
    uint8_t len_bytes[8];
    for (int i = 0; i < 8; i++) len_bytes[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
    bool ok = fchmod(fd, 0644) == 0 && write_all(fd, len_bytes, 8) == 0 &&
              write_all(fd, header, header_len) == 0;
    for (int i = 0; ok && i < n; i++) {
        if (i == n / 2 && write_hook) write_hook(path);
        size_t numel = 1;
        for (int d = 0; d < tensors[i].ndim; d++) numel *= (size_t)tensors[i].shape[d];
        if (numel) ok = write_all(fd, tensors[i].data, numel * sizeof(float)) == 0;
    }
    ok = ok && fsync(fd) == 0;
    int saved = errno;
    if (close(fd) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        saved = errno;
    }
    if (!ok) {
        unlink(tmp);
        rc = error_set(EXIT_OUTPUT, "%s: cannot write: %s", path, strerror(saved));
        goto done;
    }
    // The rename is durable only once the directory itself is on disk.
    int dfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    rc = 0;
done:
    free(tmp);
    free(dir_copy);
    free(header);
    return rc;
}
