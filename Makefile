# vaultfs: `make demo` shows the main job end to end, `make test` runs every test.
SWIFT ?= swift
BIN := .build/debug
# C code (BoringSSL's scrypt, above all) optimised even in debug builds: an encrypted
# repository derives its key once per command, and at -O0 that takes a second.
SWIFTFLAGS ?= -Xcc -O2

.PHONY: all deps build release release-binaries install uninstall deb test demo bench soak fuzz clean format lint
PREFIX ?= /usr/local
DESTDIR ?=
# Release binaries with the Swift runtime linked in (they run without a toolchain), and the
# man pages made from the ArgumentParser definitions (by swift-argument-parser's own
# generate-manual, built in a folder of its own: sharing one would rebuild everything each
# time); kept apart from the debug build.
STATIC := .build-static

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build $(SWIFTFLAGS) --product vaultctl
	$(SWIFT) build $(SWIFTFLAGS) --product vaultfs

# The two binaries alone, as shipped (also what `make bench` measures).
release-binaries:
	$(SWIFT) build -c release --static-swift-stdlib --build-path $(STATIC) --product vaultctl
	$(SWIFT) build -c release --static-swift-stdlib --build-path $(STATIC) --product vaultfs

release: deps release-binaries
	$(SWIFT) build -c release --build-path $(STATIC)/tools --product generate-manual
	rm -rf $(STATIC)/man && mkdir -p $(STATIC)/man
	$(STATIC)/tools/release/generate-manual $(STATIC)/release/vaultctl --multi-page --section 8 \
		--authors "the vaultfs developers" --output-directory $(STATIC)/man
	for page in $(STATIC)/man/*.8; do awk -f scripts/man-names.awk "$$page" > "$$page.tmp" && mv "$$page.tmp" "$$page"; done

install: release
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" scripts/install.sh install

uninstall:
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" scripts/install.sh uninstall

deb: release
	scripts/make-deb.sh

test: deps lint release
	scripts/install-deps.sh --test
	scripts/make-deb.sh
	$(SWIFT) build $(SWIFTFLAGS) --build-tests
	SWIFT=$(SWIFT) scripts/test.sh

# swift-format with the committed .swift-format (4 spaces, 120 columns); `lint` fails on
# anything `format` would change, on a VaultCore folder using one above it, on GRDB outside
# Catalog/ and on a force-unwrapped id.
format:
	$(SWIFT) format -i -r -p Sources Tests Package.swift

lint:
	$(SWIFT) format lint --strict -r -p Sources Tests Package.swift
	scripts/check-layers.py
	@if grep -rn --include='*.swift' '\.id!' Sources; then echo "lint: ids are not optional; drop the '!'"; exit 1; fi

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
	rm -rf .build $(STATIC) demo-work bench-work vaultfs_*.deb
