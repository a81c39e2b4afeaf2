// files_remove_temporaries: what a killed atomic write leaves (NAME.tmp.PID of
// files_write_atomic, NAME.tmp.XXXXXX of mkostemp) is removed below the root, and
// nothing else is: not a file merely containing ".tmp.", not a directory so named, not a
// final name. And files_write_atomic removes its temporary when it fails, naming the
// file it could not write.
#include "check.h"
#include "runner/error.h"
#include "runner/job/files.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void touch(const char *dir, const char *name) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("x", f);
        fclose(f);
    }
}

static bool present(const char *dir, const char *name) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return files_exists(path);
}

int main(void) {
    char root[] = "/tmp/test_files.XXXXXX";
    CHECK(mkdtemp(root) != NULL);
    char sub[600];
    snprintf(sub, sizeof sub, "%s/prime/checkpoint-6", root);
    CHECK_INT(files_mkdirs(sub), 0);

    static const char *const STALE[] = {"state.bin.tmp.4242", "model.safetensors.tmp.rum60v",
                                        "search.json.tmp.1"};
    static const char *const KEPT[] = {"state.bin", "notes.tmp.txt", "x.tmp.", "a.tmp.12345678901",
                                       "b.tmp.abc", "c.tmp.ab-cde", ".tmp.1234"};
    for (size_t i = 0; i < sizeof STALE / sizeof *STALE; i++) touch(sub, STALE[i]);
    for (size_t i = 0; i < sizeof KEPT / sizeof *KEPT; i++) touch(sub, KEPT[i]);
    touch(root, "best.json.tmp.99");
    char dir_named[700];
    snprintf(dir_named, sizeof dir_named, "%s/logs.tmp.1234", root);
    CHECK_INT(files_mkdirs(dir_named), 0);

    CHECK_INT(files_remove_temporaries(root), 4);
    for (size_t i = 0; i < sizeof STALE / sizeof *STALE; i++) CHECK(!present(sub, STALE[i]));
    for (size_t i = 0; i < sizeof KEPT / sizeof *KEPT; i++) CHECK(present(sub, KEPT[i]));
    CHECK(!present(root, "best.json.tmp.99"));
    CHECK(files_is_dir(dir_named));
    CHECK_INT(files_remove_temporaries(root), 0); // nothing left to remove
    char missing[700];
    snprintf(missing, sizeof missing, "%s/absent", root);
    CHECK_INT(files_remove_temporaries(missing), 0);

    // A write that fails (into a directory that is gone) names the final file and
    // leaves no temporary.
    char gone[700], target[800];
    snprintf(gone, sizeof gone, "%s/gone", root);
    CHECK_INT(files_mkdirs(gone), 0);
    snprintf(target, sizeof target, "%s/file.json", gone);
    CHECK(rmdir(gone) == 0);
    CHECK_INT(files_write_text(target, "{}"), EXIT_OUTPUT);
    CHECK(strstr(error_message(), target) != NULL && !strstr(error_message(), ".tmp."));
    error_clear();

    CHECK_INT(files_remove_tree(sub, root), 0);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CHECK_INT(system(cmd), 0);
    return check_summary();
}
