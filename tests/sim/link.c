/*
 * Link model: the air between the central and one device, and the controller radio the links of
 * one adapter share (docs/simulator.md, "Link model").
 *
 * Airtime comes from the PHY's framing (Core spec Vol 6 Part B 2.1 and 2.2): preamble, access
 * address, header, payload, MIC when encrypted, CRC; on Coded S8 the FEC blocks. A connection
 * event of length E holds whole exchanges (a packet, T_IFS, the peer's packet, T_IFS) and must
 * end before the next anchor, so the packets per event follow from airtime; `pkts` can only cap
 * them further. The links of one radio get the exchanges of an interval round-robin, each with
 * its share of the airtime, so several links never carry more than one link could.
 */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "sim.h"

#define T_IFS_US 150.0

uint64_t sim_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

double sim_phy_packet_us(int phy, unsigned payload, bool mic)
{
	/* header 2 + payload + MIC + CRC 3: the part every PHY sends at its data rate */
	unsigned body = 2 + payload + (mic && payload > 0 ? 4 : 0) + 3;

	switch (phy) {
	case SIM_PHY_2M:
		return (2 + 4 + body) * 4.0; /* 2-byte preamble, access address, 4 us per byte */
	case SIM_PHY_CODED_S8:
		/* preamble 80 us, access address 256 us, CI 16 us, TERM1 24 us (all S8), then
		 * the PDU and CRC at 8 symbols per bit (64 us per byte) and TERM2 24 us */
		return 80 + 256 + 16 + 24 + body * 64.0 + 24;
	default:
		return (1 + 4 + body) * 8.0; /* 1M: 1-byte preamble, 8 us per byte */
	}
}

double sim_link_exchange_us(const struct sim_link_params *p)
{
	return sim_phy_packet_us(p->phy, p->dle, p->encrypt) + T_IFS_US +
	       sim_phy_packet_us(p->phy, 0, p->encrypt) + T_IFS_US;
}

static double event_us(const struct sim_link_params *p)
{
	double iv = p->interval_ms * 1000.0;

	return p->event_ms > 0 && p->event_ms * 1000.0 < iv ? p->event_ms * 1000.0 : iv;
}

unsigned sim_link_event_exchanges(const struct sim_link_params *p)
{
	unsigned n = (unsigned) floor(event_us(p) / sim_link_exchange_us(p) + 1e-9);

	return p->pkts > 0 && p->pkts < n ? p->pkts : n;
}

double sim_link_ceiling(const struct sim_link_params *p)
{
	return sim_link_event_exchanges(p) * (double) p->dle * 1e6 / (p->interval_ms * 1000.0);
}

int sim_link_check(const struct sim_link_params *p, const char **why)
{
	if (sim_link_event_exchanges(p) == 0) {
		*why = "a connection event cannot hold one full LL exchange (PHY, dle, interval, "
		       "event)";
		return -EINVAL;
	}
	if (p->dle > 251 || p->dle < 27) {
		*why = "dle must be 27..251";
		return -EINVAL;
	}
	return 0;
}

void sim_link_reset(struct sim_link *l, uint64_t now_us)
{
	l->anchor_us = now_us;
	l->encrypted = false;
	l->last_ev[0] = l->last_ev[1] = -1;
	for (unsigned i = 0; i < SIM_LINK_RING; i++)
		l->ring[i].ev = -1;
}

int sim_radio_join(struct sim_radio *r, struct sim_link *l)
{
	if (l->radio == r)
		return 0;
	if (l->radio)
		sim_radio_leave(l);
	if (r->n >= SIM_RADIO_MAX_LINKS)
		return -ENOSPC;
	r->links[r->n++] = l;
	l->radio = r;
	return 0;
}

void sim_radio_leave(struct sim_link *l)
{
	struct sim_radio *r = l->radio;

	if (!r)
		return;
	for (unsigned i = 0; i < r->n; i++)
		if (r->links[i] == l) {
			memmove(&r->links[i], &r->links[i + 1],
				(r->n - i - 1) * sizeof(r->links[0]));
			r->n--;
			break;
		}
	l->radio = NULL;
}

