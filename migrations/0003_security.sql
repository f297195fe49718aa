-- 0003: the link security each device's SMP characteristic needed, as learned from its
-- refusals (an ATT security error on the subscription), so that the next connection pairs
-- before subscribing. 'unknown' until learned; the bonds themselves stay with bluetoothd
-- (/var/lib/bluetooth).
ALTER TABLE devices ADD COLUMN security TEXT NOT NULL DEFAULT 'unknown'
	CHECK (security IN ('unknown', 'none', 'encrypted', 'authenticated'));
