// A driver for the fuzz targets when they are not linked with libFuzzer (gcc builds, CI):
//   fuzz_X FILE...             run each file once (reproduce a crash libFuzzer found)
//   fuzz_X --random N [SEED]   N inputs made by mutating the target's built-in seeds
// The target defines LLVMFuzzerTestOneInput and fuzz_seeds (NULL-terminated).
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "--random") == 0) {
        long n = atol(argv[2]);
        rng_state = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
        int seeds = 0;
        while (fuzz_seeds[seeds]) seeds++;
        enum { CAP = 1 << 16 };
        uint8_t *buf = malloc(CAP);
        for (long i = 0; i < n; i++) {
            int s = (int)(next_random() % (uint64_t)seeds);
            size_t size = fuzz_seed_sizes[s] < CAP ? fuzz_seed_sizes[s] : CAP;
            memcpy(buf, fuzz_seeds[s], size);
            size = mutate(buf, size, CAP);
            LLVMFuzzerTestOneInput(buf, size);
        }
        free(buf);
        printf("%ld inputs\n", n);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *buf = malloc(size > 0 ? (size_t)size : 1);
        size_t got = fread(buf, 1, (size_t)size, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, got);
        free(buf);
    }
    return 0;
}
