#!/usr/bin/env python3
"""The status page in headless Chromium against a simulated BLE rollout (issue 20).

  test_page.py FOTAGWD FOTACTL FOTAGW_SIM [SCREENSHOT.png]

fotagw-sim is bluetoothd on a private bus with 4 nRF5340 devices, one of them advertising a
hostile name (markup, quotes, an ampersand, ESC and BEL); fotagwd rolls a release out to them.
Chromium loads http://127.0.0.1:PORT/ and the test checks, through the DevTools protocol:
  - one row per device, the same addresses the API lists, and the script keeps them live;
  - a device's progress bar advances while its upload runs;
  - the hostile name is text: the row shows it with the controls made visible, and no element
    came out of it;
  - no console error, exception, CSP violation or failed load;
  - with JavaScript off, the server-rendered table has the same rows.
A screenshot is saved when a path is given (the README's picture is one of these).
"""
import html.parser
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fleet-it"))
import cdp  # noqa: E402
import fleettest as ft  # noqa: E402
from fleettest import check, Fail  # noqa: E402

N = 4
HOSTILE = 2
# 27 bytes (a legacy scan response holds 29): markup that would make an <img>, quotes, &, ESC, BEL.
HOSTILE_NAME = '<img src=x onerror=a()>"&\x1b\x07'
SHOWN_NAME = '<img src=x onerror=a()>"&\u241b\u2407'
TERMINAL = ft.TERMINAL


def scenario(path):
    esc = HOSTILE_NAME.replace("\\", "\\\\").replace("\x1b", "\\x1b").replace("\x07", "\\x07")
    with open(path, "w") as f:
        # A distant device's link (45 ms interval, 3 packets per event: about 16 kB/s of image
        # data): each upload takes several refreshes of the page. The hostile device
        # advertises the SMP UUID, so fotagwd takes it without the name prefix.
        f.write("[default]\nlink = typical,interval=45,pkts=3\n\n"
                f"[device {HOSTILE}]\nname = {esc}\nadv_smp_uuid = true\nrssi = -71\n")


ROWS_JS = """Array.from(document.querySelectorAll('#devices tbody tr')).map(tr => ({
  name: tr.cells[0].textContent, address: tr.cells[1].textContent,
  state: tr.cells[2].textContent,
  pct: tr.querySelector('progress') ? Number(tr.querySelector('progress').value) : null,
  bar: tr.cells[3].textContent,
  nameHtml: tr.cells[0].innerHTML}))"""


class TableParser(html.parser.HTMLParser):
    """Rows of table#devices in the page the server sent (no script ran)."""

    def __init__(self):
        super().__init__()
        self.in_devices = self.in_body = False
        self.rows, self.cell, self.tags = [], None, []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "table" and dict(attrs).get("id") == "devices":
            self.in_devices = True
        elif self.in_devices and tag == "tbody":
            self.in_body = True
        elif self.in_body and tag == "tr":
            self.rows.append([])
        elif self.in_body and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if self.in_body and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(self.cell)
            self.cell = None
        elif tag == "tbody" and self.in_body:
            self.in_body = self.in_devices = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def api_devices(gw):
    return {d["address"]: d for d in gw.get("/v1/devices?limit=1000")["devices"]}


def wait_for(what, cond, limit, w, step=0.5):
    end = time.monotonic() + limit
    last = None
    while time.monotonic() < end:
        if w.gw.proc and w.gw.proc.poll() is not None:
            raise Fail(f"fotagwd died waiting for {what}")
        last = cond()
        if last:
            return last
        time.sleep(step)
    raise Fail(f"timed out ({limit} s) waiting for {what}")


