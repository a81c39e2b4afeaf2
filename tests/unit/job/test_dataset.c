// Reading the original's CSV and JSONL, malformed rows (skipped within max_bad_rows,
// exit 3 beyond), N_INSTANCES, the seeded 80/15/5 split and the CSV round trip.
#include "check.h"
#include "runner/error.h"
#include "runner/job/dataset.h"
#include "runner/job/files.h"

#include <stdlib.h>
#include <unistd.h>

static char dir[64];

static void write_file(const char *name, const char *text) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK_INT(files_write_text(path, text), 0);
}

static void write_labels(void) {
    write_file("enumerator.json", "{\"O\": 0, \"B-geo\": 1, \"I-geo\": 2, \"B-per\": 3}");
    write_file("archetype.json", "{\"0\": \"O\", \"1\": \"B-geo\", \"2\": \"I-geo\", \"3\": \"B-per\"}");
}

static void test_csv(void) {
    write_labels();
    write_file("dataset.csv",
               "sentence_identifier,sentence,tagstr,code_per_tag\n"
               "1,Smith visited New York,B-per O B-geo I-geo,3 0 1 2\n"
               "2,\"Hello, world\",O O,0 0\n"            // a quoted comma
               "3,too few tags,O O,0 0\n"                 // line 4: malformed
               "4,Paris,B-xyz,1\n"                        // line 5: unknown tag
               "5,Paris,B-geo,2\n"                        // line 6: code disagrees
               "6,Paris again,B-geo O,1 0\n");
    dataset_options opt = {.max_instances = 0, .max_bad_fraction = 0.5};
    ner_dataset ds;
    CHECK_INT(dataset_load(dir, &opt, &ds), 0);
    CHECK_INT(ds.n, 3);
    CHECK_INT(ds.bad_rows, 3);
    CHECK_INT(ds.num_labels, 4);
    CHECK_STR(ds.labels[3], "B-per");
    CHECK_INT(ds.items[0].nwords, 4);
    CHECK_STR(ds.items[0].words[2], "New");
    CHECK_INT(ds.items[0].tags[3], 2);
    CHECK_STR(ds.items[1].words[0], "Hello,");
    CHECK_STR(ds.items[2].identifier, "6");

    // Write, read back: the same sentences and tags.
    char path[256];
    snprintf(path, sizeof path, "%s/copy/training.csv", dir);
    snprintf(path, sizeof path, "%s/copy", dir);
    CHECK_INT(files_mkdirs(path), 0);
    CHECK_INT(dataset_write_labels(&ds, path), 0);
    snprintf(path, sizeof path, "%s/copy/dataset.csv", dir);
    int order[] = {2, 0, 1};
    CHECK_INT(dataset_write_csv(&ds, order, 3, path), 0);
    ner_dataset back;
    opt.max_bad_fraction = 0;
    CHECK_INT(dataset_load(path, &opt, &back), 0);
    CHECK_INT(back.n, 3);
    CHECK_INT(back.bad_rows, 0);
    CHECK_STR(back.items[2].words[0], "Hello,");
    CHECK_STR(back.items[1].words[3], "York");
    CHECK_INT(back.items[1].tags[0], 3);
    dataset_free(&back);

    // N_INSTANCES stops early.
    opt.max_instances = 2;
    opt.max_bad_fraction = 1;
    CHECK_INT(dataset_load(dir, &opt, &back), 0);
    CHECK_INT(back.n, 2);
    dataset_free(&back);

    // Beyond the allowed fraction: exit 3 with file and count in the reason.
    opt.max_instances = 0;
    opt.max_bad_fraction = 0.1;
    CHECK_INT(dataset_load(dir, &opt, &back), EXIT_BAD_INPUT);
    CHECK(strstr(error_message(), "3 of 6 rows malformed") != NULL);
    dataset_free(&ds);

    // A broken label map is a bad input.
    write_file("archetype.json", "{\"0\": \"O\", \"1\": \"B-geo\", \"2\": \"B-per\", \"3\": \"I-geo\"}");
    CHECK_INT(dataset_load(dir, &opt, &back), EXIT_BAD_INPUT);
    CHECK(strstr(error_message(), "archetype.json") != NULL);
}

