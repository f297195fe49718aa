/*
 * fotagw-sim: a fleet of simulated nRF5340 devices (app core image 0, net core image 1,
 * MCUboot swap or overwrite-only), each an SMP server behind a link model, reachable over SMP/UDP
 * and through a fake bluetoothd (org.bluez on a private bus). Written from the Zephyr/MCUboot/
 * BlueZ documentation and sources, independently of fotagw's lib/ (only lib/util is used), so that
 * it cross-checks the gateway instead of mirroring it.
 *
 * This header is private to tests/sim/.
 */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <uv.h>

#include "util.h"

struct cbor_item_t;
struct evp_pkey_st;
struct sim;
struct sim_device;
struct sim_bluez;
struct sim_ble_dev;
struct sim_periph;

#define SIM_IMAGES 2
#define SIM_HASH_LEN 32
#define SIM_MAX_BUFS 16
#define SIM_VERSION_MAX 32
#define SIM_MAX_ADAPTERS 8 /* --adapters: hci0..hci7 */

/* ---- MCUboot image model (mcuboot.c) -------------------------------------------------------- */

#define SIM_IMAGE_MAGIC 0x96f3b83du
#define SIM_IMAGE_HDR_LEN 32
#define SIM_IMAGE_F_NON_BOOTABLE 0x10u

struct sim_version {
	uint8_t major, minor;
	uint16_t rev;
	uint32_t build;
};

struct sim_img_info {
	uint32_t hdr_size, img_size, prot_size, flags;
	struct sim_version ver;
	uint8_t hash[SIM_HASH_LEN]; /* value of the SHA256 TLV */
	uint64_t total_len;	    /* header + body + both TLV areas */
};

/* Reads header and TLVs like img_mgmt_read_info(): 0, or -ENOENT (empty/no magic), -EBADMSG. */
int sim_img_read_info(int fd, struct sim_img_info *ret);
/* MCUboot's boot-time check: magic, TLV layout, SHA-256 TLV over header+body+protected TLVs, and
 * with @key a signature TLV by that key. 0 if bootable, else -EBADMSG with *why set. */
int sim_img_validate(int fd, struct evp_pkey_st *key, const char **why);
/* Writes a complete image (deterministic body from @seed), signed when @key holds a private key. */
int sim_img_generate(const char *path, const struct sim_version *ver, uint32_t body_size,
		     uint64_t seed, struct evp_pkey_st *key);
int sim_version_parse(const char *s, struct sim_version *ret);
/* "1.2.3" or "1.2.3.4" (build shown only when non-zero), like Zephyr's img_mgmt_ver_str. */
void sim_version_format(const struct sim_version *v, char *out, size_t n);
int sim_version_cmp(const struct sim_version *a, const struct sim_version *b, bool with_build);
/* Loads a PEM private key (or public key, then images cannot be signed). */
int sim_key_load(const char *path, struct evp_pkey_st **ret);
/* SHA-256 of the first @len bytes of @fd. -EIO if shorter. */
int sim_sha256_fd(int fd, uint64_t len, uint8_t out[SIM_HASH_LEN]);

/* ---- configuration ----------------------------------------------------------------------------
 */

enum sim_mode {
	SIM_MODE_SWAP,	    /* MCUboot swap-using-move: test boots once, reverts unless confirmed */
	SIM_MODE_OVERWRITE, /* MCUboot overwrite-only: test and confirm are both permanent */
};

enum sim_phy { SIM_PHY_1M = 0, SIM_PHY_2M = 1, SIM_PHY_CODED_S8 = 2 };

