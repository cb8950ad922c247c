# SPDX-License-Identifier: GPL-2.0
#
# dmabuf-vfio-pci: out-of-tree build, demo and checks.
#
#   make              build dmabuf-vfio-pci.ko (against the cached test kernel,
#                     or KDIR=/path/to/a/Rust-enabled/kernel/build/tree)
#   make demo         install deps, build everything, boot a guest, show it work
#   make bench        our exporter against in-tree vfio-pci's, side by side,
#                     on Debian's stock kernel and on the test kernel
#   make check        lint + every guest selftest; ends with "N passed, N failed"
#   make fuzz [SEED=n] [SECONDS=1800] [THREADS=4] [TARGETS="ours vfio"]
#                     the uAPI fuzzer in a guest, against this driver and
#                     in-tree vfio-pci side by side; SEED replays a campaign
#   make install [INSTALL_MOD_PATH=/staging]
#                     install the module into /lib/modules/<release>/updates/
#                     of KDIR's kernel and run depmod
#   make headers_install [INSTALL_HDR_PATH=/usr]
#                     install the uAPI header (linux/dmabuf_vfio_pci.h)
#   make intree       build the driver in-tree in the test kernel tree
#                     (drivers/vfio/pci/dmabuf-vfio-pci/, scripts/intree.sh)
#
# DKMS: dkms.conf builds it with KDIR=/lib/modules/<release>/build, which must
# be a Rust-enabled build tree (see Documentation/dmabuf-vfio-pci.rst).
#   make clean
#
# The module itself is described by Kbuild.

SHELL := /bin/bash
src := $(CURDIR)

# The cached test kernel (scripts/kernel.sh) unless the user names a tree.
ifeq ($(origin KDIR),undefined)
KDIR_IS_TEST_KERNEL := 1
KDIR = $(shell $(src)/scripts/kernel.sh --path)
endif

# A tree built by the project's rustc (scripts/env.sh) is built with the
# project's toolchain; a tree built by another rustc, a distribution's
# (scripts/distro-kdir.sh) or the user's own, with the system's rustc and
# bindgen.  A GCC-built tree with the C compiler its .config names.
ifndef KDIR_IS_TEST_KERNEL
KDIR_RUSTC := $(shell sed -n 's/^CONFIG_RUSTC_VERSION_TEXT="rustc \([^ ]*\).*/\1/p' $(KDIR)/.config 2>/dev/null)
PROJECT_RUSTC := $(shell . $(src)/scripts/env.sh && echo $$PROJECT_RUSTC)
ifneq ($(KDIR_RUSTC),)
ifneq ($(KDIR_RUSTC),$(PROJECT_RUSTC))
export DMABUF_NATIVE_TOOLCHAIN := 1
endif
endif
ifeq ($(shell grep -sqx CONFIG_CC_IS_GCC=y $(KDIR)/.config && echo gcc),gcc)
LLVM ?=
ifeq ($(origin CC),default)
CC := $(firstword $(shell sed -n 's/^CONFIG_CC_VERSION_TEXT="\(.*\)"/\1/p' $(KDIR)/.config))
endif
endif
endif
LLVM ?= -19

# DKMS appends CC=clang LD=ld.lld for a clang-built kernel; with LLVM= set,
# the kernel's own Makefile picks the matching clang$(LLVM) and ld.lld$(LLVM),
# so those guesses must not reach it.
ifneq ($(LLVM),)
MAKEOVERRIDES := $(filter-out CC=% LD=%,$(MAKEOVERRIDES))
endif

# Tools installed by scripts/install-deps.sh live in the cache, not on PATH.
ENV := source $(src)/scripts/env.sh &&
KMAKE = $(ENV) $(MAKE) -C $(KDIR) M=$(src) LLVM=$(LLVM) BINDGEN=$$BINDGEN \
	$(if $(LLVM),,CC=$(CC)) CONFIG_DMABUF_VFIO_PCI=m

# The driver logic at the top, the abstraction layer below kernel_ext/.
RUST_SRCS := $(filter-out %/bindings_generated.rs,$(wildcard $(src)/*.rs \
	$(src)/kernel_ext/*.rs $(src)/kernel_ext/*/*.rs))
