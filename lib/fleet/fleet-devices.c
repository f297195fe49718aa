/*
 * The devices this run has met, by address: a hash map, so that an advertisement (several a
 * second per device) costs a hash lookup instead of a SELECT and scans of the job list. A
 * device gets an entry when it is seen or when a job of it is loaded; devices that are only
 * rows in the store (never seen since the start) cost nothing here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet-private.h"

uint32_t fleet_hash(const char *s)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (const unsigned char *c = (const unsigned char *) (s ? s : ""); *c; c++)
		h = (h ^ *c) * 16777619u;
	return h;
}

struct fleet_dev *fleet_dev_find(struct fgw_fleet *f, const char *address)
{
	uint32_t h = fleet_hash(address);

	if (!f->devs.n_buckets)
		return NULL;
	for (struct fleet_dev *d = f->devs.buckets[h & (f->devs.n_buckets - 1)]; d; d = d->next)
		if (d->hash == h && strcmp(d->address, address) == 0)
			return d;
	return NULL;
}

static int grow(struct fleet_devs *m)
{
	size_t n = m->n_buckets ? m->n_buckets * 2 : 64;
	struct fleet_dev **b = calloc(n, sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < m->n_buckets; i++)
		for (struct fleet_dev *d = m->buckets[i], *next; d; d = next) {
			next = d->next;
			d->next = b[d->hash & (n - 1)];
			b[d->hash & (n - 1)] = d;
		}
	free(m->buckets);
	m->buckets = b;
	m->n_buckets = n;
	return 0;
}

struct fleet_dev *fleet_dev_add(struct fgw_fleet *f, const char *address, const char *transport,
				const char *grp)
{
	struct fleet_dev *d = fleet_dev_find(f, address);

	if (d)
		return d;
	if (f->devs.n >= f->devs.n_buckets && grow(&f->devs) < 0)
		return NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->hash = fleet_hash(address);
	snprintf(d->address, sizeof(d->address), "%s", address);
	snprintf(d->transport, sizeof(d->transport), "%s", transport ? transport : "ble");
	snprintf(d->grp, sizeof(d->grp), "%s", grp ? grp : "");
	d->next = f->devs.buckets[d->hash & (f->devs.n_buckets - 1)];
	f->devs.buckets[d->hash & (f->devs.n_buckets - 1)] = d;
	f->devs.n++;
	return d;
}

void fleet_devs_foreach(struct fgw_fleet *f, void (*fn)(struct fgw_fleet *f, struct fleet_dev *d))
{
	for (size_t i = 0; i < f->devs.n_buckets; i++)
		for (struct fleet_dev *d = f->devs.buckets[i]; d; d = d->next)
			fn(f, d);
}

void fleet_devs_free(struct fgw_fleet *f)
{
	for (size_t i = 0; i < f->devs.n_buckets; i++)
		for (struct fleet_dev *d = f->devs.buckets[i], *next; d; d = next) {
			next = d->next;
			free(d);
		}
	free(f->devs.buckets);
	f->devs = (struct fleet_devs){0};
}

void fleet_dev_remove(struct fgw_fleet *f, const char *address)
{
	uint32_t h = fleet_hash(address);

	if (!f->devs.n_buckets)
		return;
	for (struct fleet_dev **p = &f->devs.buckets[h & (f->devs.n_buckets - 1)]; *p;
	     p = &(*p)->next) {
		struct fleet_dev *d = *p;
		if (d->hash == h && strcmp(d->address, address) == 0) {
			*p = d->next;
			free(d);
			f->devs.n--;
			return;
		}
	}
}
