/*
 * hvprobe: in-guest micro-benchmarks that explain virtualization overhead.
 *
 * Each probe times many repetitions of one operation with CLOCK_MONOTONIC, in
 * batches, and reports the median batch as time per operation. Output is one
 * line per probe, for hvbench's parser:
 *
 *     hvprobe <name> <value> <unit>
 *
 * Usage: hvprobe [--scale F] [--max-chase-mib N] [--array-mib N] [PROBE...]
 *        (default: all probes; --scale multiplies iteration counts)
 * Built by hvbench with: cc -O2 -pthread -o hvprobe hvprobe.c
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#define BATCHES 7

static double scale = 1.0;
static long max_chase_mib = 256;
static long array_mib = 32;

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values, int n) {
    qsort(values, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

static long iterations(long base) {
    long n = (long)((double)base * scale);
    return n < 1 ? 1 : n;
}

static void report(const char *name, double value, const char *unit) {
    printf("hvprobe %s %.3f %s\n", name, value, unit);
    fflush(stdout);
}

/* Time `op` repeated n times per batch; report the median ns per operation. */
#define PROBE_LOOP(name, base, body)                                   \
    do {                                                               \
        long n_ = iterations(base);                                    \
        double batch_[BATCHES];                                        \
        for (int b_ = 0; b_ < BATCHES; b_++) {                         \
            double t0_ = now_ns();                                     \
            for (long i_ = 0; i_ < n_; i_++) { body; }                 \
            batch_[b_] = (now_ns() - t0_) / (double)n_;                \
        }                                                              \
        report(name, median(batch_, BATCHES), "ns");                   \
    } while (0)

static volatile uint64_t sink;

static void probe_cpuid(void) {
    unsigned a, b, c, d;
    PROBE_LOOP("cpuid", 20000, { __cpuid(0, a, b, c, d); sink += a + b + c + d; });
}

static void probe_rdtsc(void) {
    PROBE_LOOP("rdtsc", 200000, { sink += __rdtsc(); });
}

static void probe_rdtscp(void) {
    unsigned aux;
    PROBE_LOOP("rdtscp", 200000, { sink += __rdtscp(&aux); });
}

static void probe_syscall(void) {
    PROBE_LOOP("syscall", 100000, { sink += (uint64_t)syscall(SYS_getppid); });
}

static void probe_clock_gettime(void) {
    struct timespec ts;
    PROBE_LOOP("clock_gettime", 100000, { clock_gettime(CLOCK_MONOTONIC, &ts); sink += (uint64_t)ts.tv_nsec; });
}

static void probe_gettimeofday(void) {
    struct timeval tv;
    PROBE_LOOP("gettimeofday", 100000, { gettimeofday(&tv, NULL); sink += (uint64_t)tv.tv_usec; });
}

static void probe_page_fault(void) {
    long page = sysconf(_SC_PAGESIZE);
    long pages = iterations(4096);
    double batch[BATCHES];
    for (int b = 0; b < BATCHES; b++) {
        char *area = mmap(NULL, (size_t)(pages * page), PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (area == MAP_FAILED) { perror("mmap"); exit(2); }
        double t0 = now_ns();
        for (long i = 0; i < pages; i++) area[i * page] = 1;
        batch[b] = (now_ns() - t0) / (double)pages;
        munmap(area, (size_t)(pages * page));
    }
    report("page_fault", median(batch, BATCHES), "ns");
}

static void probe_mmap(void) {
    PROBE_LOOP("mmap_munmap", 20000, {
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) { perror("mmap"); exit(2); }
        munmap(p, 4096);
    });
}

static void probe_pipe_switch(void) {
    int ping[2], pong[2];
    if (pipe(ping) || pipe(pong)) { perror("pipe"); exit(2); }
    pid_t child = fork();
    if (child < 0) { perror("fork"); exit(2); }
    if (child == 0) {
        char c;
        close(ping[1]);
        close(pong[0]);
        while (read(ping[0], &c, 1) == 1) {
            if (write(pong[1], &c, 1) != 1) _exit(1);
        }
        _exit(0);
    }
    close(ping[0]);
    close(pong[1]);
    char c = 'x';
    /* one round trip = two context switches */
    long n = iterations(10000);
    double batch[BATCHES];
    for (int b = 0; b < BATCHES; b++) {
        double t0 = now_ns();
        for (long i = 0; i < n; i++) {
            if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1) { perror("pipe io"); exit(2); }
        }
        batch[b] = (now_ns() - t0) / (double)n / 2;
    }
    close(ping[1]);
    close(pong[0]);
    waitpid(child, NULL, 0);
    report("context_switch", median(batch, BATCHES), "ns");
}