static void test_jsonl(void) {
    char path[256];
    snprintf(path, sizeof path, "%s/j", dir);
    CHECK_INT(files_mkdirs(path), 0);
    snprintf(path, sizeof path, "%s/j/train.jsonl", dir);
    CHECK_INT(files_write_text(path, "{\"tokens\": [\"Ann\", \"runs\"], \"tags\": [\"B-per\", \"O\"]}\n"
                                     "\n"
                                     "{\"tokens\": [\"x\"], \"tags\": []}\n"
                                     "{\"tokens\": [\"in\", \"Rome\"], \"tags\": [\"O\", \"B-geo\"]}\n"),
              0);
    dataset_options opt = {.max_instances = 0, .max_bad_fraction = 0.5};
    ner_dataset ds;
    CHECK_INT(dataset_load(path, &opt, &ds), 0);
    CHECK_INT(ds.n, 2);
    CHECK_INT(ds.bad_rows, 1);
    CHECK_INT(ds.num_labels, 3);
    CHECK_STR(ds.labels[0], "B-geo"); // sorted
    CHECK_STR(ds.labels[2], "O");
    CHECK_INT(ds.items[1].tags[1], 0);
    CHECK_STR(ds.items[1].identifier, "4"); // line number, the blank line counted
    dataset_free(&ds);

    char **texts;
    int n;
    CHECK_INT(text_load(path, 0, &texts, &n), 0); // tokens joined by spaces
    CHECK_INT(n, 3);
    CHECK_STR(texts[2], "in Rome");
    text_free(texts, n);
    snprintf(path, sizeof path, "%s/j/plain.txt", dir);
    CHECK_INT(files_write_text(path, "first sentence\n\nsecond one\r\n"), 0);
    CHECK_INT(text_load(path, 0, &texts, &n), 0);
    CHECK_INT(n, 2);
    CHECK_STR(texts[1], "second one");
    text_free(texts, n);
}

// A token with whitespace would be written to the CSV as two words against one tag; the
// tags of a rejected row must not enter the label set.
static void test_jsonl_bad_tokens(void) {
    char path[256];
    snprintf(path, sizeof path, "%s/j/spaces.jsonl", dir);
    const char *rows =
        "{\"tokens\": [\"to\", \"New York\"], \"tags\": [\"O\", \"B-geo\"]}\n" // a space
        "{\"tokens\": [\"Rome\", \"\"], \"tags\": [\"B-city\", \"O\"]}\n"      // an empty token
        "{\"tokens\": [\"a\\tb\"], \"tags\": [\"B-tab\"]}\n"                    // a tab
        "{\"tokens\": [\"Ann\", \"runs\"], \"tags\": [\"B-per\", \"O\"]}\n";
    CHECK_INT(files_write_text(path, rows), 0);
    dataset_options opt = {.max_instances = 0, .max_bad_fraction = 0.9};
    ner_dataset ds;
    CHECK_INT(dataset_load(path, &opt, &ds), 0);
    CHECK_INT(ds.n, 1);
    CHECK_INT(ds.bad_rows, 3);
    CHECK_INT(ds.num_labels, 2); // B-per and O: not B-geo, B-city nor B-tab
    CHECK_STR(ds.labels[0], "B-per");
    CHECK_STR(ds.labels[1], "O");
    CHECK_INT(ds.items[0].tags[0], 0);
    CHECK_INT(ds.items[0].tags[1], 1);
    dataset_free(&ds);
}

static void test_split(void) {
    int order[1000], seen[1000] = {0};
    int a, b, c;
    CHECK_INT(dataset_split(1000, 5, 0.8, 0.15, order, &a, &b, &c), 0);
    CHECK_INT(a, 800);
    CHECK_INT(b, 150);
    CHECK_INT(c, 50);
    for (int i = 0; i < 1000; i++) seen[order[i]]++;
    int all_once = 1, identity = 1;
    for (int i = 0; i < 1000; i++) {
        all_once &= seen[i] == 1;
        identity &= order[i] == i;
    }
    CHECK(all_once);
    CHECK(!identity);
    int again[1000], other[1000];
    dataset_split(1000, 5, 0.8, 0.15, again, &a, &b, &c);
    dataset_split(1000, 6, 0.8, 0.15, other, &a, &b, &c);
    CHECK(memcmp(order, again, sizeof order) == 0);
    CHECK(memcmp(order, other, sizeof order) != 0);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/test_dataset.XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    test_csv();
    test_jsonl();
    test_jsonl_bad_tokens();
    test_split();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
    return check_summary();
}
