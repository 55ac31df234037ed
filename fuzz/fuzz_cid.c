/* libFuzzer target for the printed content ID.
 *
 * The input is taken as a C string. If it parses, formatting the result must
 * give back the input in lower case, and that must parse to the same ID.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "peernet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INPUT_CAP 256

static void check(bool ok)
{
	if (!ok)
		abort();
}

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char in[INPUT_CAP + 1], out[PN_CID_STR_LEN + 1];
	struct pn_cid cid, again;

	if (size > INPUT_CAP)
		size = INPUT_CAP;
	memcpy(in, data, size);
	in[size] = '\0';

	int err = pn_cid_parse(in, &cid);
	check(err == PN_OK || err == PN_EBADID);
	if (err != PN_OK)
		return 0;
	check(strlen(in) == PN_CID_STR_LEN);
	check(cid.size <= PN_MAX_FILE_SIZE);
	check(pn_cid_chunks(&cid) >= 1 && pn_cid_chunks(&cid) <= PN_MAX_CHUNKS);

	pn_cid_format(&cid, out);
	check(strlen(out) == PN_CID_STR_LEN);
	for (size_t i = 0; i < PN_CID_STR_LEN; i++)
		check(out[i] == lower(in[i]));
	check(pn_cid_parse(out, &again) == PN_OK);
	check(again.size == cid.size && memcmp(again.root, cid.root, PN_HASH_BYTES) == 0);
	return 0;
}
