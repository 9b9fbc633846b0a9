/* The prefault thread (prefault.c): a file written while the thread runs ahead of the writer
 * holds exactly what was written, the thread puts pages in the page cache but never more than
 * UD_PREFAULT_AHEAD beyond the writer, and an end or a stop at any point lets the file go.
 *
 * Residency is read with mincore(2) on a mapping of the file, which needs a filesystem whose
 * readahead fills holes with cached pages (ext4, as the repository's own; not tmpfs): the file
 * lives in the current directory. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "prefault.h"

#define MB ((uint64_t)1 << 20)

static void fill(unsigned char *b, size_t n, uint64_t from)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)((from + i) * 131 + (from + i) / 4093);
}

/* A new empty file in the current directory, already unlinked. */
static int new_file(void)
{
	char name[] = "ud-test-prefault.XXXXXX";
	int fd = mkstemp(name);
	assert_true(fd >= 0);
	assert_int_equal(unlink(name), 0);
	return fd;
}

/* Bytes of fd's first `size` bytes that are in the page cache. */
static uint64_t resident(int fd, uint64_t size)
{
	long page = sysconf(_SC_PAGESIZE);
	void *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(m != MAP_FAILED);
	size_t pages = (size + (uint64_t)page - 1) / (uint64_t)page;
	unsigned char *vec = malloc(pages);
	assert_non_null(vec);
	assert_int_equal(mincore(m, size, vec), 0);
	uint64_t n = 0;
	for (size_t i = 0; i < pages; i++)
		n += vec[i] & 1;
	free(vec);
	munmap(m, size);
	return n * (uint64_t)page;
}

/* Waits (at most 10 s) until the residency stops growing for 300 ms; returns it. */
static uint64_t settled(int fd, uint64_t size)
{
	uint64_t last = resident(fd, size);
	int still = 0;
	for (int i = 0; i < 1000 && still < 30; i++) {
		nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
		uint64_t now = resident(fd, size);
		still = now == last ? still + 1 : 0;
		last = now;
	}
	return last;
}

static void test_content_exact(void **state)
{
	(void)state;
	/* Past the reach, so that the thread waits for the writer and is woken again. */
	const uint64_t size = UD_PREFAULT_AHEAD + 9 * MB + 123;
	static const size_t sizes[] = {65536, 1, 4096, 300000, 511, 1 << 20, 12345};
	static unsigned char block[1 << 20], back[1 << 20];
	int fd = new_file();
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	ud_prefault *p = NULL;
	assert_int_equal(ud_prefault_start(&p, NULL), 0);
	/* Written before the thread starts, as when the writer outruns it: the thread goes over
	 * these pages too, and they must keep what was written. */
	uint64_t off = 0;
	for (; off < 8 * MB; off += sizeof(block)) {
		fill(block, sizeof(block), off);
		assert_int_equal(pwrite(fd, block, sizeof(block), (off_t)off),
				 (ssize_t)sizeof(block));
	}
	ud_prefault_file(p, fd, size);
	for (unsigned k = 0; off < size; k++) {
		size_t n = sizes[k % (sizeof(sizes) / sizeof(sizes[0]))];
		if (n > size - off)
			n = (size_t)(size - off);
		fill(block, n, off);
		assert_int_equal(pwrite(fd, block, n, (off_t)off), (ssize_t)n);
		off += n;
		ud_prefault_progress(p, off);
	}
	ud_prefault_end(p);
	ud_prefault_stop(p);
	for (off = 0; off < size; off += sizeof(back)) {
		size_t n = size - off < sizeof(back) ? (size_t)(size - off) : sizeof(back);
		fill(block, n, off);
		assert_int_equal(pread(fd, back, n, (off_t)off), (ssize_t)n);
		if (memcmp(block, back, n))
			fail_msg("the file differs from what was written near offset %llu",
				 (unsigned long long)off);
	}
	close(fd);
}

static void test_stays_within_reach(void **state)
{
	(void)state;
	const uint64_t size = 3 * UD_PREFAULT_AHEAD;
	/* readahead(2) rounds to the page cache's folios: a little slack beyond the reach. */
	const uint64_t slack = 4 * MB;
	int fd = new_file();
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	ud_prefault *p = NULL;
	assert_int_equal(ud_prefault_start(&p, NULL), 0);
	ud_prefault_file(p, fd, size);
	uint64_t got = settled(fd, size);
	if (got < UD_PREFAULT_AHEAD / 2)
		fail_msg("only %llu bytes cached with the writer at 0: the thread did not run "
			 "ahead (a filesystem whose readahead fills no holes?)",
			 (unsigned long long)got);
	if (got > UD_PREFAULT_AHEAD + slack)
		fail_msg("%llu bytes cached with the writer at 0: past the reach",
			 (unsigned long long)got);
	ud_prefault_progress(p, UD_PREFAULT_AHEAD);
	got = settled(fd, size);
	if (got < UD_PREFAULT_AHEAD + UD_PREFAULT_AHEAD / 2 || got > 2 * UD_PREFAULT_AHEAD + slack)
		fail_msg("%llu bytes cached with the writer at %llu", (unsigned long long)got,
			 (unsigned long long)UD_PREFAULT_AHEAD);
	ud_prefault_end(p);
	/* Let go: progress no longer moves it. */
	ud_prefault_progress(p, size);
	uint64_t after = settled(fd, size);
	assert_true(after <= got + slack);
	ud_prefault_stop(p);
	/* Holes stay holes: readahead caches zeros, it allocates no blocks. */
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 < MB);
	close(fd);
}

static void test_end_and_stop_anytime(void **state)
{
	(void)state;
	ud_prefault *p = NULL;
	assert_int_equal(ud_prefault_start(&p, NULL), 0);
	ud_prefault_stop(p); /* never handed a file */
	int fd = new_file();
	const uint64_t size = 2 * UD_PREFAULT_AHEAD;
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	assert_int_equal(ud_prefault_start(&p, NULL), 0);
	for (int i = 0; i < 20; i++) { /* ended at once, many times over */
		ud_prefault_file(p, fd, size);
		ud_prefault_end(p);
	}
	ud_prefault_file(p, fd, size);
	ud_prefault_stop(p); /* stopped mid-file, not ended */
	/* A file that cannot be read ahead (a pipe): the thread gives up on it, no hang. */
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(ud_prefault_start(&p, NULL), 0);
	ud_prefault_file(p, pfd[0], size);
	ud_prefault_progress(p, size);
	ud_prefault_end(p);
	ud_prefault_stop(p);
	ud_prefault_stop(NULL);
	close(pfd[0]);
	close(pfd[1]);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_content_exact),
		cmocka_unit_test(test_stays_within_reach),
		cmocka_unit_test(test_end_and_stop_anytime),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
