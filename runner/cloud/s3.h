#pragma once
// S3 operations over the request engine of aws.h: GetObject into a file (atomically),
// HeadObject, PutObject or a multipart upload from a file, ListObjectsV2 with
// continuation. Internal to runner/cloud; the runner calls cloud.h.
#include <cjson/cJSON.h>
#include <stdbool.h>

typedef struct {
    char bucket[256];
    char key[1024]; // "" for the bucket itself; no leading '/'
} s3_location;

// "s3://bucket/key" -> loc. EXIT_USAGE on anything else.
int s3_parse_uri(const char *uri, s3_location *loc);

// The object -> local_path (written to a temporary name beside it, then renamed).
// EXIT_BAD_INPUT when it is missing or forbidden, EXIT_REMOTE_IO after the retries.
int s3_get_object(const s3_location *loc, const char *local_path);

// *exists and *size (bytes) of an object. EXIT_BAD_INPUT on 403.
int s3_head_object(const s3_location *loc, bool *exists, long long *size);

// local_path -> the object, with x-amz-meta-* from `metadata` (flat object, may be
// NULL). Multipart above RUNNER_S3_MULTIPART_THRESHOLD (64 MiB) in parts of
// RUNNER_S3_PART_SIZE (16 MiB); an upload with a failed part is aborted. EXIT_OUTPUT
// when forbidden, EXIT_REMOTE_IO after the retries, EXIT_BAD_INPUT when the local
// file cannot be read.
int s3_put_file(const char *local_path, const s3_location *loc, const cJSON *metadata);

// Every object whose key starts with prefix->key: each(key, size, ud), pages of
// RUNNER_S3_LIST_PAGE (1000) keys joined through continuation tokens. A non-zero
// return from `each` stops the listing and is returned.
int s3_list(const s3_location *prefix, int (*each)(const char *key, long long size, void *ud),
            void *ud);

// Can we write under this key? Starts a multipart upload (needs s3:PutObject) and
// aborts it, leaving nothing. EXIT_OUTPUT when forbidden or the bucket is missing.
int s3_probe_write(const s3_location *loc);

// Delete one object (tests and cleanup of our own temporary objects).
int s3_delete_object(const s3_location *loc);