struct sim_link_params {
	double interval_ms; /* connection interval */
	unsigned mtu;	    /* ATT MTU (payload per write/notification = mtu - 3) */
	int phy;	    /* SIM_PHY_*: bit time and packet framing */
	bool encrypt;	    /* encrypted link: a 4-byte MIC on every non-empty LL packet */
	double event_ms;    /* controller's connection event length limit; 0: the interval */
	unsigned pkts;	    /* optional further cap on exchanges per event (0: physics only) */
	double latency_ms;  /* one-way latency added to every arrival (host stack, HCI) */
	unsigned dle;	    /* LL payload bytes per packet (27 without DLE, 251 with) */
	double erase_ms;    /* flash erase time per sector */
	double write_us;    /* flash write time per byte */
	unsigned sector;    /* flash sector size */
	double boot_ms;	    /* boot time before MCUboot copies anything */
	double proc_us;	    /* CPU time to handle one SMP request */
	double
	    supervision_ms; /* link supervision timeout: how long a vanished peer looks connected */
};

enum sim_err_kind {
	SIM_ERR_NONE,
	SIM_ERR_BUSY,  /* {"rc": 10} MGMT_ERR_EBUSY */
	SIM_ERR_NOMEM, /* {"rc": 2} MGMT_ERR_ENOMEM */
};

struct sim_faults {
	int64_t disconnect_at_chunk; /* 0-based upload request index; -1 = off */
	double disconnect_prob;	     /* per request */
	double drop_notify_prob;     /* per response */
	double rsp_delay_ms;	     /* added to every response */
	enum sim_err_kind error;
	double error_prob;	 /* per upload request */
	int64_t error_at_chunk;	 /* -1 = off */
	int64_t reboot_at_chunk; /* -1 = off */
	bool bad_boot;		 /* the next images to be installed fail validation at boot */
	bool lose_final_chunk;	 /* the chunk completing an upload is lost on its way, once */
	bool no_confirm;	 /* a test-booted image never comes up: watchdog reset, revert */
	double watchdog_ms;
	bool net_unreadable; /* net core secondary slot cannot be opened either */
	bool out_of_range;   /* from start */
	int64_t out_of_range_at_chunk;
	double out_of_range_ms; /* how long it stays away; 0 = for good */
};

#define SIM_NAME_MAX 30
#define SIM_RSN_MAX 128

struct sim_dev_config {
	enum sim_mode mode;
	struct sim_link_params link;
	struct sim_faults faults;
	char app_version[SIM_VERSION_MAX];
	char net_version[SIM_VERSION_MAX];
	unsigned buf_size, buf_count; /* buf_count 0: the transport's Zephyr default (main.c) */
	uint32_t slot_size[SIM_IMAGES];
	uint32_t body_size[SIM_IMAGES]; /* body of the generated starting images */
	bool image_check;	/* CONFIG_IMG_ENABLE_IMAGE_CHECK: "match" and same-image shortcut */
	bool no_downgrade;	/* MCUBOOT_DOWNGRADE_PREVENTION (overwrite-only) */
	bool net_slot0_visible; /* unrealistic: list image 1 slot 0 in image state */
	bool ncs_order_bug;	/* NCSDK-34106: app marked before net core skips the net update */
	bool allow_erase_pending; /* CONFIG_MCUMGR_GRP_IMG_ALLOW_ERASE_PENDING */
	bool adv_smp_uuid;	  /* put the SMP service UUID in advertising data */
	bool single_image;	  /* CONFIG_MCUMGR_GRP_IMG_UPDATABLE_IMAGE_NUMBER=1: image 0 only,
				     the upload's image number is ignored */
	bool bootloader_info;	  /* CONFIG_MCUMGR_GRP_OS_BOOTLOADER_INFO (else rc 8) */
	bool reset_no_answer;	  /* the reboot beats the answer to os reset out (reset_ms 0) */
	int rssi;		  /* mean RSSI in dBm */
	/* Which adapters hear it (bit k: hciK), each with its own mean RSSI; 0: every adapter,
	 * at `rssi` (scenario key adapters = hci0:-60,hci1:-75). */
	uint32_t adapters_mask;
	int adapter_rssi[SIM_MAX_ADAPTERS];
	/* What the SMP characteristic requires (CONFIG_MCUMGR_TRANSPORT_BT_PERM_RW_*): without
	 * it the CCC write fails with an ATT security error and write commands are dropped. */
	int security;	/* SIM_SEC_* */
	int passkey;	/* fixed passkey the device displays, -1: none (NoInputNoOutput) */
	bool bond_lost; /* the device forgets its bonds at its next boot (reflash, reset) */
	/* Advertised Complete Local Name; "" = fotagw-sim-NNNN. At most 29 bytes (a legacy scan
	 * response), valid UTF-8 as BlueZ hands it to D-Bus, control characters allowed. */
	char name[SIM_NAME_MAX];
	double rpa_rotate_s; /* CONFIG_BT_PRIVACY: a new RPA every N s (0: static address) */
	/* CONFIG_MCUMGR_SMP_VERBOSE_ERR_RESPONSE: "rsn" text on every error answer; any bytes
	 * but NUL (a hostile device need not send UTF-8). Empty: no rsn. */
	char rsn[SIM_RSN_MAX];
};

