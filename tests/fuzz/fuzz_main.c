// A driver for the fuzz targets when they are not linked with libFuzzer (gcc builds, CI):
//   fuzz_X PATH...                 run each file once (reproduce a crash libFuzzer found);
//                                  a directory: every file in it (a committed corpus)
//   fuzz_X --random N [SEED] [PATH...]  N inputs made by mutating the target's built-in
//                                  seeds, then the files as above
// The target defines LLVMFuzzerTestOneInput and fuzz_seeds (NULL-terminated). Each input
// is handed over in a buffer of exactly its size, so ASan catches a read past its end.
#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
extern const char *const fuzz_seeds[];
extern const size_t fuzz_seed_sizes[];

static uint64_t rng_state;

static uint64_t next_random(void) { // splitmix64: deterministic for a given seed
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t mutate(uint8_t *buf, size_t size, size_t cap) {
    int edits = 1 + (int)(next_random() % 8);
    for (int e = 0; e < edits; e++) {
        size_t pos = size ? next_random() % size : 0;
        switch (next_random() % 6) {
        case 0: if (size) buf[pos] = (uint8_t)next_random(); break;          // byte
        case 1: if (size) buf[pos] ^= (uint8_t)(1u << (next_random() % 8)); break; // bit
        case 2: if (size > 1) { size_t n = 1 + next_random() % (size - pos); // delete
                    memmove(buf + pos, buf + pos + n, size - pos - n); size -= n; } break;
        case 3: if (size < cap) { memmove(buf + pos + 1, buf + pos, size - pos); // insert
                    buf[pos] = (uint8_t)next_random(); size++; } break;
        case 4: size = pos; break;                                             // truncate
        case 5: if (size) { const char *digits = "0123456789-e.\"[]{},:";      // JSON-ish
                    buf[pos] = (uint8_t)digits[next_random() % 20]; } break;
        }
    }
    return size;
}

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(size > 0 ? (size_t)size : 1);
    size_t got = fread(buf, 1, size > 0 ? (size_t)size : 0, f);
    fclose(f);
    uint8_t *exact = malloc(got ? got : 1); // no slack after the input
    memcpy(exact, buf, got);
    free(buf);
    LLVMFuzzerTestOneInput(exact, got);
    free(exact);
    return 0;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// A file, or every regular file of a directory (in name order, so runs repeat).
static int run_path(const char *path, long *count) {
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        (*count)++;
        return run_file(path);
    }
    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        return 1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            names = realloc(names, cap * sizeof *names);
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, compare_names);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char file[4096];
        snprintf(file, sizeof file, "%s/%s", path, names[i]);
        if (rc == 0 && stat(file, &st) == 0 && S_ISREG(st.st_mode)) {
            (*count)++;
            rc = run_file(file);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

static bool all_digits(const char *s) {
    if (!*s) return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return false;
    return true;
}

int main(int argc, char **argv) {
    int first_path = 1;
    if (argc >= 3 && strcmp(argv[1], "--random") == 0) {
        long n = atol(argv[2]);
        first_path = 3;
        rng_state = 1;
        if (argc > 3 && all_digits(argv[3])) {
            rng_state = strtoull(argv[3], NULL, 10);
            first_path = 4;
        }
        int seeds = 0;
        while (fuzz_seeds[seeds]) seeds++;
        enum { CAP = 1 << 16 };
        uint8_t *buf = malloc(CAP);
        for (long i = 0; i < n; i++) {
            int s = (int)(next_random() % (uint64_t)seeds);
            size_t size = fuzz_seed_sizes[s] < CAP ? fuzz_seed_sizes[s] : CAP;
            memcpy(buf, fuzz_seeds[s], size);
            size = mutate(buf, size, CAP);
            uint8_t *exact = malloc(size ? size : 1);
            memcpy(exact, buf, size);
            LLVMFuzzerTestOneInput(exact, size);
            free(exact);
        }
        free(buf);
        printf("%ld inputs\n", n);
    }
    long files = 0;
    for (int i = first_path; i < argc; i++)
        if (run_path(argv[i], &files) != 0) return 1;
    if (first_path < argc) printf("%ld files\n", files);
    return 0;
}
