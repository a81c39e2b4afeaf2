#pragma once
// Hugging Face safetensors files: read (memory-mapped, header validated) and write
// (fp32, atomic). Format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"key": "string", ...}}, then the data; offsets are relative to the
// first byte after the header. Tensors are stored C-contiguous, little-endian.
//
// Every error goes through error_set() with a one-line reason naming the file and,
// where there is one, the tensor: reading fails with EXIT_BAD_INPUT, writing with
// EXIT_OUTPUT. A safetensors_file is read-only once open: several threads may read
// from it at the same time.
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    ST_MAX_DIMS = 8,
    ST_MAX_HEADER_BYTES = 100 * 1000 * 1000, // the reference implementation's limit
};

typedef enum {
    ST_BOOL,
    ST_U8,
    ST_I8,
    ST_F8_E4M3,
    ST_F8_E5M2,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_I64,
    ST_U64,
    ST_F64,
} st_dtype;

typedef struct {
    const char *name; // owned by the file
    st_dtype dtype;
    int ndim;                    // 0 for a scalar
    int64_t shape[ST_MAX_DIMS];  // shape[0..ndim)
    size_t numel;                // product of shape (1 for a scalar)
    size_t offset;               // byte offset of the data, relative to the data region
    size_t nbytes;               // numel * safetensors_dtype_size(dtype)
} st_tensor_info;

typedef struct safetensors_file safetensors_file;

// Open, map and validate a file: header size <= ST_MAX_HEADER_BYTES, valid JSON, known
// dtypes, shapes of at most ST_MAX_DIMS non-negative dimensions, offsets with
// begin <= end inside the data region, size == numel x dtype size, no overlaps, no
// gaps, and the data region exactly covered. 0 or EXIT_BAD_INPUT.
int safetensors_open(const char *path, safetensors_file **out);
void safetensors_close(safetensors_file *f);

const char *safetensors_path(const safetensors_file *f);
// Tensors in header order.
int safetensors_count(const safetensors_file *f);
const st_tensor_info *safetensors_tensor(const safetensors_file *f, int i);
// The tensor called `name`, or NULL (no error recorded).
const st_tensor_info *safetensors_find(const safetensors_file *f, const char *name);
// A "__metadata__" value, or NULL when absent.
const char *safetensors_metadata(const safetensors_file *f, const char *key);
// The tensor's raw bytes inside the mapping (valid until close).
const void *safetensors_data(const safetensors_file *f, const st_tensor_info *t);

// Convert an F32, F16, BF16 or F64 tensor to fp32 into dst (t->numel floats).
// 0, or EXIT_BAD_INPUT naming file and tensor for any other dtype.
int safetensors_read_f32(const safetensors_file *f, const st_tensor_info *t, float *dst);
// Like safetensors_read_f32, after checking that the tensor has exactly the expected
// shape (a mismatch is EXIT_BAD_INPUT naming the tensor and both shapes).
int safetensors_read_f32_shape(const safetensors_file *f, const st_tensor_info *t,
                               int ndim, const int64_t *shape, float *dst);

// Names and sizes: "F32" <-> ST_F32; size in bytes (F8 types: 1).
const char *safetensors_dtype_name(st_dtype dtype);
size_t safetensors_dtype_size(st_dtype dtype);
// 0 and *out, or -1 when `name` is not a safetensors dtype.
int safetensors_dtype_parse(const char *name, st_dtype *out);

// ---- checkpoints of one or several files --------------------------------------------
// transformers' save_pretrained(max_shard_size=...) splits a checkpoint into shards
// (model-00001-of-00005.safetensors, ...) and writes model.safetensors.index.json:
// {"metadata": {"total_size": N}, "weight_map": {"tensor name": "shard file", ...}}.
// A set reads either kind as one list of tensors, as from_pretrained does: for an index,
// the tensors of its weight_map (a shard's tensors the map does not name are not read).
typedef struct safetensors_set safetensors_set;

// True when `path` names an index (ends in ".index.json").
bool safetensors_is_index(const char *path);
// The weights of a model folder: dir/model.safetensors, else
// dir/model.safetensors.index.json when only that exists (the single file's name when
// neither does: opening it then reports it missing). 0 or EXIT_BAD_INPUT (too long).
int safetensors_checkpoint_path(const char *dir, char *out, size_t n);
// The shard files an index names (its weight_map's values, each once, in first-seen
// order), each checked to be a relative path inside the index's folder, as a cJSON
// array of strings (*shards, the caller frees). 0 or EXIT_BAD_INPUT naming the index
// and the entry.
int safetensors_index_shards(const char *index_path, cJSON **shards);
// Open a single .safetensors file, or an index and every shard it names (each validated
// as safetensors_open does). A shard that is missing or bad, or lacks a tensor the map
// puts there, is EXIT_BAD_INPUT naming the index, the shard and a tensor.
int safetensors_set_open(const char *path, safetensors_set **out);
void safetensors_set_close(safetensors_set *s);
const char *safetensors_set_path(const safetensors_set *s);
int safetensors_set_count(const safetensors_set *s);
// Tensor i (weight_map order; header order for a single file), and the file holding it
// into *file (may be NULL); NULL past the end.
const st_tensor_info *safetensors_set_tensor(const safetensors_set *s, int i,
                                             const safetensors_file **file);
// The tensor called `name` and its file, or NULL (no error recorded).
const st_tensor_info *safetensors_set_find(const safetensors_set *s, const char *name,
                                           const safetensors_file **file);

// ---- writing -------------------------------------------------------------------------
typedef struct {
    const char *name;
    const float *data; // C-contiguous, numel floats
    int ndim;
    int64_t shape[ST_MAX_DIMS];
} st_write_tensor;

// Called half way through each safetensors_write_f32 (after half of the tensors, before
// the fsync and rename) with the file's final path; none by default. The runner's
// workers point it at their test-only fault injection (runner/fault.h, "file_write").
void safetensors_set_write_hook(void (*hook)(const char *path));

// Write fp32 tensors (in the given order) to `path` atomically: a temporary file in the
// same directory, fsync, rename, fsync of the directory. `metadata` is NULL or a cJSON
// object of string values; "format": "pt" is added when absent (transformers requires
// it). Duplicate names are refused. 0 or EXIT_OUTPUT (EXIT_INTERNAL for bad arguments).
int safetensors_write_f32(const char *path, const st_write_tensor *tensors, int n,
                          const cJSON *metadata);
