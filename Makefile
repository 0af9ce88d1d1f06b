# tide — build, test, run.  `make` builds ./tide; `make test` installs deps, builds, tests.
CC      ?= cc
VERSION ?= 0.1.0
BUILD   ?= build
OPT     ?= -O2
PKGS     = lua5.4 libcurl libpq libedit libcrypto zlib libbrotlidec libzstd
CJSON_A ?= $(firstword $(wildcard /usr/lib/*/liblua5.4-cjson.a /usr/lib/liblua5.4-cjson.a))
PYTHON  ?= /usr/bin/python3
DEMO_RACE ?= 0
CFLAGS  += -std=c11 -D_GNU_SOURCE -DTIDE_VERSION=\"$(VERSION)\" $(OPT) -g -Wall -Wextra -Werror -pthread \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -Isrc -I$(BUILD)
LDLIBS  += $(CJSON_A) $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lm -pthread
BIN     ?= tide
# The unit tests also compress what they decode (src/decode.c's tests).
UNIT_LDLIBS = $(shell pkg-config --libs libbrotlienc 2>/dev/null)

SRCS    := $(wildcard src/*.c)
OBJS    := $(SRCS:src/%.c=$(BUILD)/%.o) $(BUILD)/embedded.o
LIBOBJS := $(filter-out $(BUILD)/main.o,$(OBJS))
LUA     := $(shell find lua -name '*.lua' | sort)
SCN     := $(wildcard scenarios/*.lua)
EMBED   := $(foreach f,$(LUA),$(subst /,.,$(patsubst lua/%.lua,%,$(f)))=$(f)) \
           $(foreach f,$(SCN),scenario:$(patsubst scenarios/%.lua,%,$(f))=$(f))
UNIT    := $(patsubst tests/unit/%.c,$(BUILD)/%,$(wildcard tests/unit/test_*.c))

DEBS = gcc make pkg-config liblua5.4-dev libcurl4-openssl-dev libssl-dev lua-cjson-dev libpq-dev \
       libedit-dev nginx wrk postgresql redis-server python3-flask python3-celery \
       python3-redis python3-psycopg2 python3-pytest python3-pexpect gunicorn python3-httpbin openssh-server openssh-client valgrind \
       chromium python3-websocket time zlib1g-dev libbrotli-dev libzstd-dev libhttp-parser-dev \
       zip busybox-static

.PHONY: all deps test unit systest depcheck asan run bench clean lambda
all: $(BIN)

$(BIN): $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

$(BUILD)/%.o: src/%.c $(wildcard src/*.h) | $(BUILD)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/embed: tools/embed.c | $(BUILD)
	$(CC) -std=c11 -O1 -Wall -Wextra -Werror -o $@ $<

$(BUILD)/embedded.c: $(BUILD)/embed $(LUA) $(SCN)
	$(BUILD)/embed $@ $(EMBED)

$(BUILD)/embedded.o: $(BUILD)/embedded.c src/embedded.h
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/test_%: tests/unit/test_%.c $(LIBOBJS) tests/unit/check.h
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(LIBOBJS) $(LDLIBS) $(UNIT_LDLIBS)

$(BUILD):
	mkdir -p $@

# Installs the Debian packages tide builds and tests with; quiet and quick when present.
deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
	  grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  sudo=$$( [ $$(id -u) -eq 0 ] || echo sudo ); \
	  echo "installing:" $$missing; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

# The dependency graph of src/ (includes and link level) must have no cycle.
depcheck: $(BIN)
	$(PYTHON) tools/depgraph.py $(BUILD) src

unit: $(UNIT)
	@for t in $(UNIT); do echo "== $$t"; $$t || exit 1; done

systest: $(BIN)
	TIDE=$(abspath $(BIN)) $(PYTHON) -m pytest -q -x tests/system

test: deps
	$(MAKE) $(BIN) unit depcheck
	$(MAKE) systest

# The same tests on a build with AddressSanitizer + UndefinedBehaviorSanitizer.
ASAN_FLAGS = BUILD=build-asan BIN=tide-asan LDFLAGS="-fsanitize=address,undefined" \
  OPT="-O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
asan:
	$(MAKE) $(ASAN_FLAGS) tide-asan unit systest

# The main job on its default: the webserver scenario against the demo service.
run: deps $(BIN)
	DEMO_RACE=$(DEMO_RACE) tests/run-demo.sh $(ARGS)

# The AWS Lambda package: bootstrap, tide, the libraries it needs with their
# loader (README, "AWS Lambda"); prints its sizes.
lambda: tide-lambda.zip

tide-lambda.zip: $(BIN) tools/lambda-zip.sh
	tools/lambda-zip.sh $(BIN) $@

bench: deps $(BIN)
	tests/bench/vs-wrk.sh

clean:
	rm -rf build build-asan tide tide-asan tide-lambda.zip
