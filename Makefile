# Every target does its own set-up: a fresh clone needs only Node 20 and npm.
NODE ?= node
MIMETIC = $(NODE) dist/src/cli/main.js

.PHONY: all build test demo clean bundle

all: build

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

build: node_modules/.installed
	npx tsc -p tsconfig.json

test: build
	$(NODE) --test --test-concurrency=1 dist/test/*.test.js

demo: build
	$(MIMETIC) inspect checkpoints/examples/mamba1-tiny

clean:
	rm -rf dist

# A self-contained bundle/ (node, pruned node_modules, dist, libvulkan1, run.sh) for the GPU host.
bundle: node_modules/.installed
	bash scripts/make-bundle.sh
