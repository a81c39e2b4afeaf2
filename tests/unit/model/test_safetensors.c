// safetensors: round trip through the writer, dtype conversion, and every class of bad
// file the reader must refuse with EXIT_BAD_INPUT and a reason naming file and tensor.
#include "check.h"

#include "runner/error.h"
#include "runner/model/safetensors.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static const char *path_of(const char *name) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

// A raw file: 8-byte length, the header text as given, then `data_len` bytes of data.
static const char *write_raw(const char *name, uint64_t declared_len, const char *header,
                             size_t data_len) {
    const char *path = path_of(name);
    FILE *f = fopen(path, "wb");
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(declared_len >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < data_len; i++) fputc((int)(i & 0xff), f);
    fclose(f);
    return path;
}

static const char *write_header(const char *name, const char *header, size_t data_len) {
    return write_raw(name, strlen(header), header, data_len);
}

// Opening must fail with EXIT_BAD_INPUT, and the reason must mention `needle` and the path.
static void expect_bad(const char *path, const char *needle) {
    safetensors_file *f = (safetensors_file *)1;
    error_clear();
    int rc = safetensors_open(path, &f);
    CHECK_INT(rc, EXIT_BAD_INPUT);
    CHECK(f == NULL);
    CHECK_INT(error_code(), EXIT_BAD_INPUT);
    CHECK(strstr(error_message(), path) != NULL);
    if (!strstr(error_message(), needle))
        fprintf(stderr, "  reason \"%s\" lacks \"%s\"\n", error_message(), needle);
    CHECK(strstr(error_message(), needle) != NULL);
    CHECK(strchr(error_message(), '\n') == NULL);
    if (rc == 0) safetensors_close(f);
}

static void test_round_trip(void) {
    float a[6] = {1, -2, 3.5f, 0, 1e-30f, -1e30f}, b[4] = {0.25f, 0.5f, 0.75f, 1};
    float scalar = 42;
    st_write_tensor tensors[] = {
        {"encoder.layer.0.attention.self.query.weight", a, 2, {2, 3}},
        {"embeddings.LayerNorm.bias", b, 1, {4}},
        {"scalar", &scalar, 0, {0}},
        {"empty", NULL, 2, {0, 5}},
    };
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "producer", "runner");
    const char *path = path_of("round.safetensors");
    CHECK_INT(safetensors_write_f32(path, tensors, 4, meta), 0);
    cJSON_Delete(meta);

    safetensors_file *f = NULL;
    CHECK_INT(safetensors_open(path, &f), 0);
    if (!f) return;
    CHECK_INT(safetensors_count(f), 4);
    CHECK_STR(safetensors_metadata(f, "producer"), "runner");
    CHECK_STR(safetensors_metadata(f, "format"), "pt");
    CHECK(safetensors_metadata(f, "absent") == NULL);
    CHECK_STR(safetensors_tensor(f, 0)->name, "encoder.layer.0.attention.self.query.weight");
    CHECK(safetensors_tensor(f, 4) == NULL);
    CHECK(safetensors_find(f, "nope") == NULL);

    const st_tensor_info *t = safetensors_find(f, "encoder.layer.0.attention.self.query.weight");
    CHECK(t != NULL);
    if (t) {
        CHECK_INT(t->dtype, ST_F32);
        CHECK_INT(t->ndim, 2);
        CHECK_INT(t->shape[0], 2);
        CHECK_INT(t->shape[1], 3);
        CHECK_INT(t->numel, 6);
        CHECK_INT(t->nbytes, 24);
        float got[6];
        CHECK_INT(safetensors_read_f32(f, t, got), 0);
        CHECK(memcmp(got, a, sizeof a) == 0);
        int64_t right[2] = {2, 3}, wrong[2] = {3, 2};
        CHECK_INT(safetensors_read_f32_shape(f, t, 2, right, got), 0);
        CHECK_INT(safetensors_read_f32_shape(f, t, 2, wrong, got), EXIT_BAD_INPUT);
        CHECK(strstr(error_message(), "[2, 3]") && strstr(error_message(), "[3, 2]"));
        CHECK(strstr(error_message(), "query.weight") != NULL);
    }
    t = safetensors_find(f, "scalar");
    CHECK(t && t->ndim == 0 && t->numel == 1);
    float s = 0;
    if (t) CHECK_INT(safetensors_read_f32(f, t, &s), 0);
    CHECK_CLOSE(s, 42, 0, 0);
    t = safetensors_find(f, "empty");
    CHECK(t && t->numel == 0 && t->nbytes == 0);
    t = safetensors_find(f, "embeddings.LayerNorm.bias");
    float got_b[4];
    if (t) CHECK_INT(safetensors_read_f32(f, t, got_b), 0);
    CHECK(t && memcmp(got_b, b, sizeof b) == 0);
    safetensors_close(f);

    // The data region starts 8-byte aligned (the header is padded with spaces).
    FILE *fp = fopen(path, "rb");
    uint8_t len[8];
    CHECK_INT(fread(len, 1, 8, fp), 8);
    fclose(fp);
    CHECK_INT(len[0] % 8, 0);
}

