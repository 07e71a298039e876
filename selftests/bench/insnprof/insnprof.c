// SPDX-License-Identifier: GPL-2.0-only
/*
 * A QEMU TCG plugin that counts the guest kernel's executed instructions
 * per translation block.  Each time the guest runs the block at marker=
 * (the first block of ksys_sync(), so `sync` in the guest), the counts so
 * far are written to out=PREFIX.N, one "address instructions runs" line
 * per block that ran (the runs of a function's first block are its
 * calls), and counting starts again: the guest brackets what it wants
 * measured with sync.  Exact with -icount, where every guest
 * instruction is one nanosecond of guest time; an interrupted block is
 * counted whole (rare).  The instructions of user space are only added
 * up: each dump ends with a "# user N" line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "qemu_plugin_api.h"

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* x86-64 kernel addresses: user space is not counted. */
#define KERNEL_START	0xffff800000000000ULL

struct block {
	uint64_t vaddr;
	uint64_t insns;		/* in the block */
	uint64_t runs;		/* since the last dump; the inline op adds */
	struct block *next;
};

static struct block *blocks;
static uint64_t marker;
static const char *out_prefix = "insnprof";
static unsigned int phase;
static uint64_t user_insns;	/* since the last dump; inline adds */

static void dump(unsigned int vcpu, void *unused)
{
	char name[4096];
	struct block *b;
	FILE *f;

	(void)vcpu;
	(void)unused;
	snprintf(name, sizeof(name), "%s.%u", out_prefix, phase++);
	f = fopen(name, "w");
	for (b = blocks; b; b = b->next) {
		if (b->runs && f)
			fprintf(f, "%" PRIx64 " %" PRIu64 " %" PRIu64 "\n",
				b->vaddr, b->runs * b->insns, b->runs);
		b->runs = 0;
	}
	if (f) {
		fprintf(f, "# user %" PRIu64 "\n", user_insns);
		fclose(f);
	}
	user_insns = 0;
}

/* A block being translated: count its runs (a block retranslated counts
 * in two records, which the analysis adds up). */
static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	uint64_t va = qemu_plugin_tb_vaddr(tb);
	struct block *b;

	(void)id;
	if (va < KERNEL_START) {
		qemu_plugin_register_vcpu_tb_exec_inline(tb,
			QEMU_PLUGIN_INLINE_ADD_U64, &user_insns,
			qemu_plugin_tb_n_insns(tb));
		return;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return;
	b->vaddr = va;
	b->insns = qemu_plugin_tb_n_insns(tb);
	b->next = blocks;
	blocks = b;
	qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64,
						 &b->runs, 1);
	if (va == marker)
		qemu_plugin_register_vcpu_tb_exec_cb(tb, dump,
						     QEMU_PLUGIN_CB_NO_REGS,
						     NULL);
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
			int argc, char **argv)
{
	int i;

	(void)info;
	for (i = 0; i < argc; i++) {
		if (!strncmp(argv[i], "marker=", 7))
			marker = strtoull(argv[i] + 7, NULL, 16);
		else if (!strncmp(argv[i], "out=", 4))
			out_prefix = argv[i] + 4;
	}
	if (!marker) {
		fprintf(stderr, "insnprof: marker=ADDRESS is required\n");
		return 1;
	}
	qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
	return 0;
}
