#!/usr/bin/env python3
"""CLI conventions of fotactl and fotagwd (issue 19), one test per convention:
  1. every command and subcommand answers --help (exit 0, its own usage) and --version;
  2. options work before and after the (sub)command;
  3. an error names the argument that is wrong (exit 2).
The ops commands need a gateway for real work; here they meet a port nothing listens on, so
the option's effect shows in the error naming that URL (the api-it tier runs them for real).
  test_cli.py FOTACTL FOTAGWD SOURCE_DIR VERSION
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import zipfile

FOTACTL, FOTAGWD, SRC, VERSION = sys.argv[1:5]
fails = []

RELEASE_SUBS = ["keygen", "sign", "verify", "inspect", "make-image", "make-bundle"]
OPS = ["devices", "device", "rollout", "releases", "pause", "resume", "retry", "watch"]
COMMANDS = [["release"]] + [["release", s] for s in RELEASE_SUBS] + \
    [["keygen"], ["sign-manifest"]] + [[c] for c in OPS]


def run(*args, prog=FOTACTL):
    p = subprocess.run([prog, *args], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, LANG="C"))
    return p.returncode, p.stdout, p.stderr


def check(ok, what):
    print(("PASS: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        fails.append(what)


def dead_url():
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_help_and_version():
    rc, out, err = run("--help")
    check(rc == 0 and "Usage: fotactl" in out and all(c in out for c in OPS),
          "fotactl --help lists every command")
    for cmd in COMMANDS:
        # the usage of exactly that (sub)command, wherever --help stands
        want = "release " + cmd[-1] if cmd[0] == "release" and len(cmd) > 1 else cmd[-1]
        if cmd == ["keygen"]:
            want = "release keygen"
        if cmd == ["sign-manifest"]:
            want = "release sign"
        # every (sub)command after its name; before it and the short form on every other one
        # (each run costs ~1 s under ASan on a loaded machine)
        alt = ["--help"] + cmd if COMMANDS.index(cmd) % 2 else cmd + ["-h"]
        for args in (cmd + ["--help"], alt):
            rc, out, err = run(*args)
            lines = [l for l in out.splitlines() if l and not l.startswith(" ")]
            check(rc == 0 and err == "" and any(l.startswith(want) for l in lines),
                  f"fotactl {' '.join(args)}: exit {rc}, usage of '{want}'")
        for args in ((cmd + ["--version"],) if COMMANDS.index(cmd) % 2 else
                     (["--version"] + cmd, cmd + ["-V"])):
            rc, out, err = run(*args)
            check(rc == 0 and out == f"fotactl {VERSION}\n",
                  f"fotactl {' '.join(args)}: '{out.strip()}' exit {rc}")
    # release make-bundle --help did not run the subcommand: no "needs -o" complaint
    rc, out, err = run("release", "make-bundle", "--help")
    check("needs" not in err, "release make-bundle --help does not run it")
    for args in (["--help"], ["-h"]):
        rc, out, err = run(*args, prog=FOTAGWD)
        check(rc == 0 and "Usage: fotagwd" in out and "--check-config" in out,
              f"fotagwd {args[0]}: exit {rc}")
    for args in (["--version"], ["-V"]):
        rc, out, err = run(*args, prog=FOTAGWD)
        check(rc == 0 and out == f"fotagwd {VERSION}\n", f"fotagwd {args[0]}: '{out.strip()}'")


def test_options_before_and_after(tmp):
    url = dead_url()
    port = url.rsplit(":", 1)[1]
    for cmd in (["rollout"], ["devices", "--limit", "3"], ["device", "C0:00:00:00:00:01"],
                ["releases"], ["watch", "--once"]):
        for args in (["--url", url, "--json", *cmd], [*cmd, "--url", url, "--json"],
                     [cmd[0], f"--url={url}", *cmd[1:]]):
            rc, out, err = run(*args)
            if cmd[0] == "watch":  # draws its frame, the failure inside it
                rc, err = (1 if "unreachable" in out else rc), out
            check(rc == 1 and f"127.0.0.1:{port}" in err,
                  f"fotactl {' '.join(args)}: the URL was used ({err.strip()[:80]})")
    # --token-file and --config before the command: a missing token file is named
    missing = os.path.join(tmp, "no-such-token")
    for args in (["--token-file", missing, "resume", "--url", url],
                 ["resume", "--token-file", missing, "--url", url]):
        rc, out, err = run(*args)
        check(rc != 0 and missing in err, f"fotactl {' '.join(args[:3])}...: token file used")
    bad_conf = os.path.join(tmp, "bad.conf")
    with open(bad_conf, "w") as f:
        f.write("[nosuchsection]\n")
    for args in (["--config", bad_conf, "rollout"], ["rollout", "--config", bad_conf]):
        rc, out, err = run(*args)
        check(rc == 2 and bad_conf in err, f"fotactl {' '.join(args)}: config used")
    # release subcommands: global --json before or after, own options anywhere after it
    img = os.path.join(tmp, "app.bin")
    rc, _, err = run("release", "make-image", "--size", "4096", "-o", img, "--image-version",
                     "1.2.3")
    check(rc == 0 and os.path.getsize(img) > 4096, f"make-image with options in any order {err}")
    outs = []
    for args in (["--json", "release", "inspect", img], ["release", "--json", "inspect", img],
                 ["release", "inspect", img, "--json"]):
        rc, out, err = run(*args)
        outs.append(out)
        check(rc == 0 and out.lstrip().startswith("{"), f"fotactl {' '.join(args)}: JSON")
    check(len(set(outs)) == 1, "inspect --json: same output wherever --json stands")
    # the older spelling: make-image --version VALUE is still the image version
    rc, _, err = run("release", "make-image", "-o", img, "--version", "2.0.0", "--size", "4096")
    rc2, out, _ = run("release", "inspect", img)
    check(rc == 0 and "2.0.0" in out, "make-image --version 2.0.0 still sets the image version")
    conf = os.path.join(SRC, "config", "fotagw.conf")
    for args in (["--config", conf, "--check-config"], ["--check-config", "--config", conf],
                 ["--check-config", f"--config={conf}"]):
        rc, out, err = run(*args, prog=FOTAGWD)
        check(rc == 0 and f"{conf}: ok" in out, f"fotagwd {' '.join(args)}")


def test_inspect_hostile_zip(tmp):
    """Names in a bundle are untrusted: quotes, backslashes and control characters come out
    of inspect --json as valid JSON with the exact strings, and escaped on a terminal."""
    app, ok, evil = (os.path.join(tmp, n) for n in ("h-app.bin", "h-ok.zip", "h-evil.zip"))
    rc, _, err = run("release", "make-image", "-o", app, "--image-version", "1.0.0",
                     "--size", "4096")
    rc2, _, err2 = run("release", "make-bundle", "-o", ok, "--app", app)
    check(rc == 0 and rc2 == 0, f"hostile zip: base bundle made {err}{err2}")
    with zipfile.ZipFile(ok) as z:
        m, data = json.loads(z.read("manifest.json")), z.read("app.bin")
    # entry names may not hold controls or backslashes (lib/bundle refuses them); the
    # manifest's name and board may hold anything
    fname = 'a"b<x>\'{}.bin'
    name = 'n"\\\x07\x7f</script>"]}'
    board = 'bo"ard\n\\u0000\x1b[31m\x01'
    m["name"], m["files"][0]["file"], m["files"][0]["board"] = name, fname, board
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("manifest.json", json.dumps(m))
        z.writestr(fname, data)
    rc, out, err = run("release", "inspect", evil, "--json")
    try:
        doc = json.loads(out)
        img = doc["images"][0]
        same = (doc["name"], img["file"], img["board"]) == (name, fname, board)
    except (ValueError, KeyError, IndexError) as e:
        same, doc = False, e
    check(rc == 0 and same, f"inspect --json of a hostile zip: exact strings back {doc!r}")
    rc, out, err = run("release", "inspect", evil)
    raw = [c for c in out if ord(c) < 32 and c != "\n" or ord(c) == 0x7f]
    check(rc == 0 and not raw and "\\x1b" in out and "\\x07" in out,
          f"inspect of a hostile zip: controls escaped on the terminal {out!r}")


def test_errors_name_the_argument():
    cases = [
        (["--bogus"], "--bogus"),
        (["bogus"], "'bogus'"),
        (["release", "bogus"], "'bogus'"),
        (["release"], "subcommand"),
        (["release", "make-bundle", "--bogus"], "--bogus"),
        (["release", "make-image", "--size", "abc"], "--size 'abc'"),
        (["release", "make-image", "-o", "x", "--image-version", "one"], "'one'"),
        (["release", "keygen", "-o", "k.pem", "--type", "dsa"], "--type 'dsa'"),
        (["release", "sign", "m.json", "extra", "--key", "k.pem"], "'extra'"),
        (["release", "inspect", "a.zip", "b.zip"], "'b.zip'"),
        (["rollout", "extra"], "'extra'"),
        (["retry"], "ADDR"),
        (["devices", "--limit", "zero"], "--limit 'zero'"),
        (["devices", "--bogus"], "--bogus"),
        (["--url"], "--url"),
    ]
    for args, named in cases:
        rc, out, err = run(*args)
        check(rc == 2 and named in err, f"fotactl {' '.join(args)}: exit {rc}, names {named}: "
              f"{err.strip().splitlines()[0] if err.strip() else ''}")
    for args, named in ((["--bogus"], "--bogus"), (["extra"], "'extra'"),
                        (["--config"], "config")):
        rc, out, err = run(*args, prog=FOTAGWD)
        check(rc == 2 and named in err, f"fotagwd {' '.join(args)}: exit {rc}, names {named}")


def main():
    with tempfile.TemporaryDirectory(prefix="fgw-cli-") as tmp:
        os.chdir(tmp)
        test_help_and_version()
        test_options_before_and_after(tmp)
        test_inspect_hostile_zip(tmp)
        test_errors_name_the_argument()
    print(f"{len(fails)} failure(s)")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
