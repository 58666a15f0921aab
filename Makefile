# One task runner for humans and CI.
#
#   make demo         the main job: private containerd + NRI + plexus, two pods on an IoT
#                     macvlan network with static IPs (installs what is missing first)
#   make test         the whole suite: setup, fmt, clippy, every fuzz target for a short
#                     bounded time (fuzz-smoke), then unit, privileged and end-to-end tests
#   make fuzz FUZZ_TIME=600   each fuzz target for FUZZ_TIME seconds (nightly + cargo-fuzz)
#   make image        the plexus OCI image archive, without a registry
#
# Root is needed for the Debian packages, network namespaces and containerd.

SHELL := /bin/bash
export CARGO_TARGET_DIR ?= /var/cache/plexus/target
export PLEXUS_SKIP_LOG ?= $(CARGO_TARGET_DIR)/plexus-skips.log
# Incremental artifacts of every edited crate pile up in the persistent target dir (12 GB
# after a few days); a CI-style build gains little from them.
export CARGO_INCREMENTAL ?= 0
# Privileged tests (network namespaces, containerd) fail rather than return early when
# they cannot run. Set PLEXUS_REQUIRE_PRIVILEGED=0 to run only what works without root
# (the others print why they skip). Accepted: 0, false, 1, true (server/testkit/src/gate.rs).
export PLEXUS_REQUIRE_PRIVILEGED ?= 1
CARGO ?= cargo

.PHONY: image static-shim setup build fmt fmt-check clippy unit test ci demo bench explain-examples clean-skips report-skips prune-stale \
	fuzz-build fuzz-smoke fuzz

setup:
	bash integration/scripts/setup.sh

build:
	$(CARGO) build --workspace --bins