enum { SIM_SEC_NONE = 0, SIM_SEC_ENCRYPT = 1, SIM_SEC_AUTHEN = 2 };

void sim_dev_config_defaults(struct sim_dev_config *c);
/* Named profile ("fast", "typical", "slow") or "key=value,..." over the current values. */
int sim_link_parse(const char *s, struct sim_link_params *p);
void sim_link_profile(const char *name, struct sim_link_params *p);
/* Applies one "key = value" of the scenario vocabulary to @c (see docs/simulator.md). */
int sim_dev_config_set(struct sim_dev_config *c, const char *key, const char *value);

/* Scenario file: [default] and [device N] / [device N-M] sections (scenario.c). */
struct sim_scenario;
int sim_scenario_parse_string(const char *text, struct sim_scenario **ret, int *ret_line);
int sim_scenario_load(const char *path, struct sim_scenario **ret, int *ret_line);
/* Applies the [default] and the matching [device] sections for device @index, in file order. */
int sim_scenario_apply(const struct sim_scenario *s, unsigned index, struct sim_dev_config *c);
struct sim_scenario *sim_scenario_free(struct sim_scenario *s);

/* ---- link model (link.c) ----------------------------------------------------------------------
 */

/* Airtime of one LL packet with @payload bytes (MIC added when @mic and payload > 0), in us. */
double sim_phy_packet_us(int phy, unsigned payload, bool mic);
/* One full exchange: a dle-sized data packet, T_IFS, the peer's empty packet, T_IFS. */
double sim_link_exchange_us(const struct sim_link_params *p);
/* Exchanges a connection event of this link can hold when it has the radio to itself. */
unsigned sim_link_event_exchanges(const struct sim_link_params *p);
/* The physical ceiling of the link: LL payload bytes per second one way, events packed. */
double sim_link_ceiling(const struct sim_link_params *p);
/* The ceiling of a whole radio on links like this one: every interval full, whatever each
 * link's event limit (several links share it). */
double sim_link_radio_ceiling(const struct sim_link_params *p);
/* 0, or -EINVAL with *why when not even one exchange fits into an event. */
int sim_link_check(const struct sim_link_params *p, const char **why);

#define SIM_RADIO_MAX_LINKS 64
#define SIM_LINK_RING 256

/* One controller's radio: the links whose connection events share its airtime. */
struct sim_radio {
	struct sim_link *links[SIM_RADIO_MAX_LINKS];
	unsigned n;
};

struct sim_link {
	uint64_t anchor_us;	 /* time of connection event 0 */
	struct sim_radio *radio; /* NULL: the link has a radio of its own */
	bool encrypted;	    /* this connection is encrypted (paired), whatever `encrypt` says */
	int64_t last_ev[2]; /* per direction: event of the last packet queued (FIFO) */
	struct {
		int64_t ev;	/* which event this ring entry describes */
		uint16_t n[2];	/* packets of each direction booked in it */
		double used_us; /* airtime of its exchanges */
	} ring[SIM_LINK_RING];
};

enum { SIM_UP = 0, SIM_DOWN = 1 };

