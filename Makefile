# kdbench — build, test, run.  `make run` and `make test` are all a newcomer needs.
PREFIX ?= /usr/local
CC ?= cc
PKGS := openblas yaml-0.1 zlib
DEBS := libopenblas-dev libyaml-dev check zlib1g-dev pkg-config gnuplot-nox dataset-fashion-mnist

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror
OPT ?= -O3 -g
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -pthread \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(CFLAGS)
LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -pthread
TEST_LIBS = $(shell pkg-config --libs check 2>/dev/null)

BUILD ?= build
# Library modules in dependency order (engine <- stages <- pipeline); cli is the binary.
MODULES := util nn data config train teacher student compress measure reports pipeline
LIB_SRC := $(foreach m,$(MODULES),$(wildcard $(m)/*.c $(m)/*/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_SRC := $(wildcard cli/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/*.c tests/*/*.c)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
BENCH_SRC := $(wildcard bench/*.c)

BIN := bin/kdbench
LIBKD := $(BUILD)/libkd.a
TEST_BIN := $(BUILD)/tests/kdtest
CONFIG ?= experiments/fashion_mlp.yaml
RUN_ARGS ?=

.PHONY: all deps run test check-suite bench asan clean install help
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
# needed: Check forks, and ASan follows).
asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
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
