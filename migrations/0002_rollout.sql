-- 0002: rollout control that must survive restarts (pause/halt), and which devices are canaries.

CREATE TABLE rollout (
	release_id      TEXT PRIMARY KEY NOT NULL REFERENCES releases(id),
	halted          INTEGER NOT NULL DEFAULT 0 CHECK (halted IN (0, 1)),
	halted_by       TEXT,               -- 'operator' (pause) or 'policy' (failure rate)
	halted_reason   TEXT,
	updated_at      INTEGER NOT NULL
) STRICT;

ALTER TABLE jobs ADD COLUMN canary INTEGER NOT NULL DEFAULT 0 CHECK (canary IN (0, 1));
-- Which images this job uploads/marks (bit i = image i) and the outcome per core, as the
-- verifier saw it: 'verified', 'unverified' (net core that cannot be read back), or NULL.
ALTER TABLE jobs ADD COLUMN images_mask INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN app_result TEXT;
ALTER TABLE jobs ADD COLUMN net_result TEXT;