uint64_t sim_now_us(void);
/* A new connection: event 0 at @now_us, nothing queued. Keeps the radio. */
void sim_link_reset(struct sim_link *l, uint64_t now_us);
/* The link takes its share of @r / gives it back. Returns -ENOSPC when the radio is full. */
int sim_radio_join(struct sim_radio *r, struct sim_link *l);
void sim_radio_leave(struct sim_link *l);
/* Exchanges and airtime the controller gives @l in its event @ev (round-robin, docs). */
unsigned sim_link_event_slots(const struct sim_link *l, const struct sim_link_params *p, int64_t ev,
			      double *ret_budget_us);
/* Queues one ATT PDU of @att_len payload bytes in @dir from @now_us; returns its arrival time. */
uint64_t sim_link_pdu(struct sim_link *l, const struct sim_link_params *p, int dir, uint64_t now_us,
		      size_t att_len);
/* Queues an SMP packet of @len bytes split into mtu-3 PDUs; arrival of first and last PDU. */
void sim_link_packet(struct sim_link *l, const struct sim_link_params *p, int dir, uint64_t now_us,
		     size_t len, uint64_t *ret_first, uint64_t *ret_last);
/* Best image-upload goodput in bytes/s (docs/simulator.md, "Capacity"); @chunk = data per chunk.
 * @ble: the device's work queue also waits for each answer's notification to complete. */
double sim_link_capacity(const struct sim_link_params *p, unsigned buf_size, unsigned buf_count,
			 bool ble, unsigned *ret_chunk);
double sim_flash_erase_us(const struct sim_link_params *p, uint64_t bytes);

/* ---- SMP (smp.c) ------------------------------------------------------------------------------
 */

#define SMP_HDR_LEN 8
enum { SMP_OP_READ = 0, SMP_OP_READ_RSP = 1, SMP_OP_WRITE = 2, SMP_OP_WRITE_RSP = 3 };

struct smp_hdr {
	uint8_t op, ver, flags, seq, id;
	uint16_t len, group;
};

/* A decoded request: header plus the top-level map's text keys (values borrowed from root). */
#define SMP_MAX_KEYS 16
struct smp_req {
	struct smp_hdr hdr;
	struct cbor_item_t *root;
	size_t n_keys;
	struct {
		char name[16];
		struct cbor_item_t *value;
	} keys[SMP_MAX_KEYS];
	int err; /* MGMT_ERR_* found while decoding (payload not a map, dup key...), 0 if fine */
};

int smp_hdr_decode(const uint8_t *buf, size_t len, struct smp_hdr *ret);
void smp_hdr_encode(const struct smp_hdr *h, uint8_t out[SMP_HDR_LEN]);
/* Decodes one packet; @buf holds exactly header + payload. -EBADMSG if the header is short or
 * len disagrees; CBOR problems are reported through req->err so that an error reply can go out. */
int smp_req_decode(const uint8_t *buf, size_t len, struct smp_req *ret);
void smp_req_done(struct smp_req *r);

/* Response builder: Zephyr answers with indefinite-length maps unless canonical. */
struct smp_rsp {
	struct cbor_item_t *map;
	bool canonical;
};

/* Handles all SMP packets back to back in @buf for @dev. Each response goes to @emit. */
typedef void (*smp_emit_cb_t)(struct sim_device *dev, const uint8_t *rsp, size_t len,
			      void *user_data);
/* Called before a read or write request is handled, like Zephyr's smp_alloc_rsp(): true when a
 * response buffer was taken for it. false: the request is not handled; {"rc": 2} is emitted
 * instead (in the request's own buffer) and the rest of the packet is dropped. */
typedef bool (*smp_alloc_cb_t)(struct sim_device *dev, void *user_data);
struct smp_result {
	uint64_t cost_us; /* device time spent (flash), on top of proc_us */
	bool reset;	  /* os reset requested: reboot after the response went out */
	bool was_upload;  /* for fault counting */
};
void smp_handle(struct sim_device *dev, const uint8_t *buf, size_t len, smp_alloc_cb_t alloc,
		smp_emit_cb_t emit, void *user_data, struct smp_result *res);