/* Exchange numbers k in [0, x) with k mod n == rank. */
static int64_t rr_count(int64_t x, unsigned n, unsigned rank)
{
	return x > (int64_t) rank ? (x - (int64_t) rank + n - 1) / n : 0;
}

/* Exchanges the whole radio can place in one interval (events back to back, no limit). */
static unsigned radio_exchanges(const struct sim_link_params *p)
{
	return (unsigned) floor(p->interval_ms * 1000.0 / sim_link_exchange_us(p) + 1e-9);
}

double sim_link_radio_ceiling(const struct sim_link_params *p)
{
	return radio_exchanges(p) * (double) p->dle * 1e6 / (p->interval_ms * 1000.0);
}

unsigned sim_link_event_slots(const struct sim_link *l, const struct sim_link_params *p, int64_t ev,
			      double *ret_budget_us)
{
	unsigned own = sim_link_event_exchanges(p), total = radio_exchanges(p), n, rank, slots;
	double share;

	if (!l->radio || l->radio->n <= 1) {
		*ret_budget_us = event_us(p);
		return own;
	}
	n = l->radio->n;
	for (rank = 0; rank < n && l->radio->links[rank] != l; rank++)
		;
	if (rank == n)
		rank = 0;
	/* The radio's exchanges of an interval are dealt out round-robin over its links,
	 * numbered across events (with more links than exchanges a link's event is skipped),
	 * each link's event still within its own event-length limit. A slot's airtime is the
	 * interval divided by the radio's exchanges, so all links together never use more. */
	slots = (unsigned) (rr_count((ev + 1) * total, n, rank) - rr_count(ev * total, n, rank));
	if (slots > own)
		slots = own;
	share = total ? p->interval_ms * 1000.0 / total : 0;
	*ret_budget_us = FGW_MIN(slots * share, event_us(p));
	return slots;
}

/* Tries to place one LL packet of @pl payload bytes in @dir into event @ev. */
static bool try_place(struct sim_link *l, const struct sim_link_params *p, int dir, int64_t ev,
		      unsigned pl, double *ret_end_us)
{
	unsigned idx = (unsigned) (ev % SIM_LINK_RING);
	bool mic = p->encrypt || l->encrypted;
	double budget, t_pkt = sim_phy_packet_us(p->phy, pl, mic),
		       t_empty = sim_phy_packet_us(p->phy, 0, mic), used;
	unsigned slots = sim_link_event_slots(l, p, ev, &budget), n_self, n_other, exch;

	if (l->ring[idx].ev != ev) {
		l->ring[idx].ev = ev;
		l->ring[idx].n[0] = l->ring[idx].n[1] = 0;
		l->ring[idx].used_us = 0;
	}
	n_self = l->ring[idx].n[dir];
	n_other = l->ring[idx].n[!dir];
	used = l->ring[idx].used_us;
	if (n_self < n_other) {
		/* the peer already sends in this exchange: our packet replaces our empty one */
		used += t_pkt - t_empty;
		exch = n_other;
	} else {
		used += t_pkt + T_IFS_US + t_empty + T_IFS_US;
		exch = n_self + 1;
	}
	if (exch > slots || used > budget + 1e-6)
		return false;
	l->ring[idx].n[dir]++;
	l->ring[idx].used_us = used;
	*ret_end_us = used;
	return true;
}

uint64_t sim_link_pdu(struct sim_link *l, const struct sim_link_params *p, int dir, uint64_t now_us,
		      size_t att_len)
{
	double iv = p->interval_ms * 1000.0, end = 0;
	size_t left = att_len + 7; /* ATT 3 + L2CAP 4 */
	int64_t ev = 0;

	if (now_us > l->anchor_us)
		ev = (int64_t) ceil((double) (now_us - l->anchor_us) / iv);
	if (ev < l->last_ev[dir])
		ev = l->last_ev[dir];
	while (left > 0) {
		unsigned pl = (unsigned) FGW_MIN(left, (size_t) p->dle);

		while (!try_place(l, p, dir, ev, pl, &end))
			ev++;
		left -= pl;
	}
	l->last_ev[dir] = ev;
	return l->anchor_us + (uint64_t) ((double) ev * iv + end) +
	       (uint64_t) (p->latency_ms * 1000.0);
}

