# kdbench — build, test, run.  `make run` and `make test` are all a newcomer needs.
PREFIX ?= /usr/local
CC ?= cc
PKGS := openblas yaml-0.1 zlib libmicrohttpd libcjson
DEBS := libopenblas-dev libyaml-dev check zlib1g-dev pkg-config gnuplot-nox dataset-fashion-mnist libmicrohttpd-dev libcjson-dev \
        libopenmpi-dev openmpi-bin
# MPI: on when Open MPI's pkg-config `ompi` is found; `make MPI=0` forces it off
# (the binary then runs one process, and refuses to start under mpirun).  Only
# dist/ sees the difference (KD_WITH_MPI); the rest of the code has no #ifdef.
ifeq ($(origin MPI),undefined)
MPI := $(shell pkg-config --exists ompi 2>/dev/null && echo 1 || echo 0)
endif
ifeq ($(MPI),1)
PKGS += ompi
MPI_DEF := -DKD_WITH_MPI
endif

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror
OPT ?= -O3 -g
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -pthread \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(MPI_DEF) $(CFLAGS)
LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -pthread
TEST_LIBS = $(shell pkg-config --libs check 2>/dev/null)

BUILD ?= build
# Library modules in dependency order (engine <- stages <- pipeline); cli is the binary.
MODULES := util dist nn data config train teacher student compress measure reports pipeline export serve
LIB_SRC := $(foreach m,$(MODULES),$(wildcard $(m)/*.c $(m)/*/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_SRC := $(wildcard cli/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(filter-out tests/mpi/%,$(wildcard tests/*.c tests/*/*.c))
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
BENCH_SRC := $(wildcard bench/*.c)

BIN := bin/kdbench
LIBKD := $(BUILD)/libkd.a
TEST_BIN := $(BUILD)/tests/kdtest
CONFIG ?= experiments/fashion_mlp.yaml
RUN_ARGS ?=

.PHONY: all deps run test check-suite check-mpi bench asan clean install help FORCE
all: $(BIN)

help:
	@echo "make run      install missing Debian packages (as root), build, run $(CONFIG)"
	@echo "make test     install missing packages, build, run the whole Check suite"
	@echo "make bench    training speed vs GEMM ceiling, latency, throughput, memory"
	@echo "make asan     the Check suite under AddressSanitizer + UBSan"
	@echo "make install PREFIX=/usr/local    make clean"
	@echo "CK_RUN_SUITE=nn_dense make test   runs one suite"

deps:
	@sh scripts/deps.sh $(DEBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(LIBKD): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIBKD)
	@mkdir -p bin
	$(CC) $(CFLAGS_ALL) -o $@ $(CLI_OBJ) $(LIBKD) $(LIBS) $(LDFLAGS)

# Every `Suite *suite_xxx(void)` defined under tests/ is listed here, so a new
# test file needs no edit anywhere else.
$(BUILD)/tests/suites.inc: $(TEST_SRC)
	@mkdir -p $(dir $@)
	@grep -ho '^Suite \*suite_[a-z0-9_]*(void)' $(TEST_SRC) | sed 's/^Suite \*\(suite_[a-z0-9_]*\)(void)/KD_SUITE(\1)/' | sort -u > $@.tmp && mv $@.tmp $@

# Suites are found by name, not declared in headers.
$(BUILD)/tests/%.o: CFLAGS += -Wno-missing-prototypes
$(BUILD)/tests/main.o: $(BUILD)/tests/suites.inc
$(BUILD)/tests/main.o: CFLAGS += -I$(BUILD)/tests

$(TEST_BIN): $(TEST_OBJ) $(LIBKD)
	$(CC) $(CFLAGS_ALL) -o $@ $(TEST_OBJ) $(LIBKD) $(TEST_LIBS) $(LIBS) $(LDFLAGS)

test: deps
	@$(MAKE) --no-print-directory check-suite

check-suite: $(TEST_BIN) $(BIN)
	KD_BIN=$(abspath $(BIN)) CK_DEFAULT_TIMEOUT=$${CK_DEFAULT_TIMEOUT:-120} $(TEST_BIN)
	@$(MAKE) --no-print-directory check-mpi

# dist.o follows MPI=0/1 (the flag is not in its prerequisites otherwise).
$(BUILD)/mpi.stamp: FORCE
	@mkdir -p $(BUILD); echo $(MPI) | cmp -s - $@ || echo $(MPI) > $@
$(BUILD)/dist/dist.o: $(BUILD)/mpi.stamp

# The MPI tests: their own binary (MPI starts once per process, so Check
# must not fork: CK_FORK=no), on 2 ranks over loopback only, bounded in time.
# Skipped with a printed reason without MPI or mpirun, or when CK_RUN_SUITE
# names a suite that is not an mpi_* one.
MPI_TEST_SRC := $(wildcard tests/mpi/*.c) tests/kdtest.c
MPI_TEST_BIN := $(BUILD)/tests/kdtest-mpi
MPIRUN_FLAGS ?= -np 2 --oversubscribe --mca btl self,vader
MPI_TIMEOUT ?= 600
$(BUILD)/tests/mpi/suites.inc: $(wildcard tests/mpi/*.c)
	@mkdir -p $(dir $@)
	@grep -ho '^Suite \*suite_[a-z0-9_]*(void)' $^ | sed 's/^Suite \*\(suite_[a-z0-9_]*\)(void)/KD_SUITE(\1)/' | sort -u > $@.tmp && mv $@.tmp $@
$(BUILD)/tests/mpi/main.o: $(BUILD)/tests/mpi/suites.inc
$(BUILD)/tests/mpi/main.o: CFLAGS += -I$(BUILD)/tests/mpi
$(MPI_TEST_BIN): $(MPI_TEST_SRC:%.c=$(BUILD)/%.o) $(LIBKD)
	$(CC) $(CFLAGS_ALL) -o $@ $(MPI_TEST_SRC:%.c=$(BUILD)/%.o) $(LIBKD) $(TEST_LIBS) $(LIBS) $(LDFLAGS)

check-mpi: $(BIN)
	@if [ "$(MPI)" != 1 ]; then echo "SKIP MPI tests: built without MPI (MPI=0 or no Open MPI's pkg-config ompi)"; \
	elif ! command -v mpirun >/dev/null; then echo "SKIP MPI tests: no mpirun (apt-get install openmpi-bin)"; \
	elif [ -n "$$CK_RUN_SUITE" ] && [ "$${CK_RUN_SUITE#mpi}" = "$$CK_RUN_SUITE" ]; then :; \
	else $(MAKE) --no-print-directory $(MPI_TEST_BIN) && \
	    KD_BIN=$(abspath $(BIN)) CK_FORK=no CK_DEFAULT_TIMEOUT=$${CK_DEFAULT_TIMEOUT:-300} \
	    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
	    timeout -k 10 $(MPI_TIMEOUT) mpirun $(MPIRUN_FLAGS) $(MPI_TEST_BIN); fi

run: deps
	@$(MAKE) --no-print-directory $(BIN)
	./$(BIN) run $(CONFIG) $(RUN_ARGS)

bench: deps
	@$(MAKE) --no-print-directory $(BIN) $(BUILD)/bench/kdbench-bench
	./$(BUILD)/bench/kdbench-bench

$(BUILD)/bench/kdbench-bench: $(BENCH_SRC:%.c=$(BUILD)/%.o) $(LIBKD)
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LIBS) $(LDFLAGS)

# Sanitizer build in its own folder; OpenBLAS threads are not instrumented, so
# leak checking stays on but the suite runs single-process (CK_FORK=no is not
# needed: Check forks, and ASan follows).  Built with MPI=0: Open MPI's own
# allocations at init are reported by LeakSanitizer as leaks we cannot fix,
# and dist/ without MPI is the same code minus the library calls.
asan: deps
	@$(MAKE) --no-print-directory MPI=0 BUILD=build-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    LDFLAGS="-fsanitize=address,undefined" BIN=build-asan/kdbench check-suite

install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/kdbench

clean:
	rm -rf build build-asan bin

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# The commit the binary was built from, shown in each report's environment
# (env.json); empty outside a git checkout.
GIT_COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null)
$(BUILD)/reports/env.o: CFLAGS += -DKD_GIT_COMMIT='"$(GIT_COMMIT)"'

# ---- fuzzing ------------------------------------------------------------------
# `make fuzz`: every target in fuzz/ (fuzz_<name>.c) built with clang's
# libFuzzer under ASan+UBSan in build-fuzz/, each run FUZZ_SECONDS on its seed
# corpus fuzz/corpus/<name>/ (new inputs go to build-fuzz/corpus/<name>/, the
# committed corpus is not touched; crashes to build-fuzz/crashes/).
# `make fuzz-ci`: each target replays its seed corpus, then fuzzes
# FUZZ_CI_SECONDS; one line per target, fails on any crash.
# `make fuzz-replay`: the seed corpora through a gcc ASan+UBSan build, no clang.
# FUZZ_TARGETS=model limits any of them to some targets.
FUZZ_DEBS := clang libclang-rt-14-dev
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 600
FUZZ_CI_SECONDS ?= 20
FUZZ_TARGETS ?= $(filter-out util,$(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c)))
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_HDR := $(wildcard fuzz/*.h)

.PHONY: fuzz fuzz-ci fuzz-build fuzz-replay fuzz-deps fuzz-clean fuzz-corpus
fuzz-clean:
	rm -rf build-fuzz build-fuzz-replay
fuzz-deps:
	@sh scripts/deps.sh $(DEBS) $(FUZZ_DEBS)

fuzz-build: fuzz-deps
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=$(FUZZ_CC) \
	    OPT="-O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link" build-fuzz/libkd.a
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=build-fuzz/fuzz_%)

build-fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_util.c $(FUZZ_HDR) build-fuzz/libkd.a
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) $(FUZZ_SAN) -fsanitize=fuzzer \
	    $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -o $@ $< fuzz/fuzz_util.c \
	    build-fuzz/libkd.a $(LIBS)

fuzz: fuzz-build
	@sh fuzz/run.sh long $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-ci: fuzz-build
	@sh fuzz/run.sh ci $(FUZZ_CI_SECONDS) $(FUZZ_TARGETS)

build-fuzz-replay/replay_%: fuzz/replay.c fuzz/fuzz_%.c fuzz/fuzz_util.c $(FUZZ_HDR) \
	    build-fuzz-replay/libkd.a
	$(CC) -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) $(FUZZ_SAN) \
	    $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -o $@ fuzz/replay.c $(filter %.c,$(wordlist 2,3,$^)) \
	    build-fuzz-replay/libkd.a $(LIBS)

fuzz-replay: deps
	@$(MAKE) --no-print-directory BUILD=build-fuzz-replay OPT="-O1 -g $(FUZZ_SAN)" \
	    build-fuzz-replay/libkd.a
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=build-fuzz-replay/replay_%)
	@set -e; for t in $(FUZZ_TARGETS); do \
	    printf 'replay %-10s ' $$t; OPENBLAS_NUM_THREADS=1 build-fuzz-replay/replay_$$t fuzz/corpus/$$t; \
	done

# Regenerates the seed corpora (committed) with the project's own writers.
fuzz-corpus: $(BUILD)/fuzz/gen_corpus
	OPENBLAS_NUM_THREADS=1 $(BUILD)/fuzz/gen_corpus fuzz/corpus

$(BUILD)/fuzz/gen_corpus: fuzz/gen_corpus.c fuzz/fuzz_util.c $(FUZZ_HDR) $(LIBKD)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ fuzz/gen_corpus.c fuzz/fuzz_util.c $(LIBKD) $(LIBS) $(LDFLAGS)
