# sluice — build, run and test.
#
#   make            build/sluice, build/sluice-upstream, build/sluice-load
#   make run        install missing packages, build, run sluice on :8080 in
#                   front of a bundled sluice-upstream on :8000
#   make test       install missing packages, build, run unit + integration tests
#   make test-asan  the same suite, built with ASan+UBSan into build-asan/
#   make test-tsan  the threaded tests, built with TSan into build-tsan/
#   make fuzz       build the libFuzzer targets (clang) into build-fuzz/
#   make fuzz-run   run each target for FUZZ_SECONDS (default 60)

BUILD   ?= build
CC      ?= cc
PYTHON  ?= /usr/bin/python3
LLHTTP  ?= /usr/share/llhttp
OPT     ?= -O2
SAN     ?=
VERSION := 0.1.0

METRICS ?= on
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -DSL_VERSION='"$(VERSION)"' \
           -Wall -Wextra -Wshadow -Wno-unused-parameter -Wstrict-prototypes \
           -pthread -Isrc -I/usr/share/include/llhttp $(SAN) \
           $(if $(filter off,$(METRICS)),-DSL_NO_METRICS) \
           $(if $(SAN),,-DNDEBUG)
LDFLAGS += -pthread $(SAN)
LDLIBS  += -luv -ljansson -lhiredis -lssl -lcrypto -lm

SRC        := $(wildcard src/*.c)
CORE_OBJ   := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(filter-out src/main.c,$(SRC))) $(BUILD)/obj/gen/dashboard.o \
              $(BUILD)/obj/gen/cluster_lua.o
LLHTTP_OBJ := $(BUILD)/obj/llhttp/llhttp.o $(BUILD)/obj/llhttp/api.o $(BUILD)/obj/llhttp/http.o
UP_OBJ     := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tools/upstream/*.c))
LOAD_OBJ   := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tools/load/*.c))
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

PROGRAMS := $(BUILD)/sluice $(BUILD)/sluice-upstream $(BUILD)/sluice-load

.PHONY: all deps run test unit integration test-asan test-tsan fuzz fuzz-run bench clean format format-check
all: $(PROGRAMS)

deps:
	@scripts/deps.sh

$(BUILD)/obj/llhttp/%.o: $(LLHTTP)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -Wshadow -Wstrict-prototypes -Wextra,$(CFLAGS)) -w -c $< -o $@

# The dashboard page is compiled into the binary as a byte array.
$(BUILD)/gen/dashboard.c: src/dashboard.html
	@mkdir -p $(dir $@)
	@{ echo '#include <stddef.h>'; echo 'const char sl_dashboard_html[] = {'; \
	   od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; echo '0};'; \
	   echo "const size_t sl_dashboard_html_len = sizeof sl_dashboard_html - 1;"; } > $@

# So is the Redis script of --redis-url, as a C string.
$(BUILD)/gen/cluster_lua.c: src/cluster.lua
	@mkdir -p $(dir $@)
	@{ echo 'const char sl_cluster_lua[] = {'; \
	   od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; echo '0};'; } > $@

$(BUILD)/obj/gen/cluster_lua.o: $(BUILD)/gen/cluster_lua.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/gen/dashboard.o: $(BUILD)/gen/dashboard.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/sluice: $(BUILD)/obj/main.o $(CORE_OBJ) $(LLHTTP_OBJ)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/sluice-upstream: $(UP_OBJ) $(BUILD)/obj/reason.o $(BUILD)/obj/listener.o $(LLHTTP_OBJ)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/sluice-load: $(LOAD_OBJ) $(BUILD)/obj/hist.o $(BUILD)/obj/buf.o $(BUILD)/obj/tls.o $(BUILD)/obj/io.o $(LLHTTP_OBJ)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/unit/%.c $(CORE_OBJ) $(LLHTTP_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ $(LDFLAGS) $(LDLIBS) -lcmocka -o $@

# sluice-load's option parser is the load tester's, not the proxy's: it links
# alone (this explicit rule wins over the pattern above).
$(BUILD)/tests/test_load_opts: tests/unit/test_load_opts.c $(BUILD)/obj/tools/load/opts.o $(BUILD)/obj/buf.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itools/load $^ $(LDFLAGS) $(LDLIBS) -lcmocka -o $@

run: deps all
	scripts/run.sh

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration: all
	SLUICE_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q -ra tests/integration $(PYTEST_ARGS)

test: deps
	$(MAKE) all $(UNIT_BIN)
	$(MAKE) unit
	$(MAKE) integration

ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
test-asan: deps
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="$(ASAN_FLAGS)" test

test-tsan: deps
	TSAN_OPTIONS=halt_on_error=1:exitcode=66 \
	$(MAKE) BUILD=build-tsan OPT=-O1 SAN="-fsanitize=thread" test

FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
fuzz:
	@scripts/deps.sh clang
	$(MAKE) CC=clang BUILD=build-fuzz OPT=-O1 SAN="-fsanitize=fuzzer-no-link,address,undefined" \
	    $(patsubst tests/fuzz/%.c,build-fuzz/fuzz/%,$(FUZZ_SRC))

build-fuzz/fuzz/%: tests/fuzz/%.c $(CORE_OBJ) $(LLHTTP_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer $^ $(LDFLAGS) $(LDLIBS) -o $@

FUZZ_SECONDS ?= 60
fuzz-run: fuzz
	@set -e; for f in $(patsubst tests/fuzz/%.c,%,$(FUZZ_SRC)); do \
	    name=$${f#fuzz_}; mkdir -p build-fuzz/corpus/$$name; \
	    build-fuzz/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        build-fuzz/corpus/$$name tests/fuzz/corpus/$$name 2>&1 | tail -4; done

bench: all
	bench/compare.sh

FORMAT_SRC = src/*.[ch] tools/*/*.[ch] tests/unit/*.c tests/fuzz/*.c
format:
	clang-format -i $(FORMAT_SRC)

# What CI checks: the sources are as `make format` leaves them.
format-check:
	@scripts/deps.sh clang-format
	clang-format --dry-run -Werror $(FORMAT_SRC)

clean:
	rm -rf build build-asan build-tsan build-fuzz

include mk/install.mk

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
