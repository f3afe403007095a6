/* A reader of shm's segment layout, version 1, written from the byte-by-byte table and
 * the "Reading a segment from another language" steps in shm-core/src/layout.rs, and
 * nothing else: it attaches to a record segment holding MyData and prints it, or
 * rejects the segment with a message saying which check failed.
 *
 *   layout_reader NAME     (NAME as given to shm_open, e.g. "/my_shm")
 *
 * Exit status: 0 printed the record; 1 rejected the segment; 2 usage or system error.
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct MyData {
    uint64_t col1;
    uint64_t col2;
    uint64_t col3;
};

#define HEADER_SIZE 128
#define READY 0x52454459u

static uint32_t u32_at(const unsigned char *p, size_t off) {
    uint32_t v;
    memcpy(&v, p + off, 4);
    return v;
}

static uint64_t u64_at(const unsigned char *p, size_t off) {
    uint64_t v;
    memcpy(&v, p + off, 8);
    return v;
}

static int reject(const char *what, unsigned long long found, const char *expected) {
    printf("rejected: %s is %llu, expected %s\n", what, found, expected);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s NAME\n", argv[0]);
        return 2;
    }
    int fd = shm_open(argv[1], O_RDONLY, 0);
    if (fd < 0) { perror("shm_open"); return 2; }
    struct stat st;
    if (fstat(fd, &st) != 0) { perror("fstat"); return 2; }
    if (!S_ISREG(st.st_mode)) return reject("file type", st.st_mode, "a regular file");
    if (st.st_size < HEADER_SIZE) return reject("size", st.st_size, "at least 128 bytes");
    size_t mapped = (size_t)st.st_size;
    const unsigned char *base = mmap(NULL, mapped, PROT_READ, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) { perror("mmap"); return 2; }

    /* Step 1: ready, loaded with acquire ordering (pairs with the creator's release
     * store). 0 means still initialising; anything else but READY is corrupt. */
    uint32_t ready = atomic_load_explicit((_Atomic uint32_t *)(base + 120), memory_order_acquire);
    if (ready != READY) return reject("ready", ready, "0x52454459");

    /* Step 2: copy the 128 header bytes once, then check only the copy. */
    unsigned char h[HEADER_SIZE];
    memcpy(h, base, HEADER_SIZE);
    if (memcmp(h, "SHMCORE\0", 8) != 0) return reject("magic", u64_at(h, 0), "\"SHMCORE\\0\"");
    if (u32_at(h, 8) != 1) return reject("layout_version", u32_at(h, 8), "1");
    if (u32_at(h, 12) != 128) return reject("header_size", u32_at(h, 12), "128");
    uint64_t segment_size = u64_at(h, 16);
    if (segment_size > mapped || segment_size < HEADER_SIZE)
        return reject("segment_size", segment_size, "128 .. the mapped size");
    uint64_t payload_offset = u64_at(h, 24);
    if (payload_offset != 128) return reject("payload_offset", payload_offset, "128");
    uint64_t payload_len = u64_at(h, 32);
    if (payload_len != segment_size - payload_offset)
        return reject("payload_len", payload_len, "segment_size - payload_offset");
    if (u32_at(h, 40) != 1) return reject("kind", u32_at(h, 40), "1 (a record)");
    if (u32_at(h, 44) != 1) return reject("kind_version", u32_at(h, 44), "1");
    if (u64_at(h, 48) != sizeof(struct MyData))
        return reject("schema_size", u64_at(h, 48), "24 (MyData)");
    if (u64_at(h, 56) != 8) return reject("schema_align", u64_at(h, 56), "8");
    if (u32_at(h, 64) != 1) return reject("schema_version", u32_at(h, 64), "1");
    uint32_t name_len = u32_at(h, 68);
    if (name_len != 6 || memcmp(h + 72, "MyData", 6) != 0)
        return reject("schema_name_len", name_len, "6 with schema_name \"MyData\"");
    if (payload_len < sizeof(struct MyData))
        return reject("payload_len", payload_len, "at least 24");

    /* Step 3: the record at payload_offset, copied out. */
    struct MyData d;
    memcpy(&d, base + payload_offset, sizeof d);
    printf("MyData { col1: %llu, col2: %llu, col3: %llu } (creator pid %u)\n",
           (unsigned long long)d.col1, (unsigned long long)d.col2,
           (unsigned long long)d.col3, u32_at(h, 112));
    munmap((void *)base, mapped);
    close(fd);
    return 0;
}