/* ---- device (device.c) ------------------------------------------------------------------------
 */

enum sim_dev_state {
	SIM_DEV_UP,	 /* running, advertising, answering */
	SIM_DEV_BOOTING, /* in reset/MCUboot copy: silent, not advertising */
	SIM_DEV_HUNG,	 /* new image crashed before confirming; waiting for the watchdog */
	SIM_DEV_AWAY,	 /* out of range */
	SIM_DEV_DEAD,	 /* no bootable primary image */
	_SIM_DEV_STATE_MAX,
};
const char *sim_dev_state_to_string(enum sim_dev_state s);

/* MCUboot trailer flags per image, the ground truth MCUboot and img_mgmt read. */
struct sim_trailer {
	bool pri_magic, pri_ok, pri_copy_done;
	bool sec_magic, sec_ok;
};

enum sim_swap_type { SIM_SWAP_NONE, SIM_SWAP_TEST, SIM_SWAP_PERM, SIM_SWAP_REVERT };

struct sim_upload {
	bool active;
	unsigned image;
	uint64_t len, off;
	uint8_t sha[SIM_HASH_LEN];
	size_t sha_len;
	int fd;
};

enum sim_src_kind { SIM_SRC_UDP, SIM_SRC_BLE };

/* A request waiting for the device (arrived, not yet handled) or a response in flight. */
struct sim_req {
	uv_timer_t timer;
	struct sim_device *dev;
	struct sim_req *next;
	enum sim_src_kind src;
	uint32_t gen; /* device boot/connection generation when it arrived */
	struct sockaddr_storage peer;
	uint64_t t_first, t_last; /* model arrival of first/last fragment */
	int stage;
	unsigned bufs; /* SMP buffers held: its own, then its responses' until they are sent */
	size_t len;
	uint8_t *data;
};

struct sim_device {
	struct sim *sim;
	unsigned index;
	char addr[18];
	char name[20];		     /* for logs: always fotagw-sim-NNNN */
	char adv_name[SIM_NAME_MAX]; /* what it advertises (scenario key `name`) */
	char dir[512];
	struct sim_dev_config cfg;
	enum sim_dev_state state;
	uint32_t gen; /* bumped on every reset and link drop: stale work is discarded */
	struct sim_trailer tr[SIM_IMAGES];
	uint64_t mark_seq[SIM_IMAGES]; /* order in which images were marked (NCSDK-34106) */
	uint64_t seq_counter;
	uint64_t boots;
	struct sim_upload up;
	struct sim_link link;
	uint64_t busy_until_us; /* the single SMP work queue */
	unsigned bufs_used;
	struct sim_req *queue_head, *queue_tail;
	bool worker_armed;
	uv_timer_t worker;
	uv_timer_t life; /* reset delay, boot completion, watchdog, return from out of range */
	int life_action;
	uint64_t chunks; /* upload requests seen since start (fault counter) */
	bool fired_disconnect, fired_error, fired_reboot, fired_away, fired_lose_final;
	uint64_t rng;
	uint64_t blackout_until_us; /* UDP: after a "disconnect" fault, silent for a while */
	/* reassembly (BLE), one context per device as in smp_reassembly.c */
	uint8_t *rx_buf;
	size_t rx_len, rx_expected;
	uint64_t rx_t_first;
	/* UDP transport */
	uv_udp_t udp;
	bool udp_on;
	/* fake bluetoothd per-device state, NULL until first discovered */
	struct sim_ble_dev *ble[SIM_MAX_ADAPTERS]; /* per adapter of the fake bluetoothd */
	int n_closing;
};

int sim_device_init(struct sim *sim, struct sim_device *d, unsigned index,
		    const struct sim_dev_config *cfg);
