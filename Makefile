# Every target does its own set-up: a fresh clone needs only Node 20 and npm.
NODE ?= node
MIMETIC = $(NODE) dist/src/cli/main.js

.PHONY: all build test demo reproduce clean bundle

all: build

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

build: node_modules/.installed
	npx tsc -p tsconfig.json
	bash native/vk-gpu-select/build.sh

# Installs Chromium and lavapipe first when run as root with apt (scripts/test-deps.sh); elsewhere the
# tests needing them skip with one line naming what to install. Ends on `N passed, N failed, N skipped`.
test: build
	bash scripts/test-deps.sh
	$(NODE) --test --test-concurrency=1 --test-reporter=./dist/test/helpers/summary-reporter.js \
	  --test-reporter-destination=stdout dist/test/*.test.js

# The main job on the bundled example, offline: inspect, audit + report, and a short copy-task run.
demo: build
	$(MIMETIC) inspect checkpoints/examples/mamba1-tiny
	$(MIMETIC) score checkpoints/examples/mamba1-tiny --backend wasm
	$(MIMETIC) report checkpoints/examples/mamba1-tiny --backend wasm --out reports/mamba1-tiny
	rm -rf runs/demo-copy
	$(MIMETIC) train --task copy --arch mamba1 --n-layers 2 --d-model 32 --d-state 8 --init mimetic \
	  --alphabet 4 --min-len 2 --max-len 4 --context 32 --batch-size 16 --steps 150 --lr 5e-3 --warmup 10 \
	  --eval-every 50 --eval-examples 32 --eval-lengths 6 --seed 0 --backend wasm --log-every 25 --out runs/demo-copy
	@echo "demo: report in reports/mamba1-tiny/index.html, training run in runs/demo-copy/"

# Issue 11's cheapest separating comparison (experiments/reproduce.json), on a GPU: 6 copy runs of about
# 80 s on one H200, then default vs mimetic per length with Welch's t. Resumable: run it again to continue.
reproduce: build
	$(MIMETIC) sweep experiments/reproduce.json --backend webgpu --out runs/reproduce --compare default,mimetic

clean:
	rm -rf dist

# A self-contained bundle/ (node, pruned node_modules, dist, libvulkan1, run.sh) for the GPU host.
bundle: node_modules/.installed
	bash scripts/make-bundle.sh
