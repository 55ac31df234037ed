/* libFuzzer target: the partial-transfer .state parser. A file that parses
 * must encode back to exactly the same bytes. */
#include <stdlib.h>
#include <string.h>
#include "store/store.h"
#include "store/store_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct store_state st;
	uint8_t *again = NULL;
	size_t again_len = 0;

	if (store_state_parse(data, size, &st) != 0)
		return 0;
	if (st.nchunks != pn_cid_chunks(&st.cid))
		abort();
	if (store_state_encode(&st.cid, st.flags, st.name, st.hashes, st.bitmap, &again, &again_len) != 0 ||
	    again_len != size || memcmp(again, data, size) != 0)
		abort();
	free(again);
	return 0;
}
