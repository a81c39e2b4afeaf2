#pragma once
// Files of the job's output: directories made as needed, whole files written
// atomically (temporary name, fsync, rename, fsync of the directory) so a crash never
// leaves half a file under a final name, and CRC-32 checksums for checkpoint manifests.
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// mkdir -p; 0 or EXIT_OUTPUT.
int files_mkdirs(const char *path);
// Write `len` bytes to `path` atomically. 0 or EXIT_OUTPUT.
int files_write_atomic(const char *path, const void *data, size_t len);
// The same, readable by its owner only (mode 0600): a file that holds a secret.
int files_write_private(const char *path, const void *data, size_t len);
// The same as files_write_atomic for the concatenation of n buffers (no copy into one).
int files_write_atomic_parts(const char *path, const void *const *parts, const size_t *lens, int n);
// fsync the directory that holds `path` (best effort: some file systems refuse it), so
// that a rename or a new entry in it survives a crash. 0 or EXIT_OUTPUT (cannot open it).
int files_sync_parent(const char *path);
// Write a NUL-terminated string atomically.
int files_write_text(const char *path, const char *text);
// Write `json` (pretty-printed) atomically; takes ownership of it. 0, EXIT_OUTPUT or
// EXIT_RESOURCES.
int files_write_json(const char *path, cJSON *json);
// Read a whole file into a malloc'd buffer (NUL-terminated); *len may be NULL.
// 0 or EXIT_BAD_INPUT (naming the file).
int files_read_all(const char *path, char **out, size_t *len);
bool files_exists(const char *path);
bool files_is_dir(const char *path);
// CRC-32 (zlib's) of a whole file into *crc and its size into *size; 0 or EXIT_BAD_INPUT.
int files_crc32(const char *path, uint32_t *crc, uint64_t *size);
// Remove a directory tree that lies under `prefix` (refused otherwise: the job never
// deletes outside its own output). 0 or EXIT_OUTPUT / EXIT_INTERNAL.
int files_remove_tree(const char *path, const char *prefix);
// Remove, below `root`, the temporaries of atomic writes that a killed process left
// (NAME.tmp.PID of files_write_atomic, NAME.tmp.XXXXXX of the safetensors and tokenizer
// writers), each logged as "temporary_removed". Only for a tree no other process is
// writing. The count removed, or -1 (EXIT_OUTPUT set) when one cannot be removed.
int files_remove_temporaries(const char *root);
// snprintf into a fixed buffer; EXIT_USAGE when the path would not fit.
int files_join(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
