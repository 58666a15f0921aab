# One task runner for humans and CI.
#
#   sudo make demo    the main job: private containerd + NRI + plexus, two pods on an IoT
#                     macvlan network with static IPs (installs what is missing first)
#   sudo make test    the whole suite: setup, fmt, clippy, unit, privileged and end-to-end tests
#   make image        the plexus OCI image archive, without a registry
#
# Root is needed for the Debian packages, network namespaces and containerd.

SHELL := /bin/bash
export CARGO_TARGET_DIR ?= /var/cache/plexus/target
export PLEXUS_SKIP_LOG ?= $(CARGO_TARGET_DIR)/plexus-skips.log
# Privileged tests (network namespaces, containerd) fail rather than return early when
# they cannot run. Set PLEXUS_REQUIRE_PRIVILEGED=0 to run only what works without root.
export PLEXUS_REQUIRE_PRIVILEGED ?= 1
CARGO ?= cargo

.PHONY: image setup build fmt fmt-check clippy unit test ci demo bench explain-examples clean-skips report-skips

setup:
	bash integration/scripts/setup.sh

build:
	$(CARGO) build --workspace --bins

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean-skips:
	@mkdir -p $(CARGO_TARGET_DIR) && : > $(PLEXUS_SKIP_LOG)

# Tests that cannot run on this kernel (ipvlan, 802.1q vlan) record a named skip in
# $(PLEXUS_SKIP_LOG); it is printed and counted here so CI shows it.
report-skips:
	@n=$$(grep -c . $(PLEXUS_SKIP_LOG) 2>/dev/null || true); \
	echo "kernel-feature skips: $${n:-0}"; \
	[ -s $(PLEXUS_SKIP_LOG) ] && sed 's/^/  skipped: /' $(PLEXUS_SKIP_LOG) || true

unit: clean-skips
	$(CARGO) build --workspace --bins
	$(CARGO) nextest run --workspace --profile ci
	@$(MAKE) --no-print-directory report-skips

test: setup fmt-check clippy unit

ci: test

demo: setup
	$(CARGO) build --release -p plexus-server -p plexus-nri -p plexus-client -p plexus-integration --bins
	$(CARGO_TARGET_DIR)/release/plexus-demo $(DEMO_ARGS)

# The plexus image as an OCI archive (also `docker load`-able), built without a registry
# from the release binaries: $(CARGO_TARGET_DIR)/plexus-image.tar.
IMAGE ?= $(CARGO_TARGET_DIR)/plexus-image.tar
image:
	$(CARGO) build --release -p plexus-server -p plexus-nri -p plexus-client -p plexus-integration --bins
	$(CARGO_TARGET_DIR)/release/plexus-image --bin-dir $(CARGO_TARGET_DIR)/release --output $(IMAGE)

bench: setup
	$(CARGO) build --release --workspace --bins --benches
	$(CARGO) bench --workspace
