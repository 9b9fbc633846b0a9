/* The O_DIRECT writer (directw.c): a member handed over in blocks of any size ends up in the
 * file exactly, the writer takes every byte but the last block and nothing after a gap, the
 * bytes it wrote are not in the page cache (they went past it), a file system's refusal of
 * an unaligned O_DIRECT write becomes ordinary writes, and a failed write is reported at the end.
 *
 * The file lives in the current directory (ext4, as the repository's own): it must take
 * O_DIRECT for the page-cache check to mean anything. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "directw.h"
#include "error.h"

#define MB ((uint64_t)1 << 20)

static void fill(unsigned char *b, size_t n, uint64_t from)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)((from + i) * 131 + (from + i) / 4093);
}

/* A new empty file in the current directory, opened with O_DIRECT as the layer code does (and
 * a plain fd on it, as libarchive's own), already unlinked. */
static int new_file(int *plain)
{
	char name[] = "ud-test-directw.XXXXXX";
	int fd = mkstemp(name);
	assert_true(fd >= 0);
	int d = open(name, O_WRONLY | O_DIRECT | O_CLOEXEC);
	if (d < 0)
		fail_msg(
			"O_DIRECT refused here (errno %d): the test needs a file system that takes it",
			errno);
	assert_int_equal(unlink(name), 0);
	*plain = fd;
	return d;
}

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

static void assert_content(int fd, uint64_t size)
{
	static unsigned char want[1 << 20], back[1 << 20];
	for (uint64_t off = 0; off < size; off += sizeof(back)) {
		size_t n = size - off < sizeof(back) ? (size_t)(size - off) : sizeof(back);
		fill(want, n, off);
		assert_int_equal(pread(fd, back, n, (off_t)off), (ssize_t)n);
		if (memcmp(want, back, n))
			fail_msg("the file differs from what was handed over near offset %llu",
				 (unsigned long long)off);
	}
}

/* Hands size bytes over in blocks of varied sizes, writing through plain what the writer does
 * not take, as the layer code does; returns how many it took. */
static uint64_t hand(ud_directw *w, int plain, uint64_t size)
{
	static const size_t sizes[] = {65536, 1, 4096, 300000, 511, 1 << 20, 12345, 3 << 20};
	static unsigned char block[3 << 20];
	uint64_t taken = 0;
	for (uint64_t off = 0, k = 0; off < size; k++) {
		size_t n = sizes[k % (sizeof(sizes) / sizeof(sizes[0]))];
		if (n > size - off)
			n = (size_t)(size - off);
		fill(block, n, off);
		size_t t = ud_directw_put(w, block, n, off);
		assert_true(t <= n);
		if (t < n)
			assert_int_equal(pwrite(plain, block + t, n - t, (off_t)(off + t)),
					 (ssize_t)(n - t));
		taken += t;
		off += n;
	}
	return taken;
}

static void check_size(uint64_t size)
{
	int plain;
	int fd = new_file(&plain);
	ud_directw *w = NULL;
	assert_int_equal(ud_directw_start(&w, NULL), 0);
	ud_directw_file(w, fd, size);
	uint64_t taken = hand(w, plain, size);
	ud_error e = {0};
	assert_int_equal(ud_directw_end(w, &e), 0);
	ud_directw_stop(w);
	assert_int_equal(taken, (size - 1) / UD_DIRECTW_ALIGN * UD_DIRECTW_ALIGN);
	/* Only the caller's last block went through the page cache. */
	if (resident(plain, size) > UD_DIRECTW_ALIGN)
		fail_msg("%llu bytes of the file in the page cache: not written with O_DIRECT",
			 (unsigned long long)resident(plain, size));
	assert_content(plain, size);
	close(fd);
	close(plain);
}

static void test_content_exact(void **state)
{
	(void)state;
	check_size(9 * MB + 123); /* a partial last block */
	check_size(5 * MB);	  /* a whole one: still the caller's */
	check_size(4097);
}

/* Out of order: what was taken before the gap (a length O_DIRECT refuses) is written the
 * ordinary way, and nothing after it is taken. */
static void test_gap(void **state)
{
	(void)state;
	const uint64_t size = 4 * MB;
	static unsigned char block[1 << 20];
	int plain;
	int fd = new_file(&plain);
	ud_directw *w = NULL;
	assert_int_equal(ud_directw_start(&w, NULL), 0);
	ud_directw_file(w, fd, size);
	fill(block, 10000, 0);
	assert_int_equal(ud_directw_put(w, block, 10000, 0), 10000);
	fill(block, sizeof(block), 20000);
	assert_int_equal(ud_directw_put(w, block, sizeof(block), 20000), 0);
	fill(block, 10000, 10000);
	assert_int_equal(ud_directw_put(w, block, 10000, 10000), 0);
	ud_error e = {0};
	assert_int_equal(ud_directw_end(w, &e), 0);
	ud_directw_stop(w);
	assert_int_equal(pwrite(plain, block, 10000, 10000), 10000);
	assert_content(plain, 20000);
	close(fd);
	close(plain);
}

/* A write that fails (here: an fd not open for writing) is the end's error, with its errno; the
 * writer then serves the next file as new. */
static void test_failure_reported(void **state)
{
	(void)state;
	static unsigned char block[1 << 20];
	int plain;
	int fd = new_file(&plain);
	ud_directw *w = NULL;
	assert_int_equal(ud_directw_start(&w, NULL), 0);
	int ro = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(ro >= 0);
	ud_directw_file(w, ro, 8 * MB);
	for (uint64_t off = 0; off < 4 * MB; off += sizeof(block))
		assert_int_equal(ud_directw_put(w, block, sizeof(block), off), sizeof(block));
	ud_error e = {0};
	assert_int_equal(ud_directw_end(w, &e), -1);
	assert_int_equal(e.errnum, EBADF);
	assert_non_null(strstr(e.msg, "writing it"));
	close(ro);
	ud_directw_file(w, fd, 2 * MB);
	fill(block, sizeof(block), 0);
	assert_int_equal(ud_directw_put(w, block, sizeof(block), 0), sizeof(block));
	assert_int_equal(ud_directw_end(w, &e), 0);
	ud_directw_stop(w);
	assert_content(plain, MB);
	close(fd);
	close(plain);
}

/* A stop with a file half written (the layer failed elsewhere) lets everything go. */
static void test_stop_midway(void **state)
{
	(void)state;
	static unsigned char block[1 << 20];
	int plain;
	int fd = new_file(&plain);
	ud_directw *w = NULL;
	assert_int_equal(ud_directw_start(&w, NULL), 0);
	ud_directw_file(w, fd, 16 * MB);
	for (uint64_t off = 0; off < 5 * MB; off += sizeof(block))
		ud_directw_put(w, block, sizeof(block), off);
	ud_directw_stop(w);
	ud_directw_stop(NULL);
	close(fd);
	close(plain);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_content_exact),
		cmocka_unit_test(test_gap),
		cmocka_unit_test(test_failure_reported),
		cmocka_unit_test(test_stop_midway),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
