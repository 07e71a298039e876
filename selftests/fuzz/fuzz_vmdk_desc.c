// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target: arbitrary bytes as VMDK descriptor text.  The parser
 * must accept or refuse every input without touching memory it does not
 * own, and what it accepts must hold together.
 */
#include <stdlib.h>
#include <string.h>

#include "vmdk_desc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmdk_desc_error err;
	struct vmdk_desc d;
	uint64_t sum = 0;
	unsigned int i;

	(void)vmdk_desc_probe((const char *)data, size);
	memset(&d, 0, sizeof(d));
	if (vmdk_desc_parse((const char *)data, size, &d, &err)) {
		if (!err.msg[0])
			abort();	/* every refusal says why */
		return 0;
	}
	for (i = 0; i < d.nr_extents; i++) {
		if (d.extents[i].file &&
		    strlen(d.extents[i].file) > VMDK_DESC_MAX_FILE)
			abort();
		sum += d.extents[i].sectors;
	}
	if (sum != d.sectors || d.nr_extents > VMDK_DESC_MAX_EXTENTS)
		abort();
	vmdk_desc_free(&d);
	return 0;
}
