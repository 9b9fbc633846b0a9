# uwsgi-docker — build, install, test, demo, bench.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
CC ?= cc
PKG_CONFIG ?= pkg-config
PYTHON ?= /usr/bin/python3

VERSION := 0.1.0
B := build

PKGS := libcurl json-c libarchive libcrypto
CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wformat=2 -fstack-protector-strong \
	  -DUD_VERSION='"$(VERSION)"' $(shell $(PKG_CONFIG) --cflags $(PKGS))
# libarchive is dlopen()ed by export.c when an image is exported: not linked, only its header.
LDLIBS += $(shell $(PKG_CONFIG) --libs $(filter-out libarchive,$(PKGS))) -ldl

ifeq ($(SANITIZE),1)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
B := build-san
endif

LIB_SRCS := src/error.c src/docker.c src/plan.c src/rootfs.c src/handoff.c src/export.c src/caps.c src/rwpath.c
LIB_OBJS := $(LIB_SRCS:src/%.c=$(B)/obj/%.o)
HELPER := $(B)/uwsgi-docker-rootfs

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)

UWSGI ?= uwsgi
PLUGIN := $(B)/docker_plugin.so
# uWSGI's plugin directory, from its build flags: -DUWSGI_PLUGIN_DIR="\"/usr/lib/uwsgi/plugins\""
PLUGIN_DIR ?= $(shell $(UWSGI) --cflags 2>/dev/null | sed -n 's/.*-DUWSGI_PLUGIN_DIR=[\\"]*\([^\\"]*\).*/\1/p')

.PHONY: all install deps check check-clang check-unit check-integration demo bench clean format
all: $(HELPER) $(PLUGIN)

# The plugin is compiled directly against the running uWSGI's own header and flags
# (uwsgi --dot-h, uwsgi --cflags): the same thing `uwsgi --build-plugin` does, without
# needing uWSGI's source tree. handoff.c is shared with the helper.
$(B)/uwsgi.h:
	@mkdir -p $(dir $@)
	$(UWSGI) --dot-h > $@

$(PLUGIN): hooks/docker/docker_plugin.c src/handoff.c src/error.c src/handoff.h src/error.h $(B)/uwsgi.h
	$(CC) $$($(UWSGI) --cflags) -D_GNU_SOURCE -Werror -I$(B) -Isrc -fPIC -shared -o $@ \
		hooks/docker/docker_plugin.c src/handoff.c src/error.c

$(B)/obj/%.o: src/%.c $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(HELPER): $(LIB_OBJS) $(B)/obj/main.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/tests/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc -DFIXTURES='"$(CURDIR)/tests/fixtures"' -o $@ $^ $(LDFLAGS) $(LDLIBS) -lcmocka

install: $(HELPER) $(PLUGIN)
	@test -n "$(PLUGIN_DIR)" || { echo "install: uWSGI's plugin directory is unknown: set PLUGIN_DIR" >&2; exit 1; }
	install -D -m 0755 $(HELPER) $(DESTDIR)$(BINDIR)/uwsgi-docker-rootfs
	install -D -m 0644 $(PLUGIN) $(DESTDIR)$(PLUGIN_DIR)/docker_plugin.so
	install -D -m 0644 man/uwsgi-docker-rootfs.1 $(DESTDIR)$(MANDIR)/man1/uwsgi-docker-rootfs.1
	install -D -m 0644 man/uwsgi-plugin-docker.7 $(DESTDIR)$(MANDIR)/man7/uwsgi-plugin-docker.7

# Installs missing Debian packages and starts dockerd if none answers (idempotent, quick when done).
deps:
	bash scripts/deps.sh

check: deps
	$(MAKE) check-clang check-unit check-integration

# Warnings-clean under clang too (gcc builds everything above).
check-clang: $(B)/uwsgi.h
	@for f in src/*.c tests/unit/*.c; do \
		clang -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wformat=2 -DUD_VERSION='"x"' \
			-DFIXTURES='"x"' -Isrc $(shell $(PKG_CONFIG) --cflags $(PKGS)) -fsyntax-only $$f || exit 1; \
	done
	clang $$($(UWSGI) --cflags) -D_GNU_SOURCE -Werror -I$(B) -Isrc -fsyntax-only hooks/docker/docker_plugin.c
	@echo "clang: warnings-clean"


check-unit: $(UNIT_BINS)
	@rc=0; for t in $(UNIT_BINS); do echo "== $$t"; $$t || rc=1; done; exit $$rc

check-integration: $(HELPER) $(PLUGIN)
	UD_HELPER=$(CURDIR)/$(HELPER) $(PYTHON) -m pytest -v -rs tests/integration

demo: deps
	$(MAKE) all
	bash scripts/demo.sh $(CURDIR)/$(HELPER)

bench: deps
	$(MAKE) all
	bash scripts/bench.sh $(CURDIR)/$(HELPER)

format:
	clang-format -i src/*.c src/*.h tests/unit/*.c

clean:
	rm -rf build build-san
