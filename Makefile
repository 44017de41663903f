# vaultfs: `make demo` shows the main job end to end, `make test` runs every test.
SWIFT ?= swift
BIN := .build/debug
# C code (BoringSSL's scrypt, above all) optimised even in debug builds: an encrypted
# repository derives its key once per command, and at -O0 that takes a second.
SWIFTFLAGS ?= -Xcc -O2

.PHONY: all deps build test demo bench soak fuzz clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build $(SWIFTFLAGS) --product vaultctl
	$(SWIFT) build $(SWIFTFLAGS) --product vaultfs

test: deps
	$(SWIFT) build $(SWIFTFLAGS) --build-tests
	SWIFT=$(SWIFT) scripts/test.sh

# Long forms of the bounded soak and fuzz runs in `make test`.
soak: deps
	$(SWIFT) build $(SWIFTFLAGS) --build-tests
	VAULTFS_SOAK_SECONDS=900 SWIFT=$(SWIFT) scripts/test.sh --filter SoakTests

fuzz: deps
	$(SWIFT) build $(SWIFTFLAGS) --build-tests
	VAULTFS_FUZZ_ITERATIONS=200000 SWIFT=$(SWIFT) scripts/test.sh --filter 'DecoderFuzzTests|FilesystemFuzzTests'

demo: build
	scripts/demo.sh $(BIN)

bench: deps
	scripts/bench.sh

clean:
	rm -rf .build demo-work bench-work