def live_checks(w, b, shot):
    b.navigate(w.gw.url + "/")
    wait_for("the script to refresh the page",
             lambda: (b.eval("document.getElementById('live').textContent") or "")
             .startswith("Live:"), 20, w)
    # Rows match the devices the API lists, once all four are discovered.
    rows = wait_for("4 device rows", lambda: (lambda r: r if len(r) == N else None)(
        b.eval(ROWS_JS)), 60, w)
    want = sorted(api_devices(w.gw))
    check(sorted(r["address"] for r in rows) == want, f"rows are the API's devices: {want}")
    # Progress advances: the same device's bar moves on between two refreshes.
    seen = {}

    def advanced():
        for r in b.eval(ROWS_JS):
            if r["pct"] is None or r["state"] != "uploading":
                continue
            # per image: the net core goes first, then the app core from 0 %
            key = (r["address"], r["bar"].endswith("net core"))
            first = seen.setdefault(key, r["pct"])
            if r["pct"] > first:
                return (r["address"], first, r["pct"])
        b.pump(0)
        return None
    addr, p0, p1 = wait_for("a progress bar to advance", advanced, 90, w, step=1.0)
    check(True, f"progress of {addr} advanced from {p0} % to {p1} %")
    if shot:
        b.screenshot(shot)
        check(os.path.getsize(shot) > 1000, f"screenshot saved to {shot}")
    # The hostile name is text.
    hostile = ft.simctl.device_address(HOSTILE)
    api_name = api_devices(w.gw)[hostile]["name"]
    check(api_name == HOSTILE_NAME, f"the API has the name as advertised: {api_name!r}")
    row = next(r for r in b.eval(ROWS_JS) if r["address"] == hostile)
    check(row["name"] == SHOWN_NAME, f"row shows {row['name']!r}")
    check("&lt;img" in row["nameHtml"] and "<img" not in row["nameHtml"],
          f"markup escaped: {row['nameHtml']!r}")
    check(b.eval("document.querySelectorAll('img, script:not([src])').length") == 0,
          "no element came out of device text")
    check(b.eval("document.querySelectorAll('#events tbody tr').length") > 0, "recent events")
    check(b.eval("document.querySelector('#releases tbody th').textContent")
          .startswith(w.release.id), "the release is listed")
    images = b.eval("document.querySelector('#releases tbody tr').cells[7].textContent")
    want = f"app core {w.release.version}"
    check(want in images and f"net core {w.release.version}" in images and
          w.release.app_hash.hex()[:16] in images, f"its images: {images!r}")
    # The page keeps up: the rows follow the rollout to its end.
    w.gw.wait_all_terminal(N, 120)

    def final():
        rows = b.eval(ROWS_JS)
        api = api_devices(w.gw)
        return all(r["state"] == api[r["address"]]["state"] and r["state"] in TERMINAL
                   for r in rows)
    wait_for("the rows to show the final states", final, 15, w)
    check(True, "rows follow the rollout to its final states")
    b.pump(0.5)
    check(not b.problems, f"no console errors: {b.problems}")


def static_checks(w, b):
    b.call("Emulation.setScriptExecutionDisabled", {"value": True})
    b.navigate(w.gw.url + "/")
    page = b.html()
    check("Static view" in page, "the script did not run")
    p = TableParser()
    p.feed(page)
    api = api_devices(w.gw)
    check(sorted(r[1] for r in p.rows) == sorted(api), f"static rows {[r[1] for r in p.rows]}")
    for r in p.rows:
        check(r[2] == api[r[1]]["state"], f"static state of {r[1]}: {r[2]}")
    hostile = next(r for r in p.rows if r[1] == ft.simctl.device_address(HOSTILE))
    check(hostile[0] == SHOWN_NAME, f"static row shows {hostile[0]!r}")
    check("<img" not in page, "no <img> in the static page")
    b.pump(0.5)
    check(not b.problems, f"no console errors without JavaScript: {b.problems}")


def main():
    fotagwd, fotactl, sim = sys.argv[1:4]
    shot = sys.argv[4] if len(sys.argv) > 4 else None
    if not cdp.find_chromium():
        print("FAIL: chromium is not installed (tools/deps.sh)")
        return 1
    import tempfile
    scen_dir = tempfile.mkdtemp(prefix="fgw-web-")
    scen = os.path.join(scen_dir, "scenario.ini")
    scenario(scen)
    w = ft.World({"fotagwd": fotagwd, "fotactl": fotactl, "sim": sim}, N, ble=True,
                 sim_args=["--scenario", scen, "--seed", "5"], app_size=160 * 1024,
                 net_size=48 * 1024)
    b = None
    ok = False
    try:
        w.gw.start()
        b = cdp.Browser(scen_dir)
        live_checks(w, b, shot)
        static_checks(w, b)
        log = w.gw.log()
        check("\x1b" not in log, "fotagwd's log carries no raw ESC from the device name")
        ok = True
    except (Fail, cdp.CdpError) as e:
        print("FAIL:", e)
        if b:
            print("---- chromium log (tail) ----\n" + b.log()[-3000:])
    finally:
        if b:
            b.close()
        w.close(ok)
        import shutil
        shutil.rmtree(scen_dir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