static void probe_fork(void) {
    PROBE_LOOP("fork_wait", 300, {
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        waitpid(pid, NULL, 0);
    });
}

static void *nothing(void *arg) { return arg; }

static void probe_thread(void) {
    PROBE_LOOP("thread_create_join", 2000, {
        pthread_t t;
        pthread_create(&t, NULL, nothing, NULL);
        pthread_join(t, NULL);
    });
}

static atomic_int futex_word;
static long futex_rounds;

static long futex_call(atomic_int *addr, int op, int value) {
    return syscall(SYS_futex, addr, op, value, NULL, NULL, 0);
}

static void *futex_partner(void *arg) {
    (void)arg;
    for (long i = 0; i < futex_rounds; i++) {
        while (atomic_load(&futex_word) != 1) futex_call(&futex_word, FUTEX_WAIT_PRIVATE, 0);
        atomic_store(&futex_word, 0);
        futex_call(&futex_word, FUTEX_WAKE_PRIVATE, 1);
    }
    return NULL;
}

static void probe_futex(void) {
    /* Two threads hand a token back and forth: a wake-up across CPUs when there are two. */
    futex_rounds = iterations(5000) * BATCHES;
    atomic_store(&futex_word, 0);
    pthread_t partner;
    pthread_create(&partner, NULL, futex_partner, NULL);
    long n = futex_rounds / BATCHES;
    double batch[BATCHES];
    for (int b = 0; b < BATCHES; b++) {
        double t0 = now_ns();
        for (long i = 0; i < n; i++) {
            atomic_store(&futex_word, 1);
            futex_call(&futex_word, FUTEX_WAKE_PRIVATE, 1);
            while (atomic_load(&futex_word) != 0) futex_call(&futex_word, FUTEX_WAIT_PRIVATE, 1);
        }
        batch[b] = (now_ns() - t0) / (double)n / 2;
    }
    pthread_join(partner, NULL);
    report("futex_wake", median(batch, BATCHES), "ns");
}

static void probe_bandwidth(void) {
    /* STREAM-like kernels written here; arrays of --array-mib each (default 32 MiB,
     * at least 4x the last-level cache of common CPUs). */
    size_t count = (size_t)array_mib * (1u << 20) / sizeof(double);
    double *a = malloc(count * sizeof(double)), *b = malloc(count * sizeof(double)),
           *c = malloc(count * sizeof(double));
    if (!a || !b || !c) { perror("malloc"); exit(2); }
    for (size_t i = 0; i < count; i++) { a[i] = 1.0; b[i] = 2.0; c[i] = 0.0; }
    const char *names[4] = {"mem_copy", "mem_scale", "mem_add", "mem_triad"};
    const double bytes[4] = {16, 16, 24, 24};
    for (int k = 0; k < 4; k++) {
        double batch[BATCHES];
        for (int r = 0; r < BATCHES; r++) {
            double t0 = now_ns();
            switch (k) {
            case 0: for (size_t i = 0; i < count; i++) c[i] = a[i]; break;
            case 1: for (size_t i = 0; i < count; i++) b[i] = 3.0 * c[i]; break;
            case 2: for (size_t i = 0; i < count; i++) c[i] = a[i] + b[i]; break;
            default: for (size_t i = 0; i < count; i++) a[i] = b[i] + 3.0 * c[i]; break;
            }
            double seconds = (now_ns() - t0) / 1e9;
            batch[r] = bytes[k] * (double)count / seconds / 1e6;
        }
        report(names[k], median(batch, BATCHES), "MB/s");
    }
    sink += (uint64_t)(a[count / 2] + b[count / 3] + c[count / 5]);
    free(a); free(b); free(c);
}

