// Files, where only C can do it safely:
// - SIGBUS while reading a memory-mapped file (it was truncated or replaced while sdflow had it
//   mapped) becomes a clear error naming the file instead of a crash. The table of mappings is
//   written by MappedFile (under its own lock) and only read by the signal handler, which uses
//   nothing but write(2) and _exit(2), both safe in a handler.
// - Unnamed new files (O_TMPFILE) for AtomicFile.
#define _GNU_SOURCE  // O_TMPFILE
#include "CKernels.h"

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define SDF_MAX_MAPPINGS 512

typedef struct {
    uintptr_t start, end;
    char path[1024];
    volatile int used;
} sdf_mapping;

static sdf_mapping mappings[SDF_MAX_MAPPINGS];

void sdf_mapping_register(const void *start, unsigned long size, const char *path) {
    for (int i = 0; i < SDF_MAX_MAPPINGS; i++) {
        if (mappings[i].used) continue;
        mappings[i].start = (uintptr_t)start;
        mappings[i].end = (uintptr_t)start + size;
        strncpy(mappings[i].path, path, sizeof mappings[i].path - 1);
        mappings[i].path[sizeof mappings[i].path - 1] = 0;
        __atomic_store_n(&mappings[i].used, 1, __ATOMIC_RELEASE);
        return;
    }
}

void sdf_mapping_unregister(const void *start) {
    for (int i = 0; i < SDF_MAX_MAPPINGS; i++) {
        if (mappings[i].used && mappings[i].start == (uintptr_t)start) __atomic_store_n(&mappings[i].used, 0, __ATOMIC_RELEASE);
    }
}

static void say(const char *text) { (void)!write(2, text, strlen(text)); }

static void sdf_sigbus(int signal, siginfo_t *info, void *context) {
    (void)signal;
    (void)context;
    uintptr_t address = (uintptr_t)info->si_addr;
    const char *path = NULL;
    for (int i = 0; i < SDF_MAX_MAPPINGS; i++) {
        if (__atomic_load_n(&mappings[i].used, __ATOMIC_ACQUIRE) && mappings[i].start <= address && address < mappings[i].end) {
            path = mappings[i].path;
            break;
        }
    }
    say("\nerror: ");
    if (path) {
        say(path);
        say(": the file changed while sdflow was reading it (truncated or replaced?)");
    } else {
        say("a memory-mapped file could not be read (SIGBUS)");
    }
    say("; the outputs and cache entries written so far are whole. Run again once the file is complete.\n");
    _exit(1);
}

void sdf_install_sigbus_handler(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = sdf_sigbus;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    sigaction(SIGBUS, &action, NULL);
}

int sdf_open_anonymous_file(const char *folder) {
#ifdef O_TMPFILE
    return open(folder, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
#else
    (void)folder;
    return -1;
#endif
}
