# Makefile — builds pixmill, its unit tests and fuzzers.
#
#   make               build/pixmill (release: -O2, jemalloc)
#   make test          unit tests + CLI tests (scripts/test.sh runs the lot)
#   make SAN=1         build-asan/: ASan+UBSan, system malloc
#   make fuzz          build-fuzz/: libFuzzer targets (clang)
#   make format        clang-format -i over src tests fuzz bench
PKGS := vips gmodule-2.0 sqlite3 jansson libcrypto libcurl
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

# libFuzzer targets: one per parser of outside input.
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=build-fuzz/%)
FUZZ_CFLAGS := -std=gnu11 -O1 -g -Isrc $(shell pkg-config --cflags $(PKGS)) -pthread \
	-fsanitize=fuzzer,address,undefined -DPM_VERSION='"fuzz"' -DPM_GITREV='"fuzz"'
fuzz: $(FUZZ_BIN)
build-fuzz/%: fuzz/%.c $(LIB_SRC)
	@mkdir -p $(@D)
	@echo "  FUZZ $@"
	@clang $(FUZZ_CFLAGS) -o $@ $< $(LIB_SRC) $(shell pkg-config --libs $(PKGS)) -lpthread -lm

test: all
	scripts/test.sh

format:
	clang-format -i $$(find src tests fuzz bench -name '*.[ch]')

clean:
	rm -rf build build-asan build-fuzz

.PHONY: all test fuzz format clean
