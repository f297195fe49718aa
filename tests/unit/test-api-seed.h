/* Rows shared by the API unit tests (test-api-store.c, test-api.c). */
#pragma once

/*
 * Two releases verified (r2 is newer, so current), one pending (newer still, not current).
 * Devices a..f; jobs for r2 in several states, one job for r1 only.
 */
static const char api_seed_sql[] =
    "INSERT INTO releases (id, sequence, version, bundle_url, bundle_sha256, bundle_size, "
    "  state, policy_json, created_at) VALUES "
    " ('r1', 1, '1.0.0', 'http://x/1.zip', 'aa', 10, 'superseded', NULL, 1),"
    " ('r2', 2, '1.1.0', 'http://x/2.zip', 'bb', 20, 'verified', "
    "   '{\"max_failure_rate\":0.2}', 2),"
    " ('r0', 0, '0.9.0', 'http://x/0.zip', 'cc', 5, 'verified', NULL, 0),"
    " ('r3', 3, '1.2.0', 'http://u:pw@x/3.zip?sig=s3cret', 'dd', 30, 'pending', NULL, 3);"
    "INSERT INTO devices (address, name, grp, rssi, created_at, enrolled) VALUES "
    " ('AA:00:00:00:00:0F', 'f', 'field', NULL, 1, 1),"
    " ('AA:00:00:00:00:0A', 'a', 'lab', -40, 1, 1),"
    " ('AA:00:00:00:00:0B', 'b', 'lab', -41, 1, 1),"
    " ('AA:00:00:00:00:0C', 'c', 'field', -42, 1, 1),"
    " ('AA:00:00:00:00:0D', 'd', 'field', -43, 1, 1),"
    " ('AA:00:00:00:00:0E', NULL, NULL, NULL, 1, 1);"
    "INSERT INTO jobs (address, release_id, state, image, offset, reason, canary, created_at,"
    "  updated_at, finished_at) VALUES "
    " ('AA:00:00:00:00:0A', 'r2', 'uploading', 0, 4096, NULL, 1, 1, 5, NULL),"
    " ('AA:00:00:00:00:0B', 'r2', 'failed', NULL, 0, 'image rejected', 1, 1, 6, 60),"
    " ('AA:00:00:00:00:0C', 'r2', 'failed', NULL, 0, 'image rejected', 0, 1, 7, 70),"
    " ('AA:00:00:00:00:0D', 'r2', 'reverted', NULL, 0, 'revert seen', 0, 1, 8, 80),"
    " ('AA:00:00:00:00:0E', 'r2', 'done', NULL, 0, NULL, 0, 1, 9, 90),"
    " ('AA:00:00:00:00:0F', 'r1', 'done', NULL, 0, NULL, 0, 1, 2, 20);"
    "INSERT INTO device_images (address, image, slot, version, hash, flags, read_at) VALUES "
    " ('AA:00:00:00:00:0A', 1, 1, '1.1.0', 'bb01', 4, 3),"
    " ('AA:00:00:00:00:0A', 0, 0, '1.0.0', 'aa00', 3, 3),"
    " ('AA:00:00:00:00:0A', 0, 1, '1.1.0', 'bb00', 0, 3);"
    "INSERT INTO events (at, address, kind, from_state, to_state) VALUES "
    " (1, 'AA:00:00:00:00:0A', 'job-state', 'queued', 'connecting'),"
    " (2, 'AA:00:00:00:00:0A', 'job-state', 'connecting', 'probing'),"
    " (3, 'AA:00:00:00:00:0A', 'job-state', 'probing', 'uploading'),"
    " (4, 'AA:00:00:00:00:0B', 'job-state', 'uploading', 'failed');"
    "INSERT INTO rollout (release_id, halted, halted_by, halted_reason, updated_at) VALUES "
    " ('r2', 1, 'operator', 'lunch', 10);"
    "UPDATE manifest_state SET sequence = 3, etag = '\"e\"', last_poll_at = 1000, "
    "  last_result = 'not-modified';";
