# Makefile — builds pixmill, its unit tests, the store benches and fuzzers.
#
#   make               build/pixmill (release: -O2, jemalloc)
#   make test          unit tests + CLI tests (scripts/test.sh runs the lot)
#   make SAN=1         build-asan/: ASan+UBSan, system malloc
#   make fuzz          build-fuzz/: libFuzzer targets (clang)
#   make format        clang-format -i over src tests fuzz bench
PKGS := vips gmodule-2.0 sqlite3 libpq hiredis jansson libcrypto libcurl libmicrohttpd zlib libbrotlienc libbrotlidec libzstd tesseract lept pangocairo
CC ?= cc
ifeq ($(SAN),1)
BUILD ?= build-asan
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT := -O1
MALLOC :=
else
BUILD ?= build
SANFLAGS :=
OPT := -O2
MALLOC := -ljemalloc
endif
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GITREV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# Where libvips keeps its dynamic modules (HEIF/AVIF is loaded on demand).
VIPS_MODULEDIR := $(shell pkg-config --variable=libdir vips)/vips-modules-$(shell pkg-config --modversion vips | cut -d. -f1,2)
CFLAGS := -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
	-Isrc $(shell pkg-config --cflags $(PKGS)) -pthread $(SANFLAGS) \
	-DPM_VERSION='"$(VERSION)"' -DPM_GITREV='"$(GITREV)"' \
	-DPM_VIPS_MODULEDIR='"$(VIPS_MODULEDIR)"' $(EXTRA_CFLAGS)
LDLIBS := $(shell pkg-config --libs $(PKGS)) $(MALLOC) -lpthread -lm
# ONNX Runtime (src/ml/): scripts/fetch-ort.sh puts the npm-shipped headers
# and libonnxruntime.so into deps/onnxruntime/. We link that exact file (its
# symbols are versioned VERS_1.29.0; SONAME libonnxruntime.so.1) and record
# $ORIGIN-relative run paths, so build*/pixmill, build*/tests/* and
# build-fuzz/* find it from any checkout location without LD_LIBRARY_PATH.
ORT_DIR := deps/onnxruntime
ORT_SO := $(ORT_DIR)/lib/libonnxruntime.so.1.29.0
ORT_LIBS := $(ORT_SO) '-Wl,-rpath,$$ORIGIN/../$(ORT_DIR)/lib:$$ORIGIN/../../$(ORT_DIR)/lib'
CFLAGS += -I$(ORT_DIR)/include
LDLIBS += $(ORT_LIBS)

