-- 0006: the same CHECK constraints on jobs.state and devices.security, written so that SQLite
-- can test them without a temporary b-tree. An IN list of more than two values is compiled to
-- an ephemeral index that is built again each time the statement runs: it made every job
-- transition's UPDATE cost about 60 k instructions instead of 17 k (docs/performance.md,
-- "Issue 15, per-device cost"). A CASE compares in place. The values allowed do not change
-- and a CHECK does not touch how rows are stored, so the schema text is edited in place
-- (SQLite's documented way for such changes, lang_altertable.html, "other kinds of table
-- schema changes"); rebuilding jobs would fire the ON DELETE actions of events.job_id.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (state IN (''queued'', ''connecting'', ''probing'',
			''uploading'', ''marking'', ''resetting'', ''rebooting'', ''verifying'', ''confirming'',
			''done'', ''skipped'', ''reverted'', ''failed'', ''superseded''))',
	'CHECK (CASE state WHEN ''queued'' THEN 1 WHEN ''connecting'' THEN 1 WHEN ''probing'' THEN 1
			WHEN ''uploading'' THEN 1 WHEN ''marking'' THEN 1 WHEN ''resetting'' THEN 1
			WHEN ''rebooting'' THEN 1 WHEN ''verifying'' THEN 1 WHEN ''confirming'' THEN 1
			WHEN ''done'' THEN 1 WHEN ''skipped'' THEN 1 WHEN ''reverted'' THEN 1
			WHEN ''failed'' THEN 1 WHEN ''superseded'' THEN 1 ELSE 0 END)')
	WHERE type = 'table' AND name = 'jobs';
UPDATE sqlite_schema SET sql = replace(sql,
	'CHECK (security IN (''unknown'', ''none'', ''encrypted'', ''authenticated''))',
	'CHECK (CASE security WHEN ''unknown'' THEN 1 WHEN ''none'' THEN 1 WHEN ''encrypted'' THEN 1
			WHEN ''authenticated'' THEN 1 ELSE 0 END)')
	WHERE type = 'table' AND name = 'devices';
PRAGMA writable_schema = RESET;
-- A text that did not match would leave the old constraint silently: fail the migration.
CREATE TEMP TABLE migration_0006 (ok INTEGER NOT NULL CHECK (ok = 2));
INSERT INTO migration_0006 SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND
	((name = 'jobs' AND sql LIKE '%CASE state WHEN%' AND sql NOT LIKE '%state IN (%') OR
	 (name = 'devices' AND sql LIKE '%CASE security WHEN%' AND sql NOT LIKE '%security IN (%'));
DROP TABLE migration_0006;