static void test_half_types(void) {
    // F16: 1, -2, 65504, smallest subnormal, +inf, 0.5 ; BF16: 1, -3, 2^-128 (subnormal)
    const uint16_t f16[6] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0x3800};
    const uint16_t bf16[3] = {0x3F80, 0xC040, 0x0020};
    const char *header = "{\"h\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
                         "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[12,18]},"
                         "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[18,26]}}";
    const char *path = path_of("half.safetensors");
    FILE *f = fopen(path, "wb");
    uint64_t n = strlen(header);
    fwrite(&n, 8, 1, f);
    fwrite(header, 1, n, f);
    fwrite(f16, 2, 6, f);
    fwrite(bf16, 2, 3, f);
    int64_t i64 = 7;
    fwrite(&i64, 8, 1, f);
    fclose(f);

    safetensors_file *st = NULL;
    CHECK_INT(safetensors_open(path, &st), 0);
    if (!st) return;
    float h[6], b[3], x;
    CHECK_INT(safetensors_read_f32(st, safetensors_find(st, "h"), h), 0);
    CHECK_CLOSE(h[0], 1.0, 0, 0);
    CHECK_CLOSE(h[1], -2.0, 0, 0);
    CHECK_CLOSE(h[2], 65504.0, 0, 0);
    CHECK_CLOSE(h[3], 5.9604644775390625e-08, 0, 0);
    CHECK(isinf(h[4]) && h[4] > 0);
    CHECK_CLOSE(h[5], 0.5, 0, 0);
    CHECK_INT(safetensors_read_f32(st, safetensors_find(st, "b"), b), 0);
    CHECK_CLOSE(b[0], 1.0, 0, 0);
    CHECK_CLOSE(b[1], -3.0, 0, 0);
    CHECK_CLOSE(b[2], ldexp(1.0, -128), 0, 0);
    CHECK_INT(safetensors_read_f32(st, safetensors_find(st, "i"), &x), EXIT_BAD_INPUT);
    CHECK(strstr(error_message(), "'i'") && strstr(error_message(), "I64"));
    safetensors_close(st);
}