C_SRCS := $(wildcard $(src)/*.c $(src)/include/*.h)

.PHONY: all modules deps kernel demo bench bench-stable check check-under-load lint fmt rustfmt-check clippy \
	checkpatch selftests fuzz install headers_install intree clean

all: modules

deps:
	@$(src)/scripts/install-deps.sh

ifdef KDIR_IS_TEST_KERNEL
kernel: deps
	@$(src)/scripts/kernel.sh >/dev/null
modules: kernel
else
kernel:
	@echo "KDIR=$(KDIR) is the user's tree: not building a kernel"
endif

modules:
	@$(ENV) LLVM=$(LLVM) $(src)/scripts/check-kdir.sh "$(KDIR)"
	@$(KMAKE) modules

fmt:
	@$(ENV) rustfmt --edition 2021 --config-path $(KDIR)/.rustfmt.toml $(RUST_SRCS)

rustfmt-check:
	@$(ENV) rustfmt --check --edition 2021 --config-path $(KDIR)/.rustfmt.toml $(RUST_SRCS)

# Clippy runs as the Rust compiler of a full rebuild; WERROR turns its
# warnings into failures, as for rustc's own.
clippy: modules
	@$(KMAKE) CLIPPY=1 modules

CHECKPATCH = $(KDIR)/scripts/checkpatch.pl --no-tree --quiet --show-types \
	--ignore SPDX_LICENSE_TAG,FILE_PATH_CHANGES

# Userspace tests touch MMIO through volatile pointers on purpose.
checkpatch:
	@$(CHECKPATCH) -f $(C_SRCS)
	@$(CHECKPATCH) --ignore VOLATILE -f $(wildcard $(src)/tools/selftests/*.[ch]) \
		$(src)/tools/selftests/importer/dmabuf_test_importer.[ch]

lint: rustfmt-check clippy checkpatch

selftests: modules
	@$(ENV) $(MAKE) -C $(src)/tools/selftests KDIR=$(KDIR)

demo: deps selftests
	@$(src)/tools/selftests/run.sh --demo

# Debian's stock kernel first (no KASAN, no lockdep: what users run), then
# the test kernel.
bench: deps selftests
	@$(src)/tools/selftests/run.sh --stock-bench
	@$(src)/tools/selftests/run.sh --bench

# Debian's stock kernel's table (KERNEL=test: the test kernel's) three
# times, folded into one (tools/selftests/bench_summary.py): how far each
# row moves between boots.
BENCH_MODE = $(if $(filter test,$(KERNEL)),bench,stock-bench)
bench-stable: deps selftests
	@for i in 1 2 3; do \
		log=$(src)/tools/selftests/results-$(BENCH_MODE).$$i.log; \
		echo "[bench] boot $$i of 3 ($$log)"; \
		$(src)/tools/selftests/run.sh --$(BENCH_MODE) >$$log 2>&1 || { cat $$log; exit 1; }; \
	done
	@$(src)/tools/selftests/bench_summary.py $(src)/tools/selftests/results-$(BENCH_MODE).[123].log

FUZZ_SEED = $(or $(SEED),$(shell date +%s))
# KERNEL=stock: on Debian's stock kernel instead of the test kernel.
fuzz: deps selftests
	@$(src)/tools/selftests/run.sh $(if $(filter stock,$(KERNEL)),--stock-fuzz,--fuzz) $(FUZZ_SEED) $(or $(SECONDS),1800) $(or $(THREADS),4) \
		$(or $(TARGETS),ours vfio)

check: deps kernel
	@$(src)/scripts/check.sh

check-under-load: deps kernel
	@$(src)/scripts/check-under-load.sh

# Kbuild installs external modules under updates/, which depmod searches
# before the kernel's own directory, and runs depmod when KDIR has System.map.
install: modules
	@$(KMAKE) INSTALL_MOD_DIR=updates modules_install

intree: kernel
	@$(ENV) $(src)/scripts/intree.sh --build $(KDIR)

INSTALL_HDR_PATH ?= /usr
headers_install:
	install -D -m 0644 $(src)/include/uapi/linux/dmabuf_vfio_pci.h \
		$(DESTDIR)$(INSTALL_HDR_PATH)/include/linux/dmabuf_vfio_pci.h

clean:
	@if [ -d "$(KDIR)" ]; then $(KMAKE) clean; fi
	@$(MAKE) -C $(src)/tools/selftests clean