static void probe_chase(void) {
    /* Pointer chasing through a random cycle: latency per load from L1 to DRAM/TLB. */
    static const long sizes_kib[] = {16, 256, 4096, 65536, 262144, 1048576};
    long page_kib = sysconf(_SC_PAGESIZE) / 1024;
    for (size_t s = 0; s < sizeof(sizes_kib) / sizeof(sizes_kib[0]); s++) {
        long kib = sizes_kib[s];
        if (kib > max_chase_mib * 1024) break;
        long available_kib = sysconf(_SC_AVPHYS_PAGES) * page_kib;
        if (kib > available_kib / 4 * 3) {  /* a small guest: stop before the OOM killer */
            for (; s < sizeof(sizes_kib) / sizeof(sizes_kib[0]); s++)
                if (sizes_kib[s] <= max_chase_mib * 1024)
                    printf("hvprobe-skip mem_latency_%ldk only %ld KiB free\n", sizes_kib[s],
                           available_kib);
            break;
        }
        size_t slots = (size_t)kib * 1024 / sizeof(void *);
        void **ring = malloc(slots * sizeof(void *));
        if (!ring) { perror("malloc"); exit(2); }
        /* Sattolo's shuffle of the identity: one cycle through every slot, in place */
        for (size_t i = 0; i < slots; i++) ring[i] = &ring[i];
        unsigned long long seed = 42;
        for (size_t i = slots - 1; i > 0; i--) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t j = (size_t)(seed >> 33) % i;
            void *t = ring[i]; ring[i] = ring[j]; ring[j] = t;
        }
        void **p = ring;
        long n = iterations(2000000);
        double batch[BATCHES];
        for (int b = 0; b < BATCHES; b++) {
            double t0 = now_ns();
            for (long i = 0; i < n; i++) p = (void **)*p;
            batch[b] = (now_ns() - t0) / (double)n;
        }
        sink += (uint64_t)(uintptr_t)p;
        char name[64];
        snprintf(name, sizeof name, "mem_latency_%ldk", kib);
        report(name, median(batch, BATCHES), "ns");
        free(ring);
    }
}

struct probe { const char *name; void (*run)(void); };
static const struct probe probes[] = {
    {"cpuid", probe_cpuid}, {"rdtsc", probe_rdtsc}, {"rdtscp", probe_rdtscp},
    {"syscall", probe_syscall}, {"clock_gettime", probe_clock_gettime},
    {"gettimeofday", probe_gettimeofday}, {"page_fault", probe_page_fault},
    {"mmap_munmap", probe_mmap}, {"context_switch", probe_pipe_switch},
    {"fork_wait", probe_fork}, {"thread_create_join", probe_thread},
    {"futex_wake", probe_futex}, {"bandwidth", probe_bandwidth}, {"mem_latency", probe_chase},
};

int main(int argc, char **argv) {
    int chosen = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--scale") == 0 && i + 1 < argc) {
            scale = atof(argv[++i]);
            if (scale <= 0) { fprintf(stderr, "hvprobe: --scale must be positive\n"); return 2; }
        } else if (strcmp(argv[i], "--max-chase-mib") == 0 && i + 1 < argc) {
            max_chase_mib = atol(argv[++i]);
        } else if (strcmp(argv[i], "--array-mib") == 0 && i + 1 < argc) {
            array_mib = atol(argv[++i]);
            if (array_mib < 1) { fprintf(stderr, "hvprobe: --array-mib must be >= 1\n"); return 2; }
        } else {
            argv[++chosen] = argv[i];
        }
    }
    printf("hvprobe-begin %d\n", (int)(sizeof probes / sizeof probes[0]));
    for (size_t p = 0; p < sizeof probes / sizeof probes[0]; p++) {
        int wanted = chosen == 0;
        for (int i = 1; i <= chosen; i++) wanted |= strcmp(argv[i], probes[p].name) == 0;
        if (wanted) probes[p].run();
    }
    for (int i = 1; i <= chosen; i++) {
        int known = 0;
        for (size_t p = 0; p < sizeof probes / sizeof probes[0]; p++)
            known |= strcmp(argv[i], probes[p].name) == 0;
        if (!known) { fprintf(stderr, "hvprobe: unknown probe %s\n", argv[i]); return 2; }
    }
    printf("hvprobe-end\n");
    return 0;
}
