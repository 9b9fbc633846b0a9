/* The helper's few threads (prefetch.c, hasher.c) start with every signal blocked: signals
 * stay the main thread's, whose handlers and waits were written for a process of one thread.
 * Every thread is joined before the helper forks, unshares or execs. */
#ifndef UD_THREAD_H
#define UD_THREAD_H

#include <pthread.h>
#include <signal.h>

/* pthread_create() with every signal blocked in the new thread; 0 or an errno value. */
static inline int ud_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* the new thread inherits this mask */
	int err = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return err;
}

#endif