void sim_device_close(struct sim_device *d);
/* Closes the timers of all requests still in flight (shutdown). */
void sim_device_close_requests(uv_loop_t *loop);
int sim_device_save(struct sim_device *d);
/* Swap type MCUboot would act on for @image at the next boot (bootutil's table). */
enum sim_swap_type sim_device_swap_type(const struct sim_device *d, unsigned image);
/* Paths of absolute slot @slot (0..3). */
void sim_device_slot_path(const struct sim_device *d, unsigned slot, char *out, size_t n);
bool sim_device_reachable(const struct sim_device *d);
/* Adapter @k of the fake bluetoothd is in range of the device / the mean RSSI it sees. */
bool sim_device_hears(const struct sim_device *d, unsigned k);
int sim_device_rssi(const struct sim_device *d, unsigned k);
/* The address the device advertises from at @now_us: its static random identity address, or
 * with rpa_rotate_s a resolvable private address that changes every rpa_rotate_s seconds. */
void sim_device_adv_addr(const struct sim_device *d, uint64_t now_us, char out[18]);
/* Images mcumgr serves (1 with single_image, else SIM_IMAGES). */
unsigned sim_device_images(const struct sim_device *d);
double sim_device_rand(struct sim_device *d);
/* Counters and faults for one SMP request about to be handled: 0 handle it, -1 drop it
 * (link lost, device gone), > 0 answer with that mcumgr rc instead. */
int sim_device_fault_on_request(struct sim_device *d, bool is_upload);
/* Schedules a reboot @delay_ms from now (os reset, reboot fault). */
void sim_device_reset_later(struct sim_device *d, double delay_ms);
/* Link lost (fault, out of range, reset): BLE disconnect, reassembly reset, stale work dropped. */
void sim_device_link_lost(struct sim_device *d, const char *why);
void sim_device_go_away(struct sim_device *d, double ms);

/* Timer delay (ms) to model time @at_us, against the loop's own clock (both are
 * CLOCK_MONOTONIC): events scheduled in model order fire in that order. */
uint64_t sim_delay_ms(uv_loop_t *loop, uint64_t at_us);
/* Resets the device now: reboot through MCUboot (device.c). */
void sim_device_reset_now(struct sim_device *d, const char *why);
void sim_req_free(struct sim_req *r);

/* Entry points of the request pipeline (pipeline.c). */
/* A whole SMP packet arrived at @now over UDP from @peer. */
void sim_device_rx_udp(struct sim_device *d, const uint8_t *buf, size_t len,
		       const struct sockaddr *peer);
/* One ATT write (one fragment) arrived over BLE. */
void sim_device_rx_ble_write(struct sim_device *d, const uint8_t *buf, size_t len);
/* BLE notifications disabled / link dropped: reset reassembly. */
void sim_device_rx_reset(struct sim_device *d);

/* ---- transports -------------------------------------------------------------------------------
 */

int sim_udp_start(struct sim_device *d, const struct sockaddr *addr);
void sim_udp_send(struct sim_device *d, const struct sockaddr *peer, const uint8_t *buf,
		  size_t len);

/* sd-bus driven by the libuv loop (busloop.c). */
struct sim_busloop {
	sd_bus *bus;
	uv_loop_t *loop;
	uv_poll_t poll;
	uv_timer_t timer;
	uv_prepare_t prepare;
	int poll_events;
	bool poll_on, dead;
};
void sim_busloop_init(struct sim_busloop *l, uv_loop_t *loop, sd_bus *bus);
/* Applies sd-bus's wanted events and timeout now (after queuing messages outside a callback). */
void sim_busloop_kick(struct sim_busloop *l);
/* Closes its three handles; @cb runs three times with handle->data = @data. */
void sim_busloop_close(struct sim_busloop *l, void *data, uv_close_cb cb);

/* Takes org.bluez; @wait: block until the name is ours (startup), else ask asynchronously. */
int sim_bluez_new(struct sim *sim, bool wait, struct sim_bluez **ret);

/* ---- the fake bluetoothd's agents and pairing (pairing.c) ---- */

