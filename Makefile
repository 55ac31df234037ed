# peernet — build, test, demo, bench, fuzz.
#
#   make          build/peernet, build/libpeernet.a and build/libpeernet.so
#   make test     unit tests (ASan+UBSan), fuzz smoke runs, integration tests
#   make demo     start a local network and show it working
#   make bench    measure, write bench/RESULTS.md
#   make fuzz     run every fuzz target for FUZZ_SECONDS each
#   make install  PREFIX=/usr/local DESTDIR=: the program, the static and shared
#                 libraries, the header, peernet.pc and the man pages
#   make uninstall  removes exactly what make install put (same PREFIX, DESTDIR)
#
# Every target first makes sure the Debian packages it needs are installed.

CC      ?= gcc
CLANG   ?= clang
PYTHON  ?= /usr/bin/python3
BUILD   ?= build
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 5

PKGS_PC := libuv openssl jansson libmicrohttpd
CPPFLAGS := -Iinclude -Isrc -D_GNU_SOURCE -DPN_INTERNAL
# src/cli/ is an outside client of the library: peernet.h and libuv only
# (tools/check-cli-includes.sh checks every include line), no PN_INTERNAL,
# no -Isrc and none of the other libraries' flags, so an internal include
# there fails the build. It is linked with what the static library needs.
CLI_CPPFLAGS := -Iinclude -D_GNU_SOURCE
WARN    := -Wall -Wextra -Wshadow -Wno-unused-parameter -Wstrict-prototypes -Wmissing-prototypes
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 $(WARN) -fno-strict-aliasing
DEPCFLAGS = $(shell pkg-config --cflags $(PKGS_PC) 2>/dev/null)
CLI_DEPCFLAGS = $(shell pkg-config --cflags libuv 2>/dev/null)
LDLIBS  = $(shell pkg-config --libs $(PKGS_PC) 2>/dev/null) -lm
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

