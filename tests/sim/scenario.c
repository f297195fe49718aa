/*
 * Scenario files: INI (inih) with a [default] section and [device N] or [device N-M] sections;
 * every key is one of sim_dev_config_set()'s (docs/simulator.md). Values are checked when the
 * file is read, so a typo fails with its line number instead of being ignored.
 */
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <string.h>

#include "sim.h"

#define SCENARIO_MAX_ENTRIES 100000

struct entry {
	unsigned lo, hi; /* device range; lo > hi means [default] */
	char *key, *value;
};

struct sim_scenario {
	struct entry *e;
	size_t n, cap;
	int err;
};

static int parse_section(const char *s, unsigned *lo, unsigned *hi)
{
	int64_t a, b;
	char buf[64];
	char *dash;

	if (!strcmp(s, "default")) {
		*lo = 1;
		*hi = 0;
		return 0;
	}
	if (strncmp(s, "device ", 7) != 0 || strlen(s + 7) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s + 7);
	dash = strchr(buf, '-');
	if (dash)
		*dash = '\0';
	if (fgw_parse_int64(buf, 0, 65535, &a) < 0)
		return -EINVAL;
	b = a;
	if (dash && fgw_parse_int64(dash + 1, a, 65535, &b) < 0)
		return -EINVAL;
	*lo = (unsigned) a;
	*hi = (unsigned) b;
	return 0;
}

static int on_entry(void *user, const char *section, const char *name, const char *value)
{
	struct sim_scenario *s = user;
	struct sim_dev_config scratch;
	unsigned lo, hi;
	int r;

	if (parse_section(section, &lo, &hi) < 0) {
		s->err = -EINVAL;
		return 0;
	}
	if (!name)
		return 1; /* empty section */
	sim_dev_config_defaults(&scratch);
	r = sim_dev_config_set(&scratch, name, value ? value : "");
	if (r < 0) {
		s->err = r == -ENOENT ? -ENOENT : -EINVAL;
		return 0;
	}
	if (s->n == SCENARIO_MAX_ENTRIES) {
		s->err = -E2BIG;
		return 0;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct entry *e = realloc(s->e, cap * sizeof(*e));
		if (!e) {
			s->err = -ENOMEM;
			return 0;
		}
		s->e = e;
		s->cap = cap;
	}
	s->e[s->n] = (struct entry){lo, hi, strdup(name), strdup(value ? value : "")};
	if (!s->e[s->n].key || !s->e[s->n].value) {
		free(s->e[s->n].key);
		free(s->e[s->n].value);
		s->err = -ENOMEM;
		return 0;
	}
	s->n++;
	return 1;
}

int sim_scenario_parse_string(const char *text, struct sim_scenario **ret, int *ret_line)
{
	struct sim_scenario *s = calloc(1, sizeof(*s));
	int line;

	if (!s)
		return -ENOMEM;
	line = ini_parse_string(text, on_entry, s);
	if (line != 0) {
		int err = s->err ? s->err : -EINVAL;
		if (ret_line)
			*ret_line = line;
		sim_scenario_free(s);
		return err;
	}
	*ret = s;
	return 0;
}

int sim_scenario_load(const char *path, struct sim_scenario **ret, int *ret_line)
{
	FILE *f = fopen(path, "re");
	char *text;
	long n;
	int r;

	if (!f)
		return -errno;
	if (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0) {
		fclose(f);
		return -EIO;
	}
	if (n > 16 * 1024 * 1024) {
		fclose(f);
		return -EFBIG;
	}
	text = malloc((size_t) n + 1);
	if (!text) {
		fclose(f);
		return -ENOMEM;
	}
	if (fread(text, 1, (size_t) n, f) != (size_t) n) {
		fclose(f);
		free(text);
		return -EIO;
	}
	fclose(f);
	text[n] = '\0';
	r = sim_scenario_parse_string(text, ret, ret_line);
	free(text);
	return r;
}

int sim_scenario_apply(const struct sim_scenario *s, unsigned index, struct sim_dev_config *c)
{
	int r;

	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < s->n; i++) {
			const struct entry *e = &s->e[i];
			bool is_default = e->lo > e->hi;

			if (pass == 0 ? !is_default
				      : (is_default || index < e->lo || index > e->hi))
				continue;
			r = sim_dev_config_set(c, e->key, e->value);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

struct sim_scenario *sim_scenario_free(struct sim_scenario *s)
{
	if (!s)
		return NULL;
	for (size_t i = 0; i < s->n; i++) {
		free(s->e[i].key);
		free(s->e[i].value);
	}
	free(s->e);
	free(s);
	return NULL;
}