LIB_SRC := $(sort $(filter-out src/cli/%,$(wildcard src/*/*.c)))
CLI_SRC := $(sort $(wildcard src/cli/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/unit/test_*.c))
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)

all: $(BUILD)/pixmill $(TEST_BIN)

$(BUILD)/libpixmill.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/pixmill: $(CLI_OBJ) $(BUILD)/libpixmill.a
	@echo "  LD $@"
	@$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libpixmill.a $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libpixmill.a tests/unit/test.h
	@mkdir -p $(@D)
	@echo "  CCLD $@"
	@$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(BUILD)/libpixmill.a $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	@echo "  CC $<"
	@$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

$(filter $(BUILD)/src/ml/%,$(LIB_OBJ)): | $(ORT_DIR)/include/onnxruntime_c_api.h
$(ORT_DIR)/%:
	@echo "missing $@: run scripts/fetch-ort.sh (or scripts/install-deps.sh)" >&2; exit 1

# The test origin (tests/fetch/origin.c): a programmable HTTP server on
# loopback with injectable faults, for test_fetch, the CLI and network
# tests and bench/net.sh, which take it from the build of the binary under
# test ($(BUILD)/tests/origin). libc and pthreads only; built by `all`.
ORIGIN_CFLAGS := -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -Wshadow -pthread \
	$(SANFLAGS) $(EXTRA_CFLAGS)
all: $(BUILD)/tests/origin
$(BUILD)/tests/origin: tests/fetch/origin.c
	@mkdir -p $(@D)
	@echo "  CCLD $@"
	@$(CC) $(ORIGIN_CFLAGS) -o $@ $< -lpthread

# The OCR test cards (tests/ocr/gen_cards.c): renders tests/ocr/recipes.txt
# with libvips/Pango for tests/ocr/run.sh and bench/ocr.sh. Built by `all`.
all: $(BUILD)/tests/gen_cards
$(BUILD)/tests/gen_cards: tests/ocr/gen_cards.c
	@mkdir -p $(@D)
	@echo "  CCLD $@"
	@$(CC) $(ORIGIN_CFLAGS) $(shell pkg-config --cflags vips) -o $@ $< $(shell pkg-config --libs vips) -lm

# The store benches (bench/store.sh, bench/queue.sh, bench/prune.sh): bench/NAME.c with
# the set-up they share (bench/bench_fixture.c) against libpixmill.a, into
# $(BUILD)/bench/NAME. Built by `all`, so a change of the store API that
# breaks them shows at once.
STORE_BENCH := $(BUILD)/bench/store_bench $(BUILD)/bench/queue_bench \
	$(BUILD)/bench/prune_bench
all: $(STORE_BENCH)
$(STORE_BENCH): $(BUILD)/bench/%: bench/%.c bench/bench_fixture.c bench/bench_fixture.h $(BUILD)/libpixmill.a
	@mkdir -p $(@D)
	@echo "  CCLD $@"
	@$(CC) $(CFLAGS) -o $@ $< bench/bench_fixture.c $(BUILD)/libpixmill.a $(LDLIBS)

# libFuzzer targets: one per parser of outside input.
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=build-fuzz/%)
FUZZ_CFLAGS := -std=gnu11 -O1 -g -Isrc $(shell pkg-config --cflags $(PKGS)) -pthread \
	-fsanitize=fuzzer,address,undefined -DPM_VERSION='"fuzz"' -DPM_GITREV='"fuzz"' \
	-I$(ORT_DIR)/include
fuzz: $(FUZZ_BIN)
build-fuzz/%: fuzz/%.c $(LIB_SRC) $(ORT_SO)
	@mkdir -p $(@D)
	@echo "  FUZZ $@"
	@clang $(FUZZ_CFLAGS) -o $@ $< $(LIB_SRC) $(shell pkg-config --libs $(PKGS)) -lpthread -lm $(ORT_LIBS)

# The dashboard served at / (web/), embedded in the binary:
# scripts/embed-web.py turns web/* and uPlot's dist files (web/node_modules,
# fetched by `npm ci` in web/, pinned by web/package-lock.json) into
# $(BUILD)/gen/web_assets.c (src/serve/web_assets.h), which goes into
# libpixmill.a and so into pixmill, the unit tests and the ASan build.
WEB_SRC := $(sort $(wildcard web/*.html web/*.js web/*.css web/*.svg)) \
	web/LICENSES web/package.json
WEB_VENDOR := $(addprefix web/node_modules/uplot/,package.json LICENSE \
	dist/uPlot.iife.min.js dist/uPlot.min.css)
WEB_OBJ := $(BUILD)/gen/web_assets.o
LIB_OBJ += $(WEB_OBJ)
$(BUILD)/libpixmill.a: $(WEB_OBJ)
%/gen/web_assets.c: scripts/embed-web.py $(WEB_SRC) $(WEB_VENDOR)
	@mkdir -p $(@D)
	@echo "  GEN $@"
	@python3 scripts/embed-web.py $@
$(WEB_OBJ): $(BUILD)/gen/web_assets.c src/serve/web_assets.h
	@echo "  CC $<"
	@$(CC) $(CFLAGS) -c -o $@ $<
web/node_modules/%:
	@echo "missing $@: run scripts/install-deps.sh (npm ci in web/)" >&2; exit 1
# make fuzz compiles $(LIB_SRC) itself: hand it the generated file too.
$(FUZZ_BIN): build-fuzz/gen/web_assets.c
$(FUZZ_BIN): LIB_SRC += build-fuzz/gen/web_assets.c

test: all
	scripts/test.sh

format:
	clang-format -i $$(find src tests fuzz bench -name '*.[ch]')

clean:
	rm -rf build build-asan build-fuzz

.PHONY: all test fuzz format clean
