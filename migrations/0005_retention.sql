-- 0005: retention and the memory of a failed image check.
-- Pruning (lib/store/store-retention.c) deletes old events by time and by count, finished
-- jobs of releases no longer in force, and BLE devices not seen for long; these indexes keep
-- each of its bounded batches from scanning the whole table.
CREATE INDEX events_at ON events(at);
CREATE INDEX jobs_finished ON jobs(finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX devices_last_seen ON devices(last_seen);
-- Bit i: image i failed the device's own image check. Its slot's hash field comes from the
-- image's TLV, not from the bytes, so the next attempt erases the slot and uploads again
-- instead of marking what is there; kept here so a restart does not trust the slot again.
ALTER TABLE jobs ADD COLUMN distrust_slots INTEGER NOT NULL DEFAULT 0;
