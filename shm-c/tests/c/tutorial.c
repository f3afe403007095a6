/* The tutorial's record from C, both ways of reading it: NAME holds a Rust
 * Segment<MyData> with {100, 876, 8021} (typed: its schema checked), and NAME-raw is
 * made here as the tutorial's writer makes it (shm_open + ftruncate + mmap, no header),
 * then read through shm_segment_open_foreign. Prints "tutorial ok". */
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include "common.h"

typedef struct {
    uint64_t col1, col2, col3;
} MyData;

static int is_tutorial(const MyData *d) { return d->col1 == 100 && d->col2 == 876 && d->col3 == 8021; }

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: tutorial NAME\n"); return 2; }
    shm_schema schema = {"MyData", 1, sizeof(MyData), _Alignof(MyData)};
    shm_schema wrong = {"MyData", 1, 16, 8};
    shm_segment *seg = NULL;
    MyData d;
    EXPECT(shm_segment_open(argv[1], &wrong, 10ULL * 1000000000ULL, &seg), SHM_STATUS_MISMATCH);
    CHECK(shm_segment_open(argv[1], &schema, 0, &seg));
    CHECK(shm_segment_read(seg, 0, &d, sizeof d));
    if (!is_tutorial(&d)) { fprintf(stderr, "typed: not the tutorial's values\n"); return 1; }
    EXPECT(shm_segment_read(seg, UINT64_MAX, &d, sizeof d), SHM_STATUS_INVALID_ARGUMENT);
    EXPECT(shm_segment_read(seg, 1ULL << 40, &d, sizeof d), SHM_STATUS_INVALID_ARGUMENT);
    CHECK(shm_segment_free(seg));

    char raw[200];
    snprintf(raw, sizeof raw, "%s-raw", argv[1]);
    int fd = shm_open(raw, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0 || ftruncate(fd, 4096) != 0) { perror("shm_open"); return 1; }
    MyData *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    p->col1 = 100; p->col2 = 876; p->col3 = 8021;
    EXPECT(shm_segment_open_foreign(raw, 8192, 0, &seg), SHM_STATUS_MISMATCH); /* too small */
    CHECK(shm_segment_open_foreign(raw, sizeof(MyData), 0, &seg));
    memset(&d, 0, sizeof d);
    CHECK(shm_segment_read(seg, 0, &d, sizeof d));
    int ok = is_tutorial(&d);
    MyData next = {1, 2, 3};
    CHECK(shm_segment_write(seg, 0, &next, sizeof next));
    ok = ok && p->col1 == 1 && p->col3 == 3;
    CHECK(shm_segment_free(seg));
    munmap(p, 4096);
    close(fd);
    shm_unlink(raw);
    if (!ok) { fprintf(stderr, "foreign: wrong values\n"); return 1; }
    printf("tutorial ok\n");
    return 0;
}
