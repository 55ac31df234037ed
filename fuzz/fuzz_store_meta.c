/* libFuzzer target: the object .meta parser. A file that parses must encode
 * back to exactly the same bytes. */
#include <stdlib.h>
#include <string.h>
#include "store/store.h"
#include "store/store_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pn_cid cid;
	char name[PN_NAME_MAX + 1];
	uint8_t *hashes = NULL, *again = NULL;
	size_t again_len = 0;

	if (store_meta_parse(data, size, &cid, name, &hashes) != 0)
		return 0;
	if (store_meta_encode(&cid, name, hashes, &again, &again_len) != 0 || again_len != size ||
	    memcmp(again, data, size) != 0)
		abort();
	free(again);
	free(hashes);
	return 0;
}
