# SPDX-License-Identifier: GPL-2.0-only
#
# dm-imgfmt: the kernel module (built through kbuild, see Kbuild) and the
# userspace helper.  Targets:
#   make [KDIR=...]   module and helper
#   make install      module (with depmod) and helper on this machine
#   make check        every test: unit, fuzz, lint, and the in-VM suite on
#                     Debian's 6.1 and 6.12 kernels; prints TAP and a last
#                     line "N passed, N failed"
#   make demo         boots the VM and shows a qcow2 file system attached
#   make lint         W=1, sparse (endian) and checkpatch --strict
#   make fuzz         the libFuzzer targets for longer (FUZZ_SECONDS)
#   make bench        fio in the VM: dm-imgfmt against dm-linear and qemu-nbd
#   make profile      guest-kernel instructions per read, by function, of
#                     dm-imgfmt against dm-linear (PROF_KERNEL, PROF_IOS)

KVER ?= $(shell uname -r)
KDIR ?= $(firstword $(wildcard /lib/modules/$(KVER)/build) \
		    $(lastword $(sort $(wildcard /lib/modules/*/build))))
PREFIX ?= /usr/local
FUZZ_SECONDS ?= 300

.PHONY: all module helper install clean check demo lint fuzz probe bench profile

all: module helper

probe:
	@test -n "$(KDIR)" || { echo "no kernel build directory: set KDIR" >&2; exit 1; }
	scripts/compat-probe.sh $(KDIR) dm-imgfmt/compat-probes dm-imgfmt/compat-probed.h

module: probe
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

helper:
	$(MAKE) -C userspace

install: all
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules_install
	depmod -a $(notdir $(patsubst %/build,%,$(KDIR)))
	$(MAKE) -C userspace install PREFIX=$(PREFIX)

check:
	selftests/check.sh

demo:
	selftests/demo.sh

lint:
	selftests/lint.sh

bench:
	selftests/bench/run.sh

profile:
	selftests/bench/insnprof/run.sh

fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) selftests/fuzz/run.sh

clean:
	-test -z "$(KDIR)" || $(MAKE) -C $(KDIR) M=$(CURDIR) clean
	$(MAKE) -C userspace clean
	rm -f dm-imgfmt/compat-probed.h
	rm -rf build
