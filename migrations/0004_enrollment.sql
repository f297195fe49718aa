-- 0004: enrollment. With [fleet] enrollment = allowlist (the default) only enrolled devices
-- get jobs; a device merely seen is 'unenrolled', capped in number and forgotten after a
-- while. Devices known before this migration are not enrolled: an upgraded gateway updates
-- them again once they are enrolled (fotactl devices enroll/import) or with enrollment = open.
ALTER TABLE devices ADD COLUMN enrolled INTEGER NOT NULL DEFAULT 0 CHECK (enrolled IN (0, 1));
ALTER TABLE devices ADD COLUMN enrolled_at INTEGER;
ALTER TABLE devices ADD COLUMN label TEXT;
-- The board given at enrollment; devices.board is what the device itself reported at probe
-- time (os info, hardware platform), which wins when both are known.
ALTER TABLE devices ADD COLUMN enrolled_board TEXT;
CREATE INDEX devices_unenrolled ON devices(enrolled, last_seen);

-- Per-device passkeys, a table of their own so that no query of the devices table (the API,
-- fotactl, the status page) can return one by accident; only the pairing agent reads it.
CREATE TABLE device_passkeys (
	address   TEXT PRIMARY KEY NOT NULL REFERENCES devices(address) ON DELETE CASCADE,
	passkey   INTEGER NOT NULL CHECK (passkey BETWEEN 0 AND 999999)
) STRICT;
