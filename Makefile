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

PKGS := libcurl json-c libarchive libcrypto mount
CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -pthread -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wformat=2 -fstack-protector-strong \
	  -DUD_VERSION='"$(VERSION)"' $(shell $(PKG_CONFIG) --cflags $(PKGS))
# libarchive, libmount, libcurl and libcrypto are dlopen()ed (la.c when an image is exported, lm.c
# by --gc, cu.c by the first request to the daemon, cr.c by an export): not linked, only their
# headers. The export reads the daemon's stream on a thread of its own
# (prefetch.c).
LDLIBS += $(shell $(PKG_CONFIG) --libs $(filter-out libarchive mount libcurl libcrypto,$(PKGS))) -ldl -pthread

ifeq ($(SANITIZE),1)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
B := build-san
endif

# Every module but the command line's main.c is a library the unit tests link.
LIB_SRCS := $(filter-out src/main.c,$(wildcard src/*.c))
LIB_OBJS := $(LIB_SRCS:src/%.c=$(B)/obj/%.o)
HELPER := $(B)/uwsgi-docker-rootfs

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)

UWSGI ?= uwsgi
PLUGIN := $(B)/docker_plugin.so
# uWSGI's plugin directory, from its build flags: -DUWSGI_PLUGIN_DIR="\"/usr/lib/uwsgi/plugins\""
PLUGIN_DIR ?= $(shell $(UWSGI) --cflags 2>/dev/null | sed -n 's/.*-DUWSGI_PLUGIN_DIR=[\\"]*\([^\\"]*\).*/\1/p')

.PHONY: all install install-plugin-dir deb deps check check-clang check-unit check-unit-san check-integration fuzz demo bench \
	clean format
all: $(HELPER) $(PLUGIN)

# The plugin is compiled directly against the running uWSGI's own header and flags
# (uwsgi --dot-h, uwsgi --cflags): the same thing `uwsgi --build-plugin` does, without
# needing uWSGI's source tree. handoff.c is shared with the helper.
$(B)/uwsgi.h:
	@mkdir -p $(dir $@)
	$(UWSGI) --dot-h > $@

# The helper's warnings on top of uWSGI's own flags.
PLUGIN_WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2
# Flags for the plugin only, on top of uWSGI's (debian/rules passes dpkg-buildflags' hardening):
# CFLAGS and LDFLAGS may carry the sanitizers, which a plugin in an uninstrumented uwsgi cannot use.
PLUGIN_CFLAGS ?=
PLUGIN_LDFLAGS ?=
# The ABI the plugin is built for, as Debian names it: the md5 of `uwsgi --dot-h` (abi.c checks it
# against the running uwsgi's at load). Expanded by the shell in the recipe, once $(B)/uwsgi.h exists.
PLUGIN_ABI = -DUD_UWSGI_ABI='"'$$(md5sum < $(B)/uwsgi.h | cut -c1-32)'"'
PLUGIN_SRCS := $(wildcard hooks/docker/*.c) src/handoff.c src/error.c src/caps.c src/util.c
$(PLUGIN): $(PLUGIN_SRCS) $(wildcard hooks/docker/*.h) src/handoff.h src/error.h src/caps.h src/util.h $(B)/uwsgi.h
	$(CC) $$($(UWSGI) --cflags) $(PLUGIN_CFLAGS) $(PLUGIN_WARN) $(PLUGIN_ABI) -D_GNU_SOURCE -I$(B) -Isrc \
		-Ihooks/docker -fPIC -shared -o $@ $(PLUGIN_SRCS) $(PLUGIN_LDFLAGS) -ldl

# Header dependencies come from the compiler (-MMD): a .d file beside each object.
$(B)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

-include $(wildcard $(B)/obj/*.d)

$(HELPER): $(LIB_OBJS) $(B)/obj/main.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/tests/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc -DFIXTURES='"$(CURDIR)/tests/fixtures"' -o $@ $^ $(LDFLAGS) $(LDLIBS) -lcmocka \
		$(shell $(PKG_CONFIG) --libs libcrypto)

# The Engine API's pure half (reference grammar, JSON answers) is tested without libcurl.
DOCKER_PURE_OBJS := $(addprefix $(B)/obj/,reference.o docker_json.o error.o util.o)
$(B)/tests/test_docker: tests/unit/test_docker.c $(DOCKER_PURE_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc -DFIXTURES='"$(CURDIR)/tests/fixtures"' -o $@ $^ $(LDFLAGS) \
		$(shell $(PKG_CONFIG) --libs json-c) -lcmocka

# A pip-built (or uwsgiconfig.py --build) uWSGI reports its plugin directory as ".": installing
# there would put the plugin in whatever directory make runs in. Checked before anything is built.
install-plugin-dir:
	@test -n "$(PLUGIN_DIR)" || { echo "install: uWSGI's plugin directory is unknown: set PLUGIN_DIR" >&2; exit 1; }
	@case "$(PLUGIN_DIR)" in /*) ;; *) echo "install: $(UWSGI) reports its plugin directory as '$(PLUGIN_DIR)', a relative path (a pip-built uWSGI does): set PLUGIN_DIR=/an/absolute/dir and load the plugin with plugin-dir = that dir" >&2; exit 1;; esac

install: install-plugin-dir $(HELPER) $(PLUGIN)
	install -D -m 0755 $(HELPER) $(DESTDIR)$(BINDIR)/uwsgi-docker-rootfs
	install -D -m 0644 $(PLUGIN) $(DESTDIR)$(PLUGIN_DIR)/docker_plugin.so
	install -D -m 0644 man/uwsgi-docker-rootfs.1 $(DESTDIR)$(MANDIR)/man1/uwsgi-docker-rootfs.1
	install -D -m 0644 man/uwsgi-plugin-docker.7 $(DESTDIR)$(MANDIR)/man7/uwsgi-plugin-docker.7

# Debian binary packages (debian/): uwsgi-docker-rootfs and uwsgi-plugin-docker, built with
# dpkg-buildpackage in a copy of the tree under build/deb/, the .debs beside it; lintian must
# report no error.
DEB_DIR := $(B)/deb
DEB_SRC := $(DEB_DIR)/uwsgi-docker-$(VERSION)
deb:
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_SRC)
	cp -a Makefile README.md src hooks man debian $(DEB_SRC)/
	cd $(DEB_SRC) && dpkg-buildpackage -b -us -uc
	lintian --fail-on error $(DEB_DIR)/uwsgi-docker_$(VERSION)_*.changes
	@ls $(DEB_DIR)/*.deb

# Installs missing Debian packages and starts dockerd if none answers (idempotent, quick when done).
deps:
	bash scripts/deps.sh

check: deps
	$(MAKE) check-clang check-unit check-unit-san check-integration

# Warnings-clean under clang too (gcc builds everything above).
check-clang: $(B)/uwsgi.h
	@for f in src/*.c tests/unit/*.c tests/fuzz/*.c; do \
		clang -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wformat=2 -DUD_VERSION='"x"' \
			-DFIXTURES='"x"' -Isrc $(shell $(PKG_CONFIG) --cflags $(PKGS)) -fsyntax-only $$f || exit 1; \
	done
	@for f in hooks/docker/*.c; do \
		clang $$($(UWSGI) --cflags) $(PLUGIN_WARN) $(PLUGIN_ABI) -D_GNU_SOURCE -I$(B) -Isrc -Ihooks/docker \
			-fsyntax-only $$f || exit 1; \
	done
	@echo "clang: warnings-clean"


check-unit: $(UNIT_BINS)
	@rc=0; for t in $(UNIT_BINS); do echo "== $$t"; $$t || rc=1; done; exit $$rc

# The unit tests once more under ASan/UBSan, built into build-san/ (`make check` runs both).
ifeq ($(SANITIZE),1)
check-unit-san: check-unit
else
check-unit-san:
	$(MAKE) SANITIZE=1 check-unit
endif

check-integration: $(HELPER) $(PLUGIN)
	UD_HELPER=$(CURDIR)/$(HELPER) $(PYTHON) -m pytest -v -rs tests/integration

# libFuzzer targets (tests/fuzz/README): clang only, with ASan and UBSan, built into build-fuzz/.
# `make fuzz` replays tests/fuzz/regressions/, then runs each target FUZZ_SECONDS (0: seeds only).
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FZ := build-fuzz
# Targets left out of the default run, e.g. one with an open finding: FUZZ_SKIP=NAME (empty:
# every target runs).
FUZZ_SKIP ?=
FUZZ_TARGETS := $(filter-out $(FUZZ_SKIP),$(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FZ)/fuzz_%)
FUZZ_OBJS := $(LIB_SRCS:src/%.c=$(FZ)/obj/%.o)
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -Wshadow -Wformat=2 \
	       -fno-omit-frame-pointer -fno-sanitize-recover=all -DUD_VERSION='"fuzz"' -Isrc \
	       $(shell $(PKG_CONFIG) --cflags $(PKGS))

# Kept between runs (make would delete them as intermediate files of the pattern rule below).
.SECONDARY: $(FUZZ_OBJS)

$(FZ)/obj/%.o: src/%.c $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<

$(FZ)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_OBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_OBJS) $(LDLIBS)

fuzz: $(FUZZ_BINS)
	bash tests/fuzz/run.sh $(FZ) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

demo: deps
	$(MAKE) all
	bash scripts/demo.sh $(CURDIR)/$(HELPER)

bench: deps
	$(MAKE) all
	bash scripts/bench.sh $(CURDIR)/$(HELPER)

format:
	clang-format -i src/*.c src/*.h tests/unit/*.c tests/fuzz/*.c tests/fuzz/*.h

clean:
	rm -rf build build-san build-fuzz
