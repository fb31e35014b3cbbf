/* An LD_PRELOAD shim for the truncation tests (tests/cli_truncation.rs): it shrinks one
 * file at a chosen moment of the reading process, so that what a reader does when a
 * file is cut under it can be tested deterministically instead of by racing a thread.
 *
 * Environment:
 *   PTEKIT_CUT_PATH   the file to shrink: the file this path names when the process
 *                     starts (by device and inode, so another name of it counts, and a
 *                     file renamed over the path later does not);
 *   PTEKIT_CUT_AFTER  "mmap" (right after a successful mmap/mmap64 of the file) or
 *                     "preadN" (right after the N-th successful pread/pread64 of it,
 *                     counting from 1);
 *   PTEKIT_CUT_TO     the length the file is cut to, in bytes;
 *   PTEKIT_CUT_LOG    optional: a file to which one line is appended when the cut is
 *                     made ("cut mmap" or "cut preadN"), so the test knows it happened.
 *
 * The cut is made once per process, with ftruncate(2) on the file reopened for writing
 * through /proc/self/fd (the reader's own descriptor may be read-only). Reading a
 * mapped page past the new end of the file then raises SIGBUS, and the following preads
 * see the shorter file. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static int cut_done;
static long preads_seen;
static int have_target;
static dev_t target_dev;
static ino_t target_ino;

__attribute__((constructor)) static void find_target(void) {
    const char *path = getenv("PTEKIT_CUT_PATH");
    struct stat st;
    if (path != NULL && stat(path, &st) == 0) {
        have_target = 1;
        target_dev = st.st_dev;
        target_ino = st.st_ino;
    }
}

/* Whether descriptor `fd` is the file PTEKIT_CUT_PATH named at start. */
static int is_target(int fd) {
    struct stat st;
    if (!have_target || fd < 0 || fstat(fd, &st) != 0) {
        return 0;
    }
    return st.st_dev == target_dev && st.st_ino == target_ino;
}

/* Cuts the file open as `fd` to PTEKIT_CUT_TO bytes. */
static void cut(int fd, const char *event) {
    const char *to = getenv("PTEKIT_CUT_TO");
    const char *log = getenv("PTEKIT_CUT_LOG");
    char self[64];
    int w;
    cut_done = 1;
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    w = open(self, O_WRONLY);
    if (w < 0 || to == NULL) {
        return;
    }
    if (ftruncate(w, (off_t)strtoll(to, NULL, 10)) == 0 && log != NULL) {
        FILE *f = fopen(log, "a");
        if (f != NULL) {
            fprintf(f, "cut %s\n", event);
            fclose(f);
        }
    }
    close(w);
}

/* Called after a successful mapping or read of `fd`: cuts the file if this is the
 * event PTEKIT_CUT_AFTER names. */
static void after_mmap(int fd) {
    const char *when = getenv("PTEKIT_CUT_AFTER");
    if (!cut_done && when != NULL && strcmp(when, "mmap") == 0 && is_target(fd)) {
        cut(fd, "mmap");
    }
}

static void after_pread(int fd) {
    const char *when = getenv("PTEKIT_CUT_AFTER");
    char event[32];
    if (cut_done || when == NULL || strncmp(when, "pread", 5) != 0 || !is_target(fd)) {
        return;
    }
    preads_seen += 1;
    if (preads_seen == strtol(when + 5, NULL, 10)) {
        snprintf(event, sizeof event, "pread%ld", preads_seen);
        cut(fd, event);
    }
}

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef ssize_t (*pread_fn)(int, void *, size_t, off_t);

static void *call_mmap(const char *name, void *addr, size_t len, int prot, int flags, int fd,
                       off_t off) {
    mmap_fn real = (mmap_fn)dlsym(RTLD_NEXT, name);
    void *p = real(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED) {
        after_mmap(fd);
    }
    return p;
}

static ssize_t call_pread(const char *name, int fd, void *buf, size_t n, off_t off) {
    pread_fn real = (pread_fn)dlsym(RTLD_NEXT, name);
    ssize_t got = real(fd, buf, n, off);
    if (got > 0) {
        after_pread(fd);
    }
    return got;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    return call_mmap("mmap", addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    return call_mmap("mmap64", addr, len, prot, flags, fd, off);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off) {
    return call_pread("pread", fd, buf, n, off);
}

ssize_t pread64(int fd, void *buf, size_t n, off_t off) {
    return call_pread("pread64", fd, buf, n, off);
}
