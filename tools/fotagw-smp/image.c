/*
 * The image group commands but upload: list (image state), slots (slot info), test, confirm and
 * erase. Hashes are the MCUboot SHA256 TLV of each slot.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"
#include "util.h"

static int b_state(struct tool *tl, struct fgw_smp_req *r)
{
	(void) tl;
	return fgw_smp_req_img_state(r);
}
static int b_slots(struct tool *tl, struct fgw_smp_req *r)
{
	(void) tl;
	return fgw_smp_req_img_slot_info(r);
}
static int b_test(struct tool *tl, struct fgw_smp_req *r)
{
	return fgw_smp_req_img_state_write(tl->hash, false, r);
}
static int b_confirm(struct tool *tl, struct fgw_smp_req *r)
{
	return fgw_smp_req_img_state_write(tl->has_hash ? tl->hash : NULL, true, r);
}
static int b_erase(struct tool *tl, struct fgw_smp_req *r)
{
	return fgw_smp_req_img_erase(tl->slot, r);
}

static void print_slot_text(const struct fgw_smp_img_slot *s, const char *h)
{
	bool any = s->active || s->confirmed || s->pending || s->permanent;

	printf("image %u slot %u\n    version: ", s->image, s->slot);
	print_safe(stdout, s->version);
	printf("\n    bootable: %s\n    flags:%s%s%s%s%s\n    hash: %s\n",
	       s->bootable ? "true" : "false", s->active ? " active" : "",
	       s->confirmed ? " confirmed" : "", s->pending ? " pending" : "",
	       s->permanent ? " permanent" : "", any ? "" : " none", s->has_hash ? h : "(none)");
}

static cJSON *slot_json(const struct fgw_smp_img_slot *s, const char *h)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddNumberToObject(o, "image", s->image);
	cJSON_AddNumberToObject(o, "slot", s->slot);
	cJSON_AddStringToObject(o, "version", s->version);
	if (s->has_hash)
		cJSON_AddStringToObject(o, "hash", h);
	cJSON_AddBoolToObject(o, "bootable", s->bootable);
	cJSON_AddBoolToObject(o, "pending", s->pending);
	cJSON_AddBoolToObject(o, "confirmed", s->confirmed);
	cJSON_AddBoolToObject(o, "active", s->active);
	cJSON_AddBoolToObject(o, "permanent", s->permanent);
	return o;
}

/* @into: where the JSON "images" array goes (the result, or a part of it); text if NULL. */
int image_print_state(struct tool *tl, const struct fgw_smp_rsp *rsp, cJSON *into)
{
	struct fgw_smp_img_state *st = calloc(1, sizeof(*st));
	cJSON *arr = NULL;
	int r;

	if (!st)
		return -ENOMEM;
	r = fgw_smp_img_state_decode(rsp->payload, rsp->len, st);
	if (r < 0) {
		free(st);
		return r;
	}
	if (tl->json && into)
		arr = cJSON_AddArrayToObject(into, "images");
	for (size_t i = 0; i < st->n_slots; i++) {
		const struct fgw_smp_img_slot *s = &st->slots[i];
		char h[65] = "";

		if (s->has_hash)
			fgw_hex_encode(s->hash, 32, h);
		if (arr)
			cJSON_AddItemToArray(arr, slot_json(s, h));
		else if (!tl->json)
			print_slot_text(s, h);
	}
	if (arr && st->has_split_status)
		cJSON_AddNumberToObject(into, "splitStatus", (double) st->split_status);
	if (!tl->json && st->n_slots == 0)
		printf("no images\n");
	free(st);
	return 0;
}

static void print_slot_info(struct tool *tl, const struct fgw_smp_slot_info *si)
{
	cJSON *arr = cJSON_AddArrayToObject(tl->out, "images");

	for (size_t i = 0; i < si->n_images; i++) {
		cJSON *o = cJSON_CreateObject(), *sl = cJSON_AddArrayToObject(o, "slots");

		cJSON_AddNumberToObject(o, "image", si->images[i].image);
		if (si->images[i].has_max_image_size)
			cJSON_AddNumberToObject(o, "max_image_size",
						(double) si->images[i].max_image_size);
		if (!tl->json)
			printf("image %u\n", si->images[i].image);
		for (size_t j = 0; j < si->images[i].n_slots; j++) {
			cJSON *s = cJSON_CreateObject();

			cJSON_AddNumberToObject(s, "slot", si->images[i].slots[j].slot);
			cJSON_AddNumberToObject(s, "size", (double) si->images[i].slots[j].size);
			cJSON_AddItemToArray(sl, s);
			if (!tl->json)
				printf("    slot %u: %" PRIu64 " bytes\n",
				       si->images[i].slots[j].slot, si->images[i].slots[j].size);
		}
		if (!tl->json && si->images[i].has_max_image_size)
			printf("    max image size: %" PRIu64 " bytes\n",
			       si->images[i].max_image_size);
		cJSON_AddItemToArray(arr, o);
	}
}

static void on_image_answer(struct tool *tl, int err, const struct fgw_smp_rsp *rsp)
{
	struct fgw_smp_slot_info si;
	int r = 0;

	if (err < 0) {
		tool_fail(tl, "request failed", err, NULL);
		return;
	}
	if (!fgw_smp_status_ok(&rsp->status)) {
		tool_fail(tl, "device error", 0, &rsp->status);
		return;
	}
	switch (tl->cmd) {
	case CMD_IMAGE_SLOTS:
		r = fgw_smp_slot_info_decode(rsp->payload, rsp->len, &si);
		if (r == 0)
			print_slot_info(tl, &si);
		break;
	case CMD_IMAGE_ERASE:
		if (tl->json)
			cJSON_AddBoolToObject(tl->out, "erased", true);
		else
			printf("erased\n");
		break;
	default:
		r = image_print_state(tl, rsp, tl->out);
		break;
	}
	if (r < 0) {
		tool_fail(tl, "bad answer", r, NULL);
		return;
	}
	tool_done(tl);
}

void image_run(struct tool *tl)
{
	switch (tl->cmd) {
	case CMD_IMAGE_LIST:
		send_req(tl, b_state, 0, on_image_answer);
		break;
	case CMD_IMAGE_SLOTS:
		send_req(tl, b_slots, 0, on_image_answer);
		break;
	case CMD_IMAGE_TEST:
		send_req(tl, b_test, 0, on_image_answer);
		break;
	case CMD_IMAGE_CONFIRM:
		send_req(tl, b_confirm, 0, on_image_answer);
		break;
	case CMD_IMAGE_ERASE:
		/* erase is synchronous on the device: tens of seconds on external flash */
		send_req(tl, b_erase, FGW_MAX(tl->timeout_ms, 75000u), on_image_answer);
		break;
	default:
		tool_finish(tl, 2);
		break;
	}
}