LIB_SRCS := $(wildcard src/util/*.c src/wire/*.c src/crypto/*.c src/store/*.c src/proto/*.c src/net/*.c src/http/*.c src/node/*.c)
CLI_SRCS := $(wildcard src/cli/*.c)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
FUZZ_SRCS := $(wildcard fuzz/fuzz_*.c)
# The fuzz targets link only the layers without I/O.
FUZZ_LIB_SRCS := $(wildcard src/util/*.c src/wire/*.c src/crypto/*.c src/store/*.c src/proto/*.c)

LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
CLI_OBJS  := $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
ALIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/asan/obj/%.o)
ACLI_OBJS := $(CLI_SRCS:%.c=$(BUILD)/asan/obj/%.o)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/asan/tests/%)
FUZZ_BINS := $(FUZZ_SRCS:fuzz/%.c=$(BUILD)/fuzz/%)

# Debian packages each target needs (binary name or file -> package).
# libunistring-dev: test_install links a program statically through
# `pkg-config --static`, which pulls in gnutls's libraries by way of
# libmicrohttpd (Debian's is built with gnutls).
DEPS_BUILD := libuv1-dev libssl-dev libjansson-dev libmicrohttpd-dev pkg-config
DEPS_TEST  := $(DEPS_BUILD) libcriterion-dev python3-pytest clang libclang-rt-14-dev openssl \
              python3-cryptography python3-openssl scdoc man-db systemd chromium \
              libunistring-dev
DEPS_BENCH := $(DEPS_BUILD) nginx curl python3-matplotlib linux-perf
DEPS_INSTALL := $(DEPS_BUILD) scdoc

.PHONY: all test cli-includes unit fuzz-smoke integration conformance demo bench fuzz clean deps-build deps-test deps-bench asan sim-faults sim-faults-test
.PHONY: shared man install uninstall deps-install FORCE

all: deps-build $(BUILD)/peernet $(BUILD)/libpeernet.a $(BUILD)/libpeernet.so $(BUILD)/dht-sim

deps-build:
	@sh tools/ensure-deps.sh $(DEPS_BUILD)
deps-test:
	@sh tools/ensure-deps.sh $(DEPS_TEST)
deps-bench:
	@sh tools/ensure-deps.sh $(DEPS_BENCH)
deps-install:
	@sh tools/ensure-deps.sh $(DEPS_INSTALL)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(DEPCFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/asan/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(DEPCFLAGS) $(CFLAGS) $(SAN) -MMD -MP -c $< -o $@

# The status page is built into src/http/page.c with .incbin, which -MMD does not see.
$(BUILD)/obj/src/http/page.o $(BUILD)/asan/obj/src/http/page.o $(BUILD)/corrupt/obj/src/http/page.o $(BUILD)/pic/obj/src/http/page.o: src/http/page.html

# The CLI in every build (normal, asan, corrupt): the more specific patterns win.
$(BUILD)/obj/src/cli/%.o: src/cli/%.c
	@mkdir -p $(@D)
	$(CC) $(CLI_CPPFLAGS) $(CLI_DEPCFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/asan/obj/src/cli/%.o: src/cli/%.c
	@mkdir -p $(@D)
	$(CC) $(CLI_CPPFLAGS) $(CLI_DEPCFLAGS) $(CFLAGS) $(SAN) -MMD -MP -c $< -o $@

$(BUILD)/libpeernet.a: $(LIB_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

# A test-only build whose node damages every chunk it serves (tests/integration
# uses it as a corrupting provider). Never installed, never a run-time option.
COBJS := $(LIB_SRCS:%.c=$(BUILD)/corrupt/obj/%.o) $(CLI_SRCS:%.c=$(BUILD)/corrupt/obj/%.o)
$(BUILD)/corrupt/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(DEPCFLAGS) $(CFLAGS) -DPN_TEST_CORRUPT -MMD -MP -c $< -o $@
$(BUILD)/corrupt/obj/src/cli/%.o: src/cli/%.c
	@mkdir -p $(@D)
	$(CC) $(CLI_CPPFLAGS) $(CLI_DEPCFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/peernet-corrupt: $(COBJS)
	$(CC) $(CFLAGS) -o $@ $(COBJS) $(LDLIBS)

$(BUILD)/asan/libpeernet.a: $(ALIB_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/peernet: $(CLI_OBJS) $(BUILD)/libpeernet.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJS) $(BUILD)/libpeernet.a $(LDLIBS)

$(BUILD)/asan/peernet: $(ACLI_OBJS) $(BUILD)/asan/libpeernet.a
	$(CC) $(CFLAGS) $(SAN) -o $@ $(ACLI_OBJS) $(BUILD)/asan/libpeernet.a $(LDLIBS)

$(BUILD)/asan/tests/%: tests/unit/%.c $(BUILD)/asan/libpeernet.a $(wildcard sim/*.c sim/*.h tests/unit/*.h)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(DEPCFLAGS) $(CFLAGS) $(SAN) -o $@ $< $(BUILD)/asan/libpeernet.a $(LDLIBS) -lcriterion

$(BUILD)/fuzz/%: fuzz/%.c $(FUZZ_LIB_SRCS)
	@mkdir -p $(@D)
	$(CLANG) $(CPPFLAGS) $(DEPCFLAGS) -g -O1 -std=c11 -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_LIB_SRCS) $(LDLIBS)

asan: deps-build $(BUILD)/asan/peernet

unit: deps-test $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t --jobs 2 --short-filename; done

fuzz-smoke: deps-test $(FUZZ_BINS)
	@set -e; for f in $(FUZZ_BINS); do n=$$(basename $$f); echo "== $$n ($(FUZZ_SMOKE_SECONDS)s)"; \
	  mkdir -p $(BUILD)/fuzz/corpus/$$n; \
	  $$f -max_total_time=$(FUZZ_SMOKE_SECONDS) -print_final_stats=0 $(BUILD)/fuzz/corpus/$$n fuzz/corpus/$$n 2>$(BUILD)/fuzz/$$n.log \
	    || { tail -40 $(BUILD)/fuzz/$$n.log; exit 1; }; \
	  grep -E '^#[0-9]+.*DONE' $(BUILD)/fuzz/$$n.log | tail -1; done

integration: deps-test $(BUILD)/peernet $(BUILD)/asan/peernet $(BUILD)/peernet-corrupt
	PEERNET_BIN=$(abspath $(BUILD)/asan/peernet) PEERNET_FAST_BIN=$(abspath $(BUILD)/peernet) \
	  PEERNET_CORRUPT_BIN=$(abspath $(BUILD)/peernet-corrupt) \
	  $(PYTHON) -m pytest -q -x tests/integration

# The protocol's requirements, one case per **must** of docs/PROTOCOL.md,
# driven byte by byte from Python (tests/conformance/README.md).
conformance: deps-test $(BUILD)/asan/peernet
	PEERNET_BIN=$(abspath $(BUILD)/asan/peernet) $(PYTHON) -m pytest -q tests/conformance

# src/cli/ includes <peernet.h>, <uv.h>, libc/POSIX headers and its own
# headers, nothing else (issue 12: the CLI is a client of the public API).
cli-includes:
	sh tools/check-cli-includes.sh src/cli

TEST_SEEDS ?= 200
test: cli-includes unit fuzz-smoke sim-faults-test conformance integration
	@echo "all tests passed"

fuzz: deps-test $(FUZZ_BINS)
	@set -e; for f in $(FUZZ_BINS); do n=$$(basename $$f); echo "== $$n ($(FUZZ_SECONDS)s)"; \
	  mkdir -p $(BUILD)/fuzz/corpus/$$n; \
	  $$f -max_total_time=$(FUZZ_SECONDS) $(BUILD)/fuzz/corpus/$$n fuzz/corpus/$$n 2>&1 | tail -3; done

demo: deps-build $(BUILD)/peernet
	@$(BUILD)/peernet demo $(DEMO_ARGS)

$(BUILD)/idle-clients: bench/idle_clients.c $(BUILD)/libpeernet.a
	$(CC) $(CPPFLAGS) $(DEPCFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libpeernet.a $(LDLIBS)

# The flood simulator: sim/ drives the sans-I/O cores with virtual time.
SIM_SRCS := sim/evq.c sim/sim.c sim/flood_sim.c
$(BUILD)/flood-sim: $(SIM_SRCS) $(wildcard sim/*.h) $(LIB_OBJS) $(BUILD)/libpeernet.a
	$(CC) $(CPPFLAGS) $(DEPCFLAGS) $(CFLAGS) -o $@ $(SIM_SRCS) $(BUILD)/libpeernet.a $(LDLIBS)

# The swarm simulator: the peer engine (src/proto/engine.c) with a bandwidth model.
SWARM_SIM_SRCS := sim/evq.c sim/swarm_sim.c sim/swarm_fault.c sim/swarm_report.c sim/swarm_main.c
$(BUILD)/swarm-sim: $(SWARM_SIM_SRCS) sim/evq.h sim/swarm_sim.h sim/swarm_sim_int.h $(LIB_OBJS) $(BUILD)/libpeernet.a
	$(CC) $(CPPFLAGS) $(DEPCFLAGS) $(CFLAGS) -o $@ $(SWARM_SIM_SRCS) $(BUILD)/libpeernet.a $(LDLIBS)

# The DHT simulator: the Kademlia core (src/proto/dht.c) at 1,000-100,000
# nodes, beside the flood core (sim.c) on the same items.
DHT_SIM_SRCS := sim/evq.c sim/dht_sim.c sim/dht_main.c sim/sim.c
$(BUILD)/dht-sim: $(DHT_SIM_SRCS) sim/evq.h sim/dht_sim.h sim/sim.h $(LIB_OBJS) $(BUILD)/libpeernet.a
	$(CC) $(CPPFLAGS) $(DEPCFLAGS) $(CFLAGS) -o $@ $(DHT_SIM_SRCS) $(BUILD)/libpeernet.a $(LDLIBS)

# The fault simulator: one swarm per seed with faults drawn from the seed,
# every engine invariant checked after every step. make sim-faults SEEDS=1000;
# a failing seed replays with build/fault-sim --seed N --diag.
SEEDS ?= 1000
FAULT_SIM_SRCS := sim/evq.c sim/swarm_sim.c sim/swarm_fault.c sim/swarm_report.c sim/sim.c sim/fault_main.c
$(BUILD)/fault-sim: $(FAULT_SIM_SRCS) sim/evq.h sim/swarm_sim.h sim/swarm_sim_int.h sim/sim.h $(LIB_OBJS) $(BUILD)/libpeernet.a
	$(CC) $(CPPFLAGS) $(DEPCFLAGS) $(CFLAGS) -o $@ $(FAULT_SIM_SRCS) $(BUILD)/libpeernet.a $(LDLIBS)
# make test runs it under the sanitizers, on fewer seeds.
$(BUILD)/asan/fault-sim: $(FAULT_SIM_SRCS) sim/evq.h sim/swarm_sim.h sim/swarm_sim_int.h sim/sim.h $(BUILD)/asan/libpeernet.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(DEPCFLAGS) $(CFLAGS) $(SAN) -o $@ $(FAULT_SIM_SRCS) $(BUILD)/asan/libpeernet.a $(LDLIBS)

sim-faults: deps-build $(BUILD)/fault-sim
	$(BUILD)/fault-sim --seeds $(SEEDS) --quiet

sim-faults-test: deps-test $(BUILD)/asan/fault-sim
	$(BUILD)/asan/fault-sim --seeds $(TEST_SEEDS) --quiet

bench: deps-bench $(BUILD)/peernet $(BUILD)/idle-clients $(BUILD)/dht-sim
	$(PYTHON) bench/bench.py --bin $(abspath $(BUILD)/peernet) --out bench/RESULTS.md

# ---------------------------------------------------------------- shared library, man pages, install

# The version is PN_VERSION_MAJOR.MINOR.PATCH of peernet.h; the SONAME carries its first
# number (libpeernet.so.0 while the project is 0.x).
pn_version_part = $(shell sed -n 's/^\#define PN_VERSION_$(1) \([0-9]*\)$$/\1/p' include/peernet.h)
VERSION   := $(call pn_version_part,MAJOR).$(call pn_version_part,MINOR).$(call pn_version_part,PATCH)
SOVERSION := $(firstword $(subst ., ,$(VERSION)))
SONAME    := libpeernet.so.$(SOVERSION)
SOLIB     := libpeernet.so.$(VERSION)

# The shared library's objects are position-independent and hide every symbol
# that peernet.h does not mark PN_EXTERN: the library exports the public API
# and nothing else, with no list of symbols kept by hand.
PIC_OBJS := $(LIB_SRCS:%.c=$(BUILD)/pic/obj/%.o)
$(BUILD)/pic/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(DEPCFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -MMD -MP -c $< -o $@

$(BUILD)/$(SOLIB): $(PIC_OBJS)
	$(CC) $(CFLAGS) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined -Wl,-z,relro,-z,now -o $@ $(PIC_OBJS) $(LDLIBS)
$(BUILD)/$(SONAME): $(BUILD)/$(SOLIB)
	ln -sfn $(SOLIB) $@
$(BUILD)/libpeernet.so: $(BUILD)/$(SONAME)
	ln -sfn $(SONAME) $@

shared: deps-build $(BUILD)/libpeernet.so

# Man pages: docs/man/NAME.SECTION.scd -> build/man/NAME.SECTION (scdoc).
MAN_SRCS  := $(wildcard docs/man/*.scd)
MAN_PAGES := $(MAN_SRCS:docs/man/%.scd=$(BUILD)/man/%)
$(BUILD)/man/%: docs/man/%.scd
	@mkdir -p $(@D)
	scdoc < $< > $@.tmp && mv $@.tmp $@

man: deps-install $(MAN_PAGES)

PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
MANDIR       ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
INSTALL      ?= install

# peernet.pc for the PREFIX of this run (written every time: PREFIX may change
# between runs). Paths under the prefix are written as ${prefix}/..., so
# pkg-config --define-prefix can relocate them.
pc_path = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))
$(BUILD)/peernet.pc: peernet.pc.in include/peernet.h FORCE
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(call pc_path,$(LIBDIR))|' \
	    -e 's|@INCLUDEDIR@|$(call pc_path,$(INCLUDEDIR))|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@REQUIRES_PRIVATE@|$(filter-out libuv,$(PKGS_PC))|' $< > $@.tmp && mv $@.tmp $@
FORCE:

# Where each man page goes: peernet.1 -> MANDIR/man1/peernet.1.
man_dest = $(MANDIR)/man$(subst .,,$(suffix $(1)))/$(1)
MAN_NAMES := $(notdir $(MAN_PAGES))
INSTALLED := $(BINDIR)/peernet $(INCLUDEDIR)/peernet.h $(PKGCONFIGDIR)/peernet.pc \
             $(LIBDIR)/libpeernet.a $(LIBDIR)/$(SOLIB) $(LIBDIR)/$(SONAME) $(LIBDIR)/libpeernet.so \
             $(foreach p,$(MAN_NAMES),$(call man_dest,$(p)))

install: deps-install $(BUILD)/peernet $(BUILD)/libpeernet.a $(BUILD)/libpeernet.so $(BUILD)/peernet.pc $(MAN_PAGES)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR) \
	    $(sort $(foreach p,$(MAN_NAMES),$(dir $(DESTDIR)$(call man_dest,$(p)))))
	$(INSTALL) -m 0755 $(BUILD)/peernet $(DESTDIR)$(BINDIR)/peernet
	$(INSTALL) -m 0644 include/peernet.h $(DESTDIR)$(INCLUDEDIR)/peernet.h
	$(INSTALL) -m 0644 $(BUILD)/peernet.pc $(DESTDIR)$(PKGCONFIGDIR)/peernet.pc
	$(INSTALL) -m 0644 $(BUILD)/libpeernet.a $(DESTDIR)$(LIBDIR)/libpeernet.a
	$(INSTALL) -m 0755 $(BUILD)/$(SOLIB) $(DESTDIR)$(LIBDIR)/$(SOLIB)
	ln -sfn $(SOLIB) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sfn $(SONAME) $(DESTDIR)$(LIBDIR)/libpeernet.so
	$(foreach p,$(MAN_NAMES),$(INSTALL) -m 0644 $(BUILD)/man/$(p) $(DESTDIR)$(call man_dest,$(p)) &&) true
	@if [ -z "$(DESTDIR)" ] && command -v ldconfig >/dev/null; then ldconfig; fi

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	@if [ -z "$(DESTDIR)" ] && command -v ldconfig >/dev/null; then ldconfig; fi

clean:
	rm -rf $(BUILD)

-include $(COBJS:.o=.d)
-include $(LIB_OBJS:.o=.d) $(CLI_OBJS:.o=.d) $(ALIB_OBJS:.o=.d) $(ACLI_OBJS:.o=.d) $(PIC_OBJS:.o=.d)
