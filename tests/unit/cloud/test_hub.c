// Hub ids, revisions and the cache root as huggingface_hub reads them (runner/cloud/hub.h).
#include "check.h"
#include "runner/cloud/hub.h"
#include "runner/error.h"

#include <stdlib.h>

static void test_ids(void) {
    CHECK(hub_is_model_id("google-bert/bert-base-uncased"));
    CHECK(hub_is_model_id("bert-base-uncased")); // the Hub's legacy, org-less names
    CHECK(hub_is_model_id("FacebookAI/roberta-base@refs/pr/1"));
    CHECK(hub_is_model_id("org/name@0123456789abcdef0123456789abcdef01234567"));
    CHECK(!hub_is_model_id("s3://bucket/model"));
    CHECK(!hub_is_model_id("data")); // an existing local folder wins (run from the repo root)
    CHECK(!hub_is_model_id("./model"));
    CHECK(!hub_is_model_id("/abs/path/model"));
    CHECK(!hub_is_model_id("a/b/c"));
    CHECK(!hub_is_model_id("org--x/name"));
    CHECK(!hub_is_model_id("org/name."));
    CHECK(!hub_is_model_id("org/-name"));
    CHECK(!hub_is_model_id("org/na me"));
    CHECK(!hub_is_model_id("org/name@../x"));
    CHECK(!hub_is_model_id("org/name@"));
    CHECK(!hub_is_model_id(""));
}

static void test_refs(void) {
    hub_ref ref;
    CHECK_INT(hub_ref_parse("org/name", NULL, &ref), 0);
    CHECK_STR(ref.repo_id, "org/name");
    CHECK_STR(ref.revision, "main");
    CHECK_INT(hub_ref_parse("org/name@v1.0", "", &ref), 0);
    CHECK_STR(ref.revision, "v1.0");
    CHECK_INT(hub_ref_parse("org/name", "refs/pr/3", &ref), 0);
    CHECK_STR(ref.revision, "refs/pr/3");
    CHECK_INT(hub_ref_parse("org/name@v1", "v1", &ref), 0);
    CHECK_INT(hub_ref_parse("org/name@v1", "v2", &ref), EXIT_USAGE);
    CHECK(strstr(error_message(), "--revision") != NULL);
    CHECK_INT(hub_ref_parse("org/name", "refs/../../x", &ref), EXIT_USAGE);
    CHECK_INT(hub_ref_parse("org/name", "/etc", &ref), EXIT_USAGE);
    CHECK_INT(hub_ref_parse("org/name", "a/./b", &ref), EXIT_USAGE);
    CHECK_INT(hub_ref_parse("not an id", NULL, &ref), EXIT_USAGE);
}

static void test_cache_dir(void) {
    char dir[4096];
    unsetenv("HUGGINGFACE_HUB_CACHE");
    unsetenv("XDG_CACHE_HOME");
    setenv("HF_HUB_CACHE", "/c/hub", 1);
    setenv("HF_HOME", "/h", 1);
    CHECK_INT(hub_cache_dir(dir, sizeof dir), 0);
    CHECK_STR(dir, "/c/hub");
    unsetenv("HF_HUB_CACHE");
    CHECK_INT(hub_cache_dir(dir, sizeof dir), 0);
    CHECK_STR(dir, "/h/hub");
    unsetenv("HF_HOME");
    setenv("XDG_CACHE_HOME", "/x", 1);
    CHECK_INT(hub_cache_dir(dir, sizeof dir), 0);
    CHECK_STR(dir, "/x/huggingface/hub");
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/home/u", 1);
    CHECK_INT(hub_cache_dir(dir, sizeof dir), 0);
    CHECK_STR(dir, "/home/u/.cache/huggingface/hub");
}

int main(void) {
    test_ids();
    test_refs();
    test_cache_dir();
    return check_summary();
}
