# vaultfs: `make demo` shows the main job end to end, `make test` runs every test.
SWIFT ?= swift
BIN := .build/debug

.PHONY: all deps build test demo bench clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build --product vaultctl
	$(SWIFT) build --product vaultfs

test: deps
	$(SWIFT) build --build-tests
	SWIFT=$(SWIFT) scripts/test.sh

demo: build
	scripts/demo.sh $(BIN)

bench: deps
	scripts/bench.sh

clean:
	rm -rf .build demo-work bench-work
