/*
 * Fuzzes the enrollment CSV parser (lib/api/handlers-devices-csv.c): whatever the input, it
 * either accepts rows that hold normalized addresses, six-digit passkeys and short clean text,
 * or refuses with at least one "line N: ..." error, never both, and never an error that
 * repeats the input's bytes beyond the fixed messages.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api-private.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct api_csv_result res;
	char again[40];
	int r = api_enroll_csv_parse((const char *) data, size, &res);

	if (r == 0) {
		if (res.n == 0 || res.total_errors != 0)
			abort();
		for (size_t i = 0; i < res.n; i++) {
			const struct api_enroll_row *row = &res.rows[i];
			if (fgw_address_normalize(row->address, again) < 0 ||
			    strcmp(again, row->address) != 0)
				abort();
			if (row->has_passkey && row->passkey > 999999)
				abort();
			if (!fgw_text_is_clean(row->label, strlen(row->label)) ||
			    !fgw_text_is_clean(row->board, strlen(row->board)) ||
			    !fgw_text_is_clean(row->group, strlen(row->group)))
				abort();
			for (size_t j = 0; j < i; j++)
				if (strcmp(res.rows[j].address, row->address) == 0)
					abort();
		}
	} else if (r == -EINVAL) {
		if (res.total_errors == 0 || res.n_errors == 0 || res.n_errors > API_CSV_MAX_ERRORS)
			abort();
		for (size_t i = 0; i < res.n_errors; i++)
			if (strncmp(res.errors[i], "line ", 5) != 0 ||
			    !fgw_text_is_clean(res.errors[i], strlen(res.errors[i])))
				abort();
	} else if (r != -ENOMEM) {
		abort();
	}
	api_csv_result_done(&res);
	return 0;
}
