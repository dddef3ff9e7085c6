// The mixer page: renders the controller's MixerState pushed over the
// WebSocket and sends actions back. The server decides what is pending; the
// page never guesses. `window.ahLog` keeps what was shown, for tests.
"use strict";
(function () {
  const token = new URLSearchParams(location.search).get("token");
  const rowsEl = document.getElementById("rows");
  const membersEl = document.querySelector("#members tbody");
  const connEl = document.getElementById("conn");
  const bannerEl = document.getElementById("banner");
  const noticeEl = document.getElementById("notice");
  const pickerEl = document.getElementById("picker");
  const loadEl = document.getElementById("load");
  const rows = new Map();
  let state = null, receivedAt = 0, seekMax = 300000, socket = null, noticeTimer = 0;
  window.ahLog = [];
  window.ahSent = [];
  window.ahFirstLive = null;

  function fmt(ms) {
    const s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
    const ss = String(s % 60).padStart(2, "0");
    return h > 0 ? h + ":" + String(m).padStart(2, "0") + ":" + ss : m + ":" + ss;
  }

  function send(action) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(action));
      window.ahSent.push({ t: performance.now(), action });
    }
  }

  function notice(text) {
    noticeEl.textContent = text;
    noticeEl.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { noticeEl.hidden = true; }, 5000);
  }

  function makeRow(key) {
    const el = document.createElement("div");
    el.className = "row" + (key === "all" ? " all" : "");
    el.dataset.channel = key;
    el.innerHTML =
      '<span class="name"></span>' +
      '<button class="run" aria-label="play or pause"></button>' +
      '<input class="seek" type="range" min="0" step="100" aria-label="position">' +
      '<span class="time"></span>' +
      '<label class="vol">vol <input class="volume" type="range" min="0" max="100" step="1" aria-label="volume"><output></output></label>' +
      '<span class="pend" title="waiting for the room to decide">⏳</span>';
    el.querySelector(".name").textContent = key === "all" ? "All" : "Channel " + key;
    el.querySelector(".name").dataset.key = key;
    const channel = key === "all" ? "all" : Number(key);
    const run = el.querySelector(".run"), seek = el.querySelector(".seek"), vol = el.querySelector(".volume");
    run.addEventListener("click", () => {
      const ch = current(key);
      send({ op: ch && ch.run === "playing" ? "pause" : "play", channel });
    });
    for (const input of [seek, vol]) {
      input.addEventListener("input", () => {
        el.dataset.dragging = "1";
        if (input === vol) el.querySelector("output").textContent = vol.value;
        else el.querySelector(".time").textContent = fmt(Number(seek.value));
      });
      input.addEventListener("change", () => {
        delete el.dataset.dragging;
        if (input === vol) send({ op: "volume", channel, gain: Number(vol.value) });
        else send({ op: "seek", channel, ms: Number(seek.value) });
      });
    }
    rowsEl.appendChild(el);
    return el;
  }

  // A row's key: "all" or the stem number as text (the state carries
  // "all" or a number).
  function keyOf(ch) { return String(ch.channel); }

  function current(key) {
    if (!state) return null;
    return key === "all" ? state.all : state.channels.find((c) => keyOf(c) === key);
  }

  function positionNow(ch) {
    // Nobody answers: what the speakers play is unknown, the position stays.
    const moving = state.advancing && ch.run === "playing" && !ch.pending;
    return moving ? ch.position_ms + (performance.now() - receivedAt) : ch.position_ms;
  }

  function paintRow(ch) {
    const key = keyOf(ch);
    let el = rows.get(key);
    if (!el) { el = makeRow(key); rows.set(key, el); }
    const frozen = ch.pending || !state.writable;
    if (key !== "all") {
      el.querySelector(".name").textContent = ch.name ? key + " " + ch.name : "Channel " + key;
    }
    el.classList.toggle("pending", ch.pending);
    el.dataset.run = ch.run;
    const run = el.querySelector(".run");
    run.textContent = ch.run === "playing" ? "❚❚" : "▶";
    run.disabled = frozen;
    const seek = el.querySelector(".seek"), vol = el.querySelector(".volume");
    seek.disabled = frozen; vol.disabled = frozen;
    if (!el.dataset.dragging) {
      const pos = positionNow(ch);
      // The track's length bounds the slider (the room refuses seeks past
      // it); without a loaded track, a minute beyond the furthest position.
      seekMax = state.track ? state.track.length_ms : Math.max(seekMax, pos + 60000);
      seek.max = String(seekMax);
      seek.value = String(pos);
      el.querySelector(".time").textContent = fmt(pos);
      vol.value = String(ch.gain);
      el.querySelector("output").textContent = String(ch.gain);
    }
  }

  function paintMembers(members) {
    membersEl.textContent = "";
    for (const m of members) {
      const tr = document.createElement("tr");
      const cells = [
        (m.name == null ? m.role + " " + m.id.slice(0, 8) + " (name not known yet)" : m.name) +
          (m.is_self ? " (this controller)" : "") + (m.is_leader ? " ★" : ""),
        m.channel == null ? "—" : String(m.channel) + (m.channel_name ? " " + m.channel_name : ""),
        null,
        m.buffer_ms == null ? "—" : m.buffer_ms + " ms",
        m.xruns == null ? "—" : String(m.xruns),
        m.last_heard_ms == null ? "—" : m.is_self ? "now" : m.last_heard_ms + " ms ago",
      ];
      for (const c of cells) {
        const td = document.createElement("td");
        if (c === null) {
          const dot = document.createElement("span");
          dot.className = "dot " + m.clock;
          td.appendChild(dot);
          td.appendChild(document.createTextNode(
            m.clock_error_us == null ? "unknown" : m.clock + " (±" + m.clock_error_us + " µs)"));
        } else td.textContent = c;
        tr.appendChild(td);
      }
      tr.dataset.id = m.id;
      membersEl.appendChild(tr);
    }
  }

  function paint() {
    if (!state) return;
    connEl.textContent = state.connection.replace("_", " ");
    connEl.className = "badge " + state.connection;
    const bad = state.connection !== "live";
    bannerEl.hidden = !bad && !state.restored;
    bannerEl.textContent = bad ? state.message
      : "Restored: the room came back as it was before it stopped, paused where it stood. Press play to go on.";
    bannerEl.classList.toggle("error", ["wrong_secret", "no_speaker", "no_answer"].includes(state.connection));
    document.getElementById("track").textContent = state.track
      ? (state.track.title == null ? state.track.short_id + " (title not known yet)" : state.track.title) + " (" + state.track.length + ", " + state.channels.length + " channel(s))"
      : state.channels.length ? state.channels.length + " channel(s)" : "none";
    paintPicker();
    const keys = new Set(["all", ...state.channels.map(keyOf)]);
    for (const [k, el] of rows) if (!keys.has(k)) { el.remove(); rows.delete(k); }
    paintRow(state.all);
    for (const ch of state.channels) paintRow(ch);
  }

  // The track picker: the room's catalogue, the loaded track selected
  // unless a person is choosing.
  function paintPicker() {
    const ids = state.tracks.map((t) => t.id).join(",");
    if (pickerEl.dataset.ids !== ids) {
      pickerEl.dataset.ids = ids;
      pickerEl.textContent = "";
      for (const t of state.tracks) {
        const o = document.createElement("option");
        o.value = t.id;
        o.textContent = t.title + " (" + t.length + ", " + t.channels.length + " ch)";
        pickerEl.appendChild(o);
      }
      delete pickerEl.dataset.touched;
    }
    const loaded = state.tracks.find((t) => t.loaded);
    if (loaded && !pickerEl.dataset.touched) pickerEl.value = loaded.id;
    const anyPending = state.all.pending;
    pickerEl.disabled = !state.writable || state.tracks.length === 0;
    loadEl.disabled = pickerEl.disabled || anyPending;
  }
  pickerEl.addEventListener("change", () => { pickerEl.dataset.touched = "1"; });
  loadEl.addEventListener("click", () => {
    if (!pickerEl.value) return;
    delete pickerEl.dataset.touched;
    send({ op: "load", track: pickerEl.value });
  });

  function onState(st) {
    state = st;
    receivedAt = performance.now();
    if (st.connection === "live" && window.ahFirstLive === null) window.ahFirstLive = receivedAt;
    window.ahLog.push({
      t: receivedAt,
      connection: st.connection,
      rows: [st.all, ...st.channels].map((c) => ({ channel: keyOf(c), run: c.run, gain: c.gain, position_ms: c.position_ms, pending: c.pending })),
      members: st.members.length,
      track: st.track ? st.track.id : null,
    });
    if (window.ahLog.length > 2000) window.ahLog.splice(0, 1000);
    paint();
    paintMembers(st.members);
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(proto + location.host + "/ws" + (token ? "?token=" + encodeURIComponent(token) : ""));
    socket.onmessage = (e) => {
      const msg = JSON.parse(e.data);
      if (msg.type === "state") onState(msg.state);
      else if (msg.type === "error") notice(msg.message);
    };
    socket.onclose = () => {
      connEl.textContent = "disconnected";
      connEl.className = "badge no_speaker";
      setTimeout(connect, 1000);
    };
  }

  setInterval(() => {
    if (!state) return;
    for (const ch of [state.all, ...state.channels]) {
      const el = rows.get(keyOf(ch));
      if (el && !el.dataset.dragging && ch.run === "playing") {
        const pos = positionNow(ch);
        el.querySelector(".seek").value = String(pos);
        el.querySelector(".time").textContent = fmt(pos);
      }
    }
  }, 250);
  connect();
})();
