/* The tutorial's two programs, the tutorial's way, in C (the original is Go with cgo):
 * a named segment of 4,000,000,000 bytes, no header, the record at offset 0.
 *
 *   tutorial write NAME   creates NAME (O_EXCL, 0644), sizes it, writes {100, 876, 8021}
 *   tutorial read NAME    maps NAME, prints the record, unlinks NAME
 *
 * NAME is passed to shm_open as given ("my_shm", without a slash, as the tutorial does).
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct MyData {
    int64_t col1;
    int64_t col2;
    int64_t col3;
};

#define SIZE 4000000000LL

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s write|read NAME\n", argv[0]);
        return 2;
    }
    const char *name = argv[2];
    if (strcmp(argv[1], "write") == 0) {
        int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0644);
        if (fd < 0) { perror("shm_open"); return 1; }
        if (ftruncate(fd, SIZE) != 0) { perror("ftruncate"); shm_unlink(name); return 1; }
        struct MyData *d = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (d == MAP_FAILED) { perror("mmap"); shm_unlink(name); return 1; }
        d->col1 = 100;
        d->col2 = 876;
        d->col3 = 8021;
        printf("wrote {%lld %lld %lld}\n", (long long)d->col1, (long long)d->col2,
               (long long)d->col3);
        munmap(d, SIZE);
        close(fd);
        return 0;
    }
    if (strcmp(argv[1], "read") == 0) {
        int fd = shm_open(name, O_RDONLY, 0);
        if (fd < 0) { perror("shm_open"); return 1; }
        struct stat st;
        if (fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(struct MyData)) {
            fprintf(stderr, "segment too small\n");
            return 1;
        }
        struct MyData *d = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (d == MAP_FAILED) { perror("mmap"); return 1; }
        printf("read {%lld %lld %lld}\n", (long long)d->col1, (long long)d->col2,
               (long long)d->col3);
        munmap(d, st.st_size);
        close(fd);
        if (shm_unlink(name) != 0) { perror("shm_unlink"); return 1; }
        return 0;
    }
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