void sim_link_packet(struct sim_link *l, const struct sim_link_params *p, int dir, uint64_t now_us,
		     size_t len, uint64_t *ret_first, uint64_t *ret_last)
{
	size_t frag = p->mtu - 3, off = 0;
	uint64_t t = now_us;

	*ret_first = 0;
	do {
		size_t n = FGW_MIN(frag, len - off);
		t = sim_link_pdu(l, p, dir, now_us, n);
		if (off == 0)
			*ret_first = t;
		off += n;
	} while (off < len);
	*ret_last = t;
}

double sim_flash_erase_us(const struct sim_link_params *p, uint64_t bytes)
{
	uint64_t sectors = (bytes + p->sector - 1) / p->sector;
	return (double) sectors * p->erase_ms * 1000.0;
}

/* Bytes of SMP framing around `data` in a non-first upload chunk, as a client would encode it:
 * 8-byte header, a 2-entry map, "off" + uint32, "data" + byte string header. */
static unsigned chunk_overhead(unsigned data_len)
{
	unsigned bstr_hdr = data_len < 24 ? 1 : data_len < 256 ? 2 : data_len < 65536 ? 3 : 5;
	return SMP_HDR_LEN + 1 + 4 + 5 + 5 + bstr_hdr;
}

/* Steady-state air time per chunk of @pkt bytes with its {"off"} answer, all queued at once:
 * the same packing the running model does. */
static double air_per_chunk_us(const struct sim_link_params *p, unsigned pkt)
{
	enum { CHUNKS = 24 };
	static struct sim_link l; /* large ring: not on the stack; callers are single-threaded */
	uint64_t half = 0, last = 0;

	memset(&l, 0, sizeof(l));
	sim_link_reset(&l, 0);
	for (unsigned c = 0; c < CHUNKS; c++) {
		for (unsigned off = 0, frag = p->mtu - 3; off < pkt; off += frag)
			last = sim_link_pdu(&l, p, SIM_UP, 0, FGW_MIN(frag, pkt - off));
		/* Response to a chunk: header + {"off": uint32} in an indefinite map = 19 bytes. */
		sim_link_pdu(&l, p, SIM_DOWN, 0, 19);
		if (c == CHUNKS / 2 - 1)
			half = last;
	}
	return (double) (last - half) / (CHUNKS - CHUNKS / 2);
}

double sim_link_capacity(const struct sim_link_params *p, unsigned buf_size, unsigned buf_count,
			 bool ble, unsigned *ret_chunk)
{
	double best = 0, iv = p->interval_ms * 1000.0;
	unsigned best_chunk = 0;
	/* BLE: the work queue sends the answer and waits for its completion before it takes the
	 * next request (device.c send_rsps): half an interval for the event on average, then the
	 * acknowledgement one interval later, seen after the latency, plus 1 ms. */
	double t_rsp = ble ? iv / 2 + iv + p->latency_ms * 1000.0 + 1000.0 : 0;

	(void) buf_count;
	if (sim_link_event_exchanges(p) == 0)
		return 0;
	for (unsigned pkt = 64; pkt <= buf_size; pkt++) {
		unsigned data = (pkt - chunk_overhead(pkt)) & ~3u; /* 4-byte aligned chunks */
		double t_air, t_dev, t;

		if (data == 0)
			continue;
		t_air = air_per_chunk_us(p, pkt);
		t_dev = p->proc_us + data * p->write_us + t_rsp;
		t = FGW_MAX(t_air, t_dev);
		if ((double) data / t > best) {
			best = (double) data / t;
			best_chunk = data;
		}
	}
	if (ret_chunk)
		*ret_chunk = best_chunk;
	return best * 1e6;
}
