#!/usr/bin/env python3
"""fotactl's ops commands against a running fotagwd (seeded, 250 devices): --json output is the
API's data (devices merged across pages), tables are aligned, the URL and token come from the
gateway config unless given, and refusals exit 1 with the gateway's reason.

usage: test_fotactl.py FOTAGWD FOTACTL
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apitest import Daemon, Fail, address, check, free_port, request, seed  # noqa: E402

FOTAGWD, FOTACTL = sys.argv[1], sys.argv[2]
N = 250


def run(*args, want_rc=0):
    p = subprocess.run([FOTACTL, *args], capture_output=True, text=True, timeout=30)
    check(p.returncode == want_rc,
          f"fotactl {' '.join(args)}: exit {p.returncode}, want {want_rc}: {p.stderr}")
    return p.stdout, p.stderr


def check_aligned(out, first_header):
    lines = [x for x in out.splitlines() if x]
    header = next(i for i, x in enumerate(lines) if x.startswith(first_header))
    cols = [i for i, c in enumerate(lines[header]) if c != " " and
            (i == 0 or lines[header][i - 1] == " ")]
    for line in lines[header + 1:]:
        if not line.startswith("C0:") and first_header == "ADDRESS":
            break
        for c in cols[1:]:
            check(len(line) <= c or line[c - 1] == " ", f"column {c} not aligned: '{line}'")


# A device controls its name, its job's reason (SMP rsn text) and its version strings: none
# of it may reach the operator's terminal as control characters (ESC, BEL, DEL, C1 CSI).
HOSTILE_NAME = "\x1b]0;pwned\x07\x1b[2Jx\x9b2J\x7f"
HOSTILE_REASON = "rsn:\x1b[31mred\nline2"
HOSTILE_VERSION = "1.0.0\x1b[H"


def hostile_device(db):
    import sqlite3
    con = sqlite3.connect(db)
    con.execute("UPDATE devices SET name = ? WHERE address = ?", (HOSTILE_NAME, address(3)))
    con.execute("UPDATE jobs SET reason = ? WHERE address = ?", (HOSTILE_REASON, address(3)))
    con.execute("UPDATE device_images SET version = ? WHERE address = ?",
                (HOSTILE_VERSION, address(3)))
    con.commit()
    con.close()


def raw(*args):
    p = subprocess.run([FOTACTL, *args], capture_output=True, timeout=30)
    check(p.returncode == 0, f"fotactl {' '.join(args)}: exit {p.returncode}: {p.stderr!r}")
    return p.stdout


def check_terminal_safe(out, what):
    text = out.decode("utf-8", "replace")
    bad = [c for c in text if ord(c) < 0x20 and c not in "\n\t" or 0x7f <= ord(c) <= 0x9f]
    check(not bad, f"{what}: control characters reach the terminal: {bad!r}")


def check_hostile_text_escaped(cfg):
    out = raw("devices", "--state", "failed,reverted,done,queued,uploading,verifying,"
              "connecting,probing,marking,resetting,rebooting,confirming,skipped", *cfg)
    check_terminal_safe(out, "devices")
    check(b"\\x1b]0;pwned\\x07" in out, f"devices: escaped name missing:\n{out!r}")
    out = raw("device", address(3), *cfg)
    check_terminal_safe(out, "device")
    check(b"\\x1b]0;pwned" in out and b"rsn:\\x1b[31mred\\x0aline2" in out and
          b"1.0.0\\x1b[H" in out, f"device: escaped texts missing:\n{out!r}")
    out = raw("rollout", *cfg)
    check_terminal_safe(out, "rollout")
    # --json stays the same data (a JSON parser reads the original text back) yet is safe.
    for args in (("device", "--json", address(3)), ("devices", "--json")):
        out = raw(*args, *cfg)
        check_terminal_safe(out, " ".join(args))
        got = json.loads(out)
        dev = got if args[0] == "device" else next(
            x for x in got["devices"] if x["address"] == address(3))
        check(dev["name"] == HOSTILE_NAME, f"{args}: name changed: {dev['name']!r}")


def main():
    with tempfile.TemporaryDirectory(prefix="fgw-fotactl-") as tmp:
        d = Daemon(FOTAGWD, tmp, free_port())
        seed(d.db, N)
        hostile_device(d.db)
        d.start()
        cfg = ["--config", d.conf]
        try:
            # --json devices: every device, all pages merged, same as the API says.
            out, _ = run("devices", "--json", *cfg)
            got = json.loads(out)
            check([x["address"] for x in got["devices"]] == sorted(address(i) for i in range(N)),
                  "devices --json: not all devices in order")
            check(got["release"] == "r2", "release")
            out, _ = run("--json", "devices", "--state", "failed,reverted", "--group", "lab", *cfg)
            st, _, body = request(d.url, "GET",
                                  "/v1/devices?limit=1000&state=failed,reverted&group=lab")
            check(json.loads(out)["devices"] == json.loads(body)["devices"], "filtered --json")
            out, _ = run("devices", "--limit", "5", *cfg)
            check(out.count("\nC0:") == 5 and "5 devices (more: raise --limit)" in out,
                  f"--limit table:\n{out}")
            out, _ = run("devices", *cfg)
            check(out.splitlines()[0].split() == ["ADDRESS", "NAME", "GROUP", "STATE", "RELEASE",
                                                  "PROGRESS", "TRIES", "REASON"], "header")
            check(f"{N} devices" in out, "count line")
            check_aligned(out, "ADDRESS")

            out, _ = run("device", address(11), *cfg)
            check("State:       reverted" in out and "revert seen" in out, f"device:\n{out}")
            check("Images:" in out and "active,confirmed" in out, "images table")
            out, _ = run("device", "--json", address(11), *cfg)
            check(json.loads(out)["job"]["reason"] == "revert seen", "device --json")
            _, err = run("device", "C0:00:00:00:FF:FF", *cfg, want_rc=1)
            check("HTTP 404" in err and "no device" in err, f"unknown device: {err}")

            out, _ = run("rollout", *cfg)
            check("Release:       r2 (1.1.0)" in out and "Failures by reason:" in out,
                  f"rollout:\n{out}")
            check_aligned(out.split("\n\n")[1], "STATE")
            out, _ = run("rollout", "--json", *cfg)
            check(json.loads(out)["total_devices"] == N, "rollout --json")
            out, _ = run("releases", *cfg)
            check(out.splitlines()[0].split()[:4] == ["ID", "VERSION", "SEQ", "STATE"], out)
            check_aligned(out, "ID")

            # Actions: the token comes from [api] token_file of the config; without a current
            # release the gateway refuses and fotactl says why.
            _, err = run("pause", "--reason", "test", *cfg, want_rc=1)
            check("HTTP 409" in err and "no current release" in err, f"pause: {err}")
            _, err = run("retry", address(1), "--url", d.url, want_rc=1)
            check("needs the API token" in err, f"retry without token: {err}")
            bad = os.path.join(tmp, "badtoken")
            with open(bad, "w") as f:
                f.write("wrong-token-0123456789\n")
            # Others can read it: refused before anything is sent, as fotagwd does (#18 item 5).
            os.chmod(bad, 0o644)
            n_unauth = d.read_log().count("event: api-unauthorized")
            _, err = run("resume", "--url", d.url, "--token-file", bad, want_rc=1)
            check(f"token file '{bad}'" in err and "others can read it" in err,
                  f"token readable by others: {err}")
            check(d.read_log().count("event: api-unauthorized") == n_unauth,
                  "a token others can read was sent anyway")
            os.chmod(bad, 0o640)
            _, err = run("resume", "--url", d.url, "--token-file", bad, want_rc=1)
            check("HTTP 401" in err, f"wrong token: {err}")
            _, err = run("resume", "--url", d.url, "--token-file", "/nonexistent", want_rc=1)
            check("cannot read token file" in err, f"missing token file: {err}")
            check("event: api-unauthorized" in d.read_log(), "refusal not logged")

            check_hostile_text_escaped(cfg)

            # Unreachable gateway: clear message, exit 1.
            _, err = run("rollout", "--url", f"http://127.0.0.1:{free_port()}", want_rc=1)
            check("cannot reach fotagwd" in err, f"unreachable: {err}")
            _, err = run("devices", "--bogus", want_rc=2)
        except Fail as e:
            print("FAIL:", e)
            return 1
        finally:
            d.kill()
        print("ok: fotactl ops commands")
        return 0


if __name__ == "__main__":
    sys.exit(main())