static void test_bad_files(void) {
    expect_bad(path_of("missing.safetensors"), "cannot open");
    expect_bad(dir, "not a regular file");
    FILE *f = fopen(path_of("empty.safetensors"), "wb");
    fclose(f);
    expect_bad(path_of("empty.safetensors"), "too short");
    f = fopen(path_of("short.safetensors"), "wb");
    fwrite("\x10\0\0", 1, 3, f);
    fclose(f);
    expect_bad(path_of("short.safetensors"), "too short");

    const char *ok = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_bad(write_raw("huge.st", 200000000ull, ok, 8), "limit");
    expect_bad(write_raw("huge64.st", UINT64_MAX, ok, 8), "limit");
    expect_bad(write_raw("truncated.st", strlen(ok) + 100, ok, 8), "truncated");
    expect_bad(write_header("cut_data.st", ok, 5), "'w'");
    expect_bad(write_header("extra_data.st", ok, 12), "after the last tensor");
    expect_bad(write_header("not_json.st", "{\"w\": [1, 2", 0), "not valid JSON");
    expect_bad(write_header("garbage.st", "\x89PNG\r\n\x1a\n\xff\xfe", 0), "not valid JSON");
    expect_bad(write_header("array.st", "[1, 2, 3]", 0), "not a JSON object");
    expect_bad(write_header("trailing.st", "{} xyz", 0), "trailing bytes");
    expect_bad(write_header("entry_num.st", "{\"w\": 5}", 0), "'w'");
    expect_bad(write_header("dtype.st",
               "{\"w\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8), "F33");
    expect_bad(write_header("no_dtype.st", "{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
               "'w'");
    expect_bad(write_header("no_shape.st", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8),
               "missing shape");
    expect_bad(write_header("neg_shape.st",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8), "shape[0]");
    expect_bad(write_header("frac_shape.st",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,10]}}", 10), "shape[0]");
    expect_bad(write_header("str_shape.st",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8), "shape[0]");
    expect_bad(write_header("many_dims.st",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4),
               "dimensions");
    expect_bad(write_header("overflow.st",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
               "\"data_offsets\":[0,8]}}", 8), "overflows");
    expect_bad(write_header("offsets3.st",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4,8]}}", 8), "data_offsets");
    expect_bad(write_header("begin_end.st",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8), "begin 8 > end 0");
    expect_bad(write_header("past_end.st",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8),
               "past the data region");
    expect_bad(write_header("size.st",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8), "expected 12");
    expect_bad(write_header("overlap.st",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12), "overlaps");
    expect_bad(write_header("gap.st",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12), "gap");
    expect_bad(write_header("dup.st",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8), "twice");
    expect_bad(write_header("meta.st", "{\"__metadata__\":{\"format\":1}}", 0), "__metadata__");
    expect_bad(write_header("meta2.st", "{\"__metadata__\":[]}", 0), "__metadata__");

    // A valid file cut anywhere must be refused, never read past its end.
    float w[16] = {0};
    st_write_tensor t[2] = {{"a", w, 1, {10}}, {"b", w, 2, {2, 3}}};
    const char *full = path_of("full.safetensors");
    CHECK_INT(safetensors_write_f32(full, t, 2, NULL), 0);
    FILE *in = fopen(full, "rb");
    char bytes[512];
    size_t n = fread(bytes, 1, sizeof bytes, in);
    fclose(in);
    int refused = 0;
    for (size_t cut = 0; cut < n; cut++) {
        const char *p = path_of("cut.safetensors");
        FILE *out = fopen(p, "wb");
        fwrite(bytes, 1, cut, out);
        fclose(out);
        safetensors_file *sf = NULL;
        refused += safetensors_open(p, &sf) == EXIT_BAD_INPUT && sf == NULL;
        safetensors_close(sf);
    }
    CHECK_INT(refused, n);
}

static void test_write_errors(void) {
    float w[2] = {1, 2};
    st_write_tensor dup[2] = {{"a", w, 1, {2}}, {"a", w, 1, {2}}};
    CHECK_INT(safetensors_write_f32(path_of("dup_out.safetensors"), dup, 2, NULL), EXIT_INTERNAL);
    CHECK(strstr(error_message(), "'a'") != NULL);
    CHECK(access(path_of("dup_out.safetensors"), F_OK) != 0);
    st_write_tensor one = {"a", w, 1, {2}};
    CHECK_INT(safetensors_write_f32("/nonexistent-dir/x.safetensors", &one, 1, NULL), EXIT_OUTPUT);
    CHECK(strstr(error_message(), "/nonexistent-dir/x.safetensors") != NULL);
    st_write_tensor nodata = {"a", NULL, 1, {2}};
    CHECK_INT(safetensors_write_f32(path_of("nodata.safetensors"), &nodata, 1, NULL), EXIT_INTERNAL);
    // Overwriting is atomic: the old file stays whole until the new one is complete.
    const char *p = path_of("over.safetensors");
    CHECK_INT(safetensors_write_f32(p, &one, 1, NULL), 0);
    float w3[3] = {4, 5, 6};
    st_write_tensor three = {"b", w3, 1, {3}};
    CHECK_INT(safetensors_write_f32(p, &three, 1, NULL), 0);
    safetensors_file *f = NULL;
    CHECK_INT(safetensors_open(p, &f), 0);
    CHECK(f && safetensors_find(f, "b") && !safetensors_find(f, "a"));
    safetensors_close(f);
}

static void write_text(const char *name, const char *text) {
    FILE *f = fopen(path_of(name), "w");
    fputs(text, f);
    fclose(f);
}

// A set must refuse the index with EXIT_BAD_INPUT and a reason holding every needle.
static void expect_bad_set(const char *index, const char *needle, const char *needle2) {
    safetensors_set *s = (safetensors_set *)1;
    error_clear();
    CHECK_INT(safetensors_set_open(path_of(index), &s), EXIT_BAD_INPUT);
    CHECK(s == NULL);
    if (!strstr(error_message(), needle) || (needle2 && !strstr(error_message(), needle2)))
        fprintf(stderr, "  reason \"%s\" lacks \"%s\" or \"%s\"\n", error_message(), needle,
                needle2 ? needle2 : "");
    CHECK(strstr(error_message(), needle) != NULL);
    CHECK(!needle2 || strstr(error_message(), needle2) != NULL);
    CHECK(strchr(error_message(), '\n') == NULL);
}

// transformers' sharded checkpoints: an index names the shard of each tensor, and the
// set reads them as one checkpoint; a missing, short or wrong shard names itself and a
// tensor, and no index entry may leave the folder.
static void test_sharded(void) {
    char sub[160];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    CHECK_INT(mkdir(sub, 0755), 0);
    float a[4] = {1, 2, 3, 4}, b[2] = {5, 6}, c[3] = {7, 8, 9}, stray[1] = {0};
    st_write_tensor one[] = {{"a", a, 2, {2, 2}}, {"b", b, 1, {2}}, {"stray", stray, 1, {1}}};
    st_write_tensor two[] = {{"c", c, 1, {3}}};
    CHECK_INT(safetensors_write_f32(path_of("m-1.safetensors"), one, 3, NULL), 0);
    CHECK_INT(safetensors_write_f32(path_of("sub/m-2.safetensors"), two, 1, NULL), 0);
    write_text("good.index.json", "{\"metadata\": {\"total_size\": 36}, \"weight_map\": "
               "{\"c\": \"sub/m-2.safetensors\", \"a\": \"m-1.safetensors\", "
               "\"b\": \"m-1.safetensors\"}}");
    cJSON *shards = NULL;
    CHECK_INT(safetensors_index_shards(path_of("good.index.json"), &shards), 0);
    CHECK_INT(cJSON_GetArraySize(shards), 2);
    CHECK_STR(cJSON_GetArrayItem(shards, 0)->valuestring, "sub/m-2.safetensors");
    CHECK_STR(cJSON_GetArrayItem(shards, 1)->valuestring, "m-1.safetensors");
    cJSON_Delete(shards);

    CHECK(safetensors_is_index(path_of("good.index.json")));
    CHECK(!safetensors_is_index(path_of("m-1.safetensors")));
    safetensors_set *s = NULL;
    CHECK_INT(safetensors_set_open(path_of("good.index.json"), &s), 0);
    if (s) {
        CHECK_INT(safetensors_set_count(s), 3); // the map's tensors: "stray" is not read
        const safetensors_file *f = NULL;
        const st_tensor_info *t = safetensors_set_find(s, "c", &f);
        CHECK(t && f && strstr(safetensors_path(f), "sub/m-2.safetensors"));
        float got[4] = {0};
        if (t) CHECK_INT(safetensors_read_f32(f, t, got), 0);
        CHECK(got[0] == 7 && got[2] == 9);
        t = safetensors_set_find(s, "a", &f);
        CHECK(t && f && strstr(safetensors_path(f), "m-1.safetensors"));
        if (t) CHECK_INT(safetensors_read_f32(f, t, got), 0);
        CHECK(got[3] == 4);
        CHECK(safetensors_set_find(s, "stray", NULL) == NULL);
        CHECK(safetensors_set_find(s, "nope", NULL) == NULL);
        CHECK_STR(safetensors_set_tensor(s, 0, NULL)->name, "c"); // weight_map order
        CHECK(safetensors_set_tensor(s, 3, NULL) == NULL);
        safetensors_set_close(s);
    }
    // a single file is a set of one
    CHECK_INT(safetensors_set_open(path_of("m-1.safetensors"), &s), 0);
    if (s) CHECK_INT(safetensors_set_count(s), 3);
    safetensors_set_close(s);

    write_text("missing.index.json", "{\"weight_map\": {\"a\": \"m-1.safetensors\", "
               "\"z\": \"m-9.safetensors\"}}");
    expect_bad_set("missing.index.json", "m-9.safetensors", "'z'");
    write_text("absent.index.json", "{\"weight_map\": {\"c\": \"m-1.safetensors\"}}");
    expect_bad_set("absent.index.json", "'c'", "m-1.safetensors");
    FILE *f = fopen(path_of("short.safetensors"), "wb");
    fwrite("\x10\0\0\0\0\0\0\0{}", 1, 10, f);
    fclose(f);
    write_text("short.index.json", "{\"weight_map\": {\"q\": \"short.safetensors\"}}");
    expect_bad_set("short.index.json", "short.safetensors", "'q'");
    write_text("up.index.json", "{\"weight_map\": {\"a\": \"../m-1.safetensors\"}}");
    expect_bad_set("up.index.json", "../m-1.safetensors", "not a file in");
    write_text("abs.index.json", "{\"weight_map\": {\"a\": \"/etc/passwd\"}}");
    expect_bad_set("abs.index.json", "/etc/passwd", NULL);
    write_text("dots.index.json", "{\"weight_map\": {\"a\": \"sub/./m-2.safetensors\"}}");
    expect_bad_set("dots.index.json", "sub/./m-2", NULL);
    write_text("num.index.json", "{\"weight_map\": {\"a\": 3}}");
    expect_bad_set("num.index.json", "weight_map[\"a\"]", NULL);
    write_text("nomap.index.json", "{\"metadata\": {}}");
    expect_bad_set("nomap.index.json", "weight_map", NULL);
    write_text("empty.index.json", "{\"weight_map\": {}}");
    expect_bad_set("empty.index.json", "empty", NULL);
    write_text("notjson.index.json", "{\"weight_map\": ");
    expect_bad_set("notjson.index.json", "not a JSON object", NULL);
    write_text("dup.index.json", "{\"weight_map\": {\"a\": \"m-1.safetensors\", "
               "\"a\": \"m-1.safetensors\"}}");
    expect_bad_set("dup.index.json", "'a'", "twice");
    expect_bad_set("nothing.index.json", "cannot open", NULL);

    // a folder's checkpoint: the single file first, else the index
    char folder[160], got[4096];
    snprintf(folder, sizeof folder, "%s/ckpt", dir);
    CHECK_INT(mkdir(folder, 0755), 0);
    CHECK_INT(safetensors_checkpoint_path(folder, got, sizeof got), 0);
    CHECK(strstr(got, "ckpt/model.safetensors") && !safetensors_is_index(got));
    write_text("ckpt/model.safetensors.index.json", "{}");
    CHECK_INT(safetensors_checkpoint_path(folder, got, sizeof got), 0);
    CHECK(strstr(got, "ckpt/model.safetensors.index.json") != NULL);
    CHECK_INT(safetensors_write_f32(path_of("ckpt/model.safetensors"), two, 1, NULL), 0);
    CHECK_INT(safetensors_checkpoint_path(folder, got, sizeof got), 0);
    CHECK(!safetensors_is_index(got));
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/test_safetensors.XXXXXX");
    if (!mkdtemp(dir)) return 1;
    test_round_trip();
    test_half_types();
    test_bad_files();
    test_write_errors();
    test_sharded();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_summary();
}