struct sim_agents;
struct sim_pairing;
/* AgentManager1 at /org/bluez on @bus. */
int sim_agents_new(sd_bus *bus, uv_loop_t *loop, struct sim_agents **ret);
struct sim_agents *sim_agents_free(struct sim_agents *a);
/* A client left the bus: its agent goes (bluetoothd's agent_disconnect). */
void sim_agents_client_gone(struct sim_agents *a, const char *sender);
/* @level: SIM_SEC_* reached; or @err_name/@err_msg as Device1.Pair() would answer. */
typedef void (*sim_pair_done_t)(void *user_data, int level, const char *err_name,
				const char *err_msg);
/*
 * LE Secure Connections pairing with a device showing @passkey (-1: NoInputNoOutput), asked of
 * @caller's agent, else the default agent (src/agent.c agent_get()), else none. Completes
 * after @smp_ms. Never calls back before it returns.
 */
int sim_pair_start(struct sim_agents *a, const char *caller, const char *dev_path, int passkey,
		   double smp_ms, sim_pair_done_t cb, void *user_data, struct sim_pairing **ret);
/* fotagw-sim --peripheral's default agent (periph-agent.c); NULL when no device has a passkey. */
void *sim_periph_agent_start(sd_bus *bus, struct sim *sim);
void *sim_periph_agent_free(void *agent);
/* Ends a pairing without calling back (the caller answers for it). NULL ok. */
struct sim_pairing *sim_pair_free(struct sim_pairing *p);
struct sim_bluez *sim_bluez_free(struct sim_bluez *b);
/* Device events for the fake bluetoothd. */
void sim_bluez_device_link_lost(struct sim_bluez *b, struct sim_device *d);
void sim_bluez_device_advertising(struct sim_bluez *b, struct sim_device *d);
/* Sends @len bytes of SMP response as notifications of at most mtu-3 bytes. Returns false if no
 * subscriber (the response is lost, as bt_gatt_notify on a disabled CCC). */
bool sim_bluez_notify(struct sim_bluez *b, struct sim_device *d, const uint8_t *buf, size_t len);

/* --peripheral (peripheral.c): device i as a GATT peripheral of the real bluetoothd on adapter
 * opt.adapters[i] (system bus). */
int sim_periph_new(struct sim *sim, struct sim_periph **ret);
struct sim_periph *sim_periph_free(struct sim_periph *p);
/* The device lost its link or resets: disconnect the central, stop advertising while down. */
void sim_periph_device_link_lost(struct sim_periph *p, struct sim_device *d);
/* The device is up again: advertise. */
void sim_periph_device_advertising(struct sim_periph *p, struct sim_device *d);
/* Sends an SMP response as notifications of at most MTU - 5 bytes; false if nobody listens. */
bool sim_periph_notify(struct sim_periph *p, struct sim_device *d, const uint8_t *buf, size_t len);

/* ---- the whole simulator ----------------------------------------------------------------------
 */

struct sim_options {
	unsigned n_devices;
	const char *state_dir;
	const char *udp_host;
	unsigned udp_base;
	bool bluez;
	bool no_acquire;
	bool canonical;
	unsigned max_connections;  /* per adapter */
	unsigned n_bluez_adapters; /* --adapters N: the fake bluetoothd's hci0..hciN-1 */
	double connect_timeout_ms;
	double disconnect_ms;
	double temporary_timeout_ms;
	double bluez_restart_ms; /* SIGUSR1: the fake bluetoothd is away this long (0: until the
				    next) */
	uint64_t seed;
	bool peripheral;       /* --peripheral: GATT peripherals of the real bluetoothd */
	const char **adapters; /* --peripheral: adapter of device i ("hci1") */
	unsigned n_adapters;
};

struct sim {
	uv_loop_t *loop;
	struct sim_options opt;
	struct evp_pkey_st *key;
	struct sim_device *devs;
	unsigned n_devs;
	struct sim_bluez *bluez;
	struct sim_periph *periph;
	uint8_t udp_rx[65536];
};
