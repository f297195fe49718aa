// fotagw status page: refreshes the server-rendered tables by polling the read-only REST API
// of the same gateway. Every value goes into the page with textContent, never as markup, and
// control, C1 and bidi-override characters are shown as visible stand-ins (as the server does).
"use strict";

(function () {
  const PERIOD_MS = 2000;
  const DASH = "\u2014";
  const live = document.getElementById("live");

  function visible(s) {
    return String(s)
      .replace(/[\u0000-\u001f]/g, (c) => String.fromCharCode(0x2400 + c.charCodeAt(0)))
      .replace(/\u007f/g, "\u2421")
      .replace(/[\u0080-\u009f\u202a-\u202e\u2066-\u2069]/g, "\ufffd");
  }

  function text(s) {
    return s === null || s === undefined || s === "" ? DASH : visible(s);
  }

  function el(tag, content, attrs) {
    const e = document.createElement(tag);
    if (content instanceof Node) e.appendChild(content);
    else if (Array.isArray(content)) content.forEach((c) => e.appendChild(c));
    else if (content !== undefined) e.textContent = content;
    if (attrs) Object.keys(attrs).forEach((k) => e.setAttribute(k, attrs[k]));
    return e;
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function duration(s) {
    const v = Math.round(s);
    if (v < 60) return v + "s";
    if (v < 3600) return Math.floor(v / 60) + "m " + pad(v % 60) + "s";
    return Math.floor(v / 3600) + "h " + pad(Math.floor((v % 3600) / 60)) + "m";
  }

  function time(ms) {
    if (typeof ms !== "number") return DASH;
    return new Date(ms).toISOString().replace("T", " ").slice(0, 19);
  }

  function percent(v) {
    return typeof v === "number" ? (v * 100).toFixed(1) + " %" : DASH;
  }

  function setText(id, s) {
    const e = document.getElementById(id);
    if (e) e.textContent = s;
  }

  function summary(health, ro) {
    const rel = ro.release;
    setText("s-release", rel ? text(rel.id) + " (version " + text(rel.version) + ")" : "none yet");
    const r = document.getElementById("s-rollout");
    if (r) {
      r.textContent = "";
      if (ro.halted) {
        r.appendChild(el("strong", "halted"));
        r.appendChild(document.createTextNode(" by " + text(ro.halted_by) + ": " +
          text(ro.halted_reason)));
      } else {
        r.textContent = "running";
      }
    }
    setText("s-devices", ro.total_devices + ", " + ro.in_progress + " in progress");
    setText("s-failure", percent(ro.failure_rate) + " (policy: at most " +
      percent(ro.max_failure_rate) + ")");
    const c = ro.canary || {};
    setText("s-canary", text(c.status) + (c.total > 0 ? " (" + c.done + " of " + c.total +
      " done, " + c.failed + " failed)" : ""));
    if (health) {
      let g = "fotagwd " + text(health.version);
      if (typeof health.uptime_s === "number") g += ", up " + duration(health.uptime_s);
      g += ", Bluetooth adapter " + text(health.adapter_state) + ", database " +
        text(health.database && health.database.state);
      setText("s-gateway", g);
    }
  }

  function counts(ro) {
    const t = document.getElementById("counts");
    if (!t || !ro.counts) return;
    const names = Object.keys(ro.counts);
    const head = el("tr", names.map((n) => el("th", visible(n), { scope: "col" })));
    const body = el("tr", names.map((n) => el("td", String(ro.counts[n]))));
    t.tHead.replaceChildren(head);
    t.tBodies[0].replaceChildren(body);
  }

  function progressCell(job, state) {
    const p = job && job.progress;
    if (p && typeof p.percent === "number") {
      const bar = el("progress", p.percent.toFixed(1) + " %",
        { max: "100", value: p.percent.toFixed(1) });
      const label = el("span", p.percent.toFixed(1) + " % " +
        (p.image === 1 ? "net core" : "app core"));
      return el("td", [bar, document.createTextNode(" "), label]);
    }
    if (state === "done") {
      return el("td", [el("progress", "100 %", { max: "100", value: "100" }),
        document.createTextNode(" "), el("span", "100 %")]);
    }
    return el("td", DASH);
  }

  function deviceRow(d, adapter) {
    const job = d.job;
    const p = job && job.progress;
    const state = el("span", text(d.state), { class: "state", "data-state": d.state || "" });
    let where = text(d.transport);
    if (d.transport === "ble") where = "ble: " + text(adapter);
    return el("tr", [
      el("th", text(d.name), { scope: "row" }),
      el("td", text(d.address), { class: "mono" }),
      el("td", state),
      progressCell(job, d.state),
      el("td", p && typeof p.rate_bps === "number" ? (p.rate_bps / 1024).toFixed(1) : DASH,
        { class: "num" }),
      el("td", p && typeof p.eta_s === "number" ? duration(p.eta_s) : DASH, { class: "num" }),
      el("td", text(job && job.reason)),
      el("td", typeof d.rssi === "number" ? d.rssi + " dBm" : DASH, { class: "num" }),
      el("td", where),
    ]);
  }

  function devices(list, health) {
    const t = document.getElementById("devices");
    if (!t) return;
    const adapter = health ? health.adapter_state : null;
    t.tBodies[0].replaceChildren(...list.map((d) => deviceRow(d, adapter)));
  }

  function releases(rels) {
    const t = document.getElementById("releases");
    if (!t) return;
    t.tBodies[0].replaceChildren(...rels.releases.map((r) => {
      const b = r.bundle || {};
      const name = el("th", text(r.id), { scope: "row" });
      if (r.current) {
        name.appendChild(document.createTextNode(" "));
        name.appendChild(el("strong", "(current)"));
      }
      const bundle = el("td", (typeof b.size === "number" ? (b.size / 1024).toFixed(1) +
        " KiB, " : "") + "sha256 ");
      bundle.appendChild(el("span", visible((b.sha256 || "").slice(0, 16)), { class: "mono" }));
      let policy = DASH;
      const p = r.policy;
      if (p && typeof p === "object") {
        policy = visible(p.mode || "confirm");
        if (typeof p.canary_percent === "number") policy += ", canary " + p.canary_percent + " %";
        if (typeof p.max_failure_rate === "number")
          policy += ", max failure rate " + (p.max_failure_rate * 100).toFixed(1) + " %";
        if (typeof p.max_concurrent === "number") policy += ", " + p.max_concurrent + " at a time";
      }
      const images = el("td");
      (r.images || []).forEach((img, i) => {
        if (i) images.appendChild(el("br"));
        images.appendChild(document.createTextNode(visible(img.core || "?") + " core " +
          text(img.version) + (typeof img.size === "number" ? ", " +
          (img.size / 1024).toFixed(1) + " KiB" : "") + ", "));
        images.appendChild(el("span", visible((img.hash || "").slice(0, 16)), { class: "mono" }));
      });
      if (!images.firstChild) images.textContent = DASH;
      return el("tr", [name, el("td", text(r.version)),
        el("td", typeof r.sequence === "number" ? String(r.sequence) : "", { class: "num" }),
        el("td", text(r.state)), el("td", text(r.board)), bundle, el("td", policy), images,
        el("td", time(r.verified_at))]);
    }));
  }

  function events(ev) {
    const t = document.getElementById("events");
    if (!t) return;
    t.tBodies[0].replaceChildren(...ev.events.map((e) => el("tr", [
      el("td", time(e.at), { class: "mono" }),
      el("td", text(e.address), { class: "mono" }),
      el("td", text(e.kind)),
      el("td", e.from || e.to ? text(e.from) + " \u2192 " + text(e.to) : DASH),
      el("td", text(e.detail)),
    ])));
  }

  async function get(path) {
    const r = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
    // /v1/health answers 503 with its body when degraded: still worth showing.
    if (!r.ok && !(path === "/v1/health" && r.status === 503))
      throw new Error(path + ": HTTP " + r.status);
    return r.json();
  }

  async function allDevices() {
    let list = [];
    let cursor = null;
    do {
      const page = await get("/v1/devices?limit=1000" +
        (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
      list = list.concat(page.devices);
      cursor = page.next_cursor;
    } while (cursor && list.length < 5000);
    return list;
  }

  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const [health, ro, list, rels, ev] = await Promise.all([get("/v1/health"),
        get("/v1/rollout"), allDevices(), get("/v1/releases"), get("/v1/events?limit=20")]);
      summary(health, ro);
      counts(ro);
      devices(list, health);
      releases(rels);
      events(ev);
      live.textContent = "Live: updated " + time(Date.now()) + " UTC, every " +
        PERIOD_MS / 1000 + " s.";
      live.removeAttribute("data-error");
    } catch (e) {
      live.textContent = "Not updating (" + visible(e.message) + "); retrying.";
      live.setAttribute("data-error", "1");
    } finally {
      busy = false;
    }
  }

  refresh();
  setInterval(refresh, PERIOD_MS);
})();
