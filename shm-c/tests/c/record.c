/* The tutorial's record from C: opens the seqlock NAME holding MyData (a Rust
 * SeqLock<MyData> made it), checks it reads {100, 876, 8021}, that a wrong schema is
 * refused, then stores {i, 2i, 3i} for i = 1..N while its Rust peer reads. Prints
 * "stored N". */
#include "common.h"

typedef struct {
    uint64_t col1, col2, col3;
} MyData;

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: record NAME N\n"); return 2; }
    uint64_t n = strtoull(argv[2], NULL, 10);
    shm_seqlock *lock = NULL;
    shm_schema wrong = {"MyData", 2, sizeof(MyData), _Alignof(MyData)};
    shm_schema other = {"MyData", 1, 16, 8};
    shm_schema bad = {"MyData", 1, sizeof(MyData), 3};
    shm_schema schema = {"MyData", 1, sizeof(MyData), _Alignof(MyData)};
    EXPECT(shm_seqlock_open(argv[1], &wrong, 10ULL * 1000000000ULL, &lock), SHM_STATUS_MISMATCH);
    EXPECT(shm_seqlock_open(argv[1], &other, 0, &lock), SHM_STATUS_MISMATCH);
    EXPECT(shm_seqlock_open(argv[1], &bad, 0, &lock), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_seqlock_open(argv[1], NULL, 0, &lock), SHM_STATUS_INVALID_ARGUMENT);
    CHECK(shm_seqlock_open(argv[1], &schema, 0, &lock));
    MyData d;
    EXPECT(shm_seqlock_load(lock, &d, 8), SHM_STATUS_INVALID_ARGUMENT);
    CHECK(shm_seqlock_load(lock, &d, sizeof d));
    if (d.col1 != 100 || d.col2 != 876 || d.col3 != 8021) {
        fprintf(stderr, "read {%llu, %llu, %llu}\n", (unsigned long long)d.col1,
                (unsigned long long)d.col2, (unsigned long long)d.col3);
        return 1;
    }
    for (uint64_t i = 1; i <= n; i++) {
        MyData v = {i, 2 * i, 3 * i};
        CHECK(shm_seqlock_store(lock, &v, sizeof v));
    }
    CHECK(shm_seqlock_free(lock));
    printf("stored %llu\n", (unsigned long long)n);
    return 0;
}