# server/fuzz is outside the workspace (its own, nightly): its files are checked directly.
FUZZ_SOURCES = server/fuzz/src/*.rs server/fuzz/fuzz_targets/*.rs

fmt:
	$(CARGO) fmt --all
	rustfmt --edition 2024 $(FUZZ_SOURCES)

fmt-check:
	$(CARGO) fmt --all -- --check
	rustfmt --edition 2024 --check $(FUZZ_SOURCES)

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean-skips:
	@mkdir -p $(CARGO_TARGET_DIR) && : > $(PLEXUS_SKIP_LOG)

# Tests that cannot run on this kernel (ipvlan, 802.1q vlan, bridge vlan filtering, as
# probed once per test process) record a named skip in $(PLEXUS_SKIP_LOG); it is printed
# and counted here so CI shows it. A skip of a feature not in .ci/expected-skips (or
# PLEXUS_EXPECTED_SKIPS, comma separated) fails its test (server/testkit/src/skip.rs).
report-skips:
	@n=$$(grep -c . $(PLEXUS_SKIP_LOG) 2>/dev/null || true); \
	echo "kernel-feature skips: $${n:-0}"; \
	[ -s $(PLEXUS_SKIP_LOG) ] && sed 's/^/  skipped: /' $(PLEXUS_SKIP_LOG) || true

unit: clean-skips
	@touch $(PRUNE_STAMP)
	$(CARGO) build --workspace --bins
	$(CARGO) nextest run --workspace --profile ci
	@$(MAKE) --no-print-directory report-skips
	@$(MAKE) --no-print-directory prune-stale

# In CI every run starts from a fresh clone, so every workspace test binary is linked
# anew: the ones older than this run are stale copies (about 300 MB each with debug info)
# that would fill the persistent target dir within a day of runs. Locally nothing is
# pruned (unchanged binaries are still current there).
PRUNE_STAMP = $(CARGO_TARGET_DIR)/.unit-started
prune-stale:
	@if [ "$${CI:-}" = true ] && [ -f $(PRUNE_STAMP) ]; then \
	  n=$$(find $(CARGO_TARGET_DIR)/debug/deps -maxdepth 1 -type f -perm -u+x \
	    ! -name '*.so' ! -name '*.rlib' ! -name '*.rmeta' ! -name '*.d' \
	    ! -newer $(PRUNE_STAMP) -print -delete | wc -l); \
	  echo "pruned $$n stale test binaries from $(CARGO_TARGET_DIR)/debug/deps"; \
	fi

test: setup fmt-check clippy fuzz-smoke unit

ci: test

demo: setup
	$(CARGO) build --release -p plexus-server -p plexus-nri -p plexus-client -p plexus-integration --bins
	$(CARGO_TARGET_DIR)/release/plexus-demo $(DEMO_ARGS)

# plexus-cni as the image ships it: install-cni copies it onto the hosts, where the runtime
# runs it against the host's own loader and C library (a Talos node has none of glibc; older
# distributions an older one), so it is linked statically, and not position-independent
# (nothing to relocate at each start). --target keeps the flags off build scripts and the
# other binaries; the flags are release_image::STATIC_SHIM_RUSTFLAGS.
HOST_TRIPLE := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
STATIC_SHIM = $(CARGO_TARGET_DIR)/$(HOST_TRIPLE)/release/plexus-cni
static-shim:
	RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
	  $(CARGO) build --release -p plexus-client --bin plexus-cni --target $(HOST_TRIPLE)

# The plexus image as an OCI archive (also `docker load`-able), built without a registry
# from the release binaries: $(CARGO_TARGET_DIR)/plexus-image.tar.
IMAGE ?= $(CARGO_TARGET_DIR)/plexus-image.tar
image: static-shim
	$(CARGO) build --release -p plexus-server -p plexus-nri -p plexus-client -p plexus-integration --bins
	@# The crash-matrix abort hook (engine feature crash-hooks) is for tests only.
	@! grep -q PLEXUS_CRASH_AT $(CARGO_TARGET_DIR)/release/plexusd || \
	  { echo "release plexusd carries the PLEXUS_CRASH_AT hook (crash-hooks feature)"; exit 1; }
	$(CARGO_TARGET_DIR)/release/plexus-image --bin-dir $(CARGO_TARGET_DIR)/release \
	  --shim $(STATIC_SHIM) --output $(IMAGE)

# The pod-latency benches run first: after the 200-pod bursts the machine stays loaded for
# minutes (not by the kernel destroying their namespaces: the burst bench measures those gone
# within about a second), which showed in the ratios of whatever ran next.
bench: setup static-shim
	$(CARGO) build --release --workspace --bins --benches
	PLEXUS_SHIM_BIN=$(STATIC_SHIM) \
	  $(CARGO) bench -p plexus-integration --bench paths --bench runpod --bench kube --bench containers
	$(CARGO) bench --workspace --exclude plexus-integration
	$(CARGO) bench -p plexus-integration --bench hotplug --bench burst

# Fuzzing (server/fuzz, its own workspace; cargo-fuzz on the nightly toolchain, which
# setup installs). Seeds come from the committed server/fuzz/corpus/<target>/; what the
# fuzzer adds goes to $(FUZZ_WORK)/{smoke,corpus}/<target>/ and crashing inputs to
# $(FUZZ_WORK)/artifacts/<target>/, all outside the checkout. A crash fails the target:
# reproduce it with `$(FUZZ_BIN)/<target> <artifact>`, fix it with a regression test and
# add the input to the committed corpus. Debug assertions stay on so that integer
# overflow panics as it does in the unit tests; no sanitizer (safe Rust: it would only
# halve the speed).
FUZZ_TARGET_DIR ?= /var/cache/plexus/target-fuzz
FUZZ_WORK ?= $(FUZZ_TARGET_DIR)/work
FUZZ_BIN = $(FUZZ_TARGET_DIR)/x86_64-unknown-linux-gnu/release
FUZZ_TARGETS := annotation nad_resolve cni_result network_status native_plan
FUZZ_SMOKE_TIME ?= 20
FUZZ_TIME ?= 600
FUZZ_RSS_MB ?= 2048
FUZZ_FLAGS = -rss_limit_mb=$(FUZZ_RSS_MB) -timeout=10 -max_len=8192 -print_final_stats=1

fuzz-build:
	CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR) $(CARGO) +nightly fuzz build --fuzz-dir server/fuzz -O --debug-assertions --sanitizer none

# Runs every target for $(1) seconds, one after the other, writing what it finds to
# $(2)/<target>; stops at the first crash.
define run_fuzzers
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(2)/$$t $(FUZZ_WORK)/artifacts/$$t; \
	  log=$(FUZZ_WORK)/$$t.log; \
	  echo "fuzz $$t: $(1)s (log $$log)"; \
	  if $(FUZZ_BIN)/$$t $(FUZZ_FLAGS) -max_total_time=$(1) \
	      -artifact_prefix=$(FUZZ_WORK)/artifacts/$$t/ \
	      $(2)/$$t server/fuzz/corpus/$$t >$$log 2>&1; then \
	    grep -E '^#[0-9]+[[:space:]]+DONE' $$log | sed 's/^/  /'; \
	  else \
	    tail -n 40 $$log; echo "fuzz $$t: FAILED, crashing input in $(FUZZ_WORK)/artifacts/$$t/"; exit 1; \
	  fi; \
	done
endef

# CI: from the committed corpus only (a fresh scratch corpus each run), so the time
# stays bounded however much earlier runs found.
fuzz-smoke: fuzz-build
	rm -rf $(FUZZ_WORK)/smoke
	$(call run_fuzzers,$(FUZZ_SMOKE_TIME),$(FUZZ_WORK)/smoke)

# Longer runs keep growing $(FUZZ_WORK)/corpus between runs.
fuzz: fuzz-build
	$(call run_fuzzers,$(FUZZ_TIME),$(FUZZ_WORK)/corpus)
