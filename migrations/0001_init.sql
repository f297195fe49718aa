-- 0001: devices, their images, releases, jobs and the event log.
-- Times are Unix milliseconds (UTC). Addresses are "AA:BB:CC:DD:EE:FF" for BLE devices and
-- "udp:HOST:PORT" for devices reached over SMP/UDP.

CREATE TABLE devices (
	address         TEXT PRIMARY KEY NOT NULL,
	transport       TEXT NOT NULL DEFAULT 'ble' CHECK (transport IN ('ble', 'udp')),
	name            TEXT,
	rssi            INTEGER,
	last_seen       INTEGER,
	board           TEXT,
	grp             TEXT,               -- rollout group ("group" is an SQL keyword)
	bootloader_mode INTEGER,            -- MCUboot mode as the device reports it, -1 unknown
	created_at      INTEGER NOT NULL
) STRICT;

-- What the device last said about each image slot (image 0 app core, image 1 net core).
CREATE TABLE device_images (
	address   TEXT NOT NULL REFERENCES devices(address) ON DELETE CASCADE,
	image     INTEGER NOT NULL CHECK (image >= 0),
	slot      INTEGER NOT NULL CHECK (slot IN (0, 1)),
	version   TEXT,
	hash      TEXT,                     -- hex SHA-256 as the device reports it
	flags     INTEGER NOT NULL DEFAULT 0, -- bit 0 active, 1 confirmed, 2 pending, 3 permanent, 4 bootable
	read_at   INTEGER NOT NULL,
	PRIMARY KEY (address, image, slot)
) STRICT;

CREATE TABLE releases (
	id              TEXT PRIMARY KEY NOT NULL,
	sequence        INTEGER NOT NULL,   -- manifest sequence this release came with
	version         TEXT NOT NULL,
	board           TEXT,
	groups_json     TEXT,               -- JSON array of target groups, NULL = all
	policy_json     TEXT,               -- the manifest's policy object
	bundle_url      TEXT NOT NULL,
	bundle_sha256   TEXT NOT NULL,
	bundle_size     INTEGER NOT NULL,
	bundle_path     TEXT,               -- verified bundle in the cache, NULL until verified
	state           TEXT NOT NULL DEFAULT 'pending'
			CHECK (state IN ('pending', 'verified', 'rejected', 'superseded')),
	reason          TEXT,               -- why rejected
	created_at      INTEGER NOT NULL,
	verified_at     INTEGER
) STRICT;

-- The manifest source's memory: highest sequence accepted (rollback guard) and the ETag.
CREATE TABLE manifest_state (
	id              INTEGER PRIMARY KEY CHECK (id = 1),
	sequence        INTEGER NOT NULL DEFAULT 0,
	etag            TEXT,
	last_poll_at    INTEGER,
	last_result     TEXT
) STRICT;
INSERT INTO manifest_state (id, sequence) VALUES (1, 0);

CREATE TABLE jobs (
	id              INTEGER PRIMARY KEY,
	address         TEXT NOT NULL REFERENCES devices(address) ON DELETE CASCADE,
	release_id      TEXT NOT NULL REFERENCES releases(id),
	state           TEXT NOT NULL CHECK (state IN ('queued', 'connecting', 'probing',
			'uploading', 'marking', 'resetting', 'rebooting', 'verifying', 'confirming',
			'done', 'skipped', 'reverted', 'failed', 'superseded')),
	image           INTEGER,            -- image being uploaded (uploading)
	offset          INTEGER NOT NULL DEFAULT 0, -- last persisted upload offset
	attempts        INTEGER NOT NULL DEFAULT 0,
	next_attempt_at INTEGER,            -- back-off: not before this time
	reason          TEXT,               -- why failed/reverted/skipped
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL,
	started_at      INTEGER,
	finished_at     INTEGER,
	UNIQUE (address, release_id)
) STRICT;
CREATE INDEX jobs_state ON jobs(state);

-- Audit trail: every job transition and every notable device event, append-only.
CREATE TABLE events (
	id              INTEGER PRIMARY KEY,
	at              INTEGER NOT NULL,
	address         TEXT,
	job_id          INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
	kind            TEXT NOT NULL,      -- e.g. job-state, release, adapter
	from_state      TEXT,
	to_state        TEXT,
	detail          TEXT
) STRICT;
CREATE INDEX events_address ON events(address, id);
CREATE INDEX events_job ON events(job_id, id);
