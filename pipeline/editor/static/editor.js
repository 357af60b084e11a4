// csg edit: the page. Plain JS over the JSON API of pipeline/editor/server.py (docs/editor.md).
"use strict";
(() => {
  const TOKEN = new URLSearchParams(location.search).get("token") || "";
  const NK = 133, SCORE_MIN = 0.3, PICK_PX = 12;
  const $ = (id) => document.getElementById(id);
  const S = {  // editor state on the page
    info: null, kp: null, T: 0, fps: 25, W: 1, H: 1, frame: 0, locked: null, photo: null,
    peaks: [], perFrame: 4, view: { start: 0, frames: 0 }, drag: null, playing: false,
    timer: null, lastPoll: null, ready: false, busy: false,
  };

  // --- API ---------------------------------------------------------------------------------------
  async function api(path, body, method) {
    const opt = { method: method || (body === undefined ? "GET" : "POST"),
                  headers: { "X-CSG-Token": TOKEN } };
    if (body !== undefined) { opt.headers["Content-Type"] = "application/json"; opt.body = JSON.stringify(body); }
    const r = await fetch(path, opt);
    const ct = r.headers.get("Content-Type") || "";
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      if (ct.includes("json")) msg = (await r.json()).error || msg;
      throw new Error(msg);
    }
    if (ct.includes("json")) return r.json();
    return r.arrayBuffer();
  }
  const withToken = (path) => path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN);

  function status(msg, isError) {
    const el = $("status");
    el.textContent = msg || "";
    el.className = isError ? "error" : "";
  }
  async function guarded(fn) {
    try { return await fn(); } catch (e) { status(e.message, true); return null; }
  }

  async function loadFrames(start, stop) {
    const buf = await api(`/api/poses?start=${start}&stop=${stop}`);
    S.kp.set(new Float32Array(buf), start * NK * 3);
  }

  function applyStatus(st) {
    if (!st) return;
    S.locked.fill(0);
    for (const [a, b] of st.locked) S.locked.fill(1, a, b);
    $("btn-undo").disabled = !st.can_undo;
    $("btn-redo").disabled = !st.can_redo;
    $("btn-undo").title = st.undo_label ? "Undo: " + st.undo_label : "Undo";
    $("btn-redo").title = st.redo_label ? "Redo: " + st.redo_label : "Redo";
    $("dirty").textContent = st.dirty ? "\u25cf unsaved" : "";
  }

  async function afterChange(res) {
    if (res && res.changed) await loadFrames(res.changed[0], res.changed[1]);
    applyStatus(res);
    draw();
  }

  // --- geometry ----------------------------------------------------------------------------------
  const stage = $("stage"), sctx = stage.getContext("2d");
  function layoutStage() {  // called before every draw: the canvas follows its CSS box
    const r = stage.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(r.width * dpr)), h = Math.max(1, Math.round(r.height * dpr));
    if (stage.width !== w) stage.width = w;
    if (stage.height !== h) stage.height = h;
    const s = Math.min(r.width / S.W, r.height / S.H);
    S.fit = { s, ox: (r.width - S.W * s) / 2, oy: (r.height - S.H * s) / 2, dpr };
  }
  const toView = (x, y) => [S.fit.ox + x * S.fit.s, S.fit.oy + y * S.fit.s];
  const toImage = (vx, vy) => [(vx - S.fit.ox) / S.fit.s, (vy - S.fit.oy) / S.fit.s];
  const P = (t, j) => { const o = (t * NK + j) * 3; return [S.kp[o], S.kp[o + 1], S.kp[o + 2]]; };

  function visible(j) {
    const g = S.info.layout.groups.face;
    return !(j >= g[0] && j < g[1] && !$("show-face").checked);
  }

  // --- drawing -----------------------------------------------------------------------------------
  function drawStage() {
    layoutStage();
    const { s, dpr } = S.fit;
    sctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    sctx.clearRect(0, 0, stage.width, stage.height);
    if (S.photo) {
      const [x0, y0] = toView(0, 0);
      sctx.globalAlpha = 0.75;
      sctx.drawImage(S.photo, x0, y0, S.W * s, S.H * s);
      sctx.globalAlpha = 1;
    }
    const t = S.frame, lay = S.info.layout;
    const pts = S.drag && S.drag.preview ? S.drag.preview : null;
    const at = (j) => (pts && pts[j]) ? pts[j] : P(t, j);
    sctx.lineCap = "round";
    for (const [a, b, color] of lay.edges) {
      const pa = at(a), pb = at(b);
      if (pa[2] < SCORE_MIN || pb[2] < SCORE_MIN) continue;
      const hand = a >= lay.groups.left_hand[0];
      sctx.strokeStyle = color; sctx.lineWidth = hand ? 2 : 4;
      sctx.beginPath(); sctx.moveTo(...toView(pa[0], pa[1])); sctx.lineTo(...toView(pb[0], pb[1])); sctx.stroke();
    }
    const face = lay.groups.face;
    for (let j = 0; j < NK; j++) {
      const p = at(j);
      if (p[2] < SCORE_MIN || !visible(j)) continue;
      const [vx, vy] = toView(p[0], p[1]);
      const isFace = j >= face[0] && j < face[1], isHand = j >= lay.groups.left_hand[0];
      sctx.fillStyle = isFace ? "#ffffff" : isHand ? "#3b7bff" : "#ff3b3b";
      sctx.beginPath(); sctx.arc(vx, vy, isFace ? 1.8 : isHand ? 2.5 : 4, 0, 2 * Math.PI); sctx.fill();
    }
    if (S.hover !== undefined && S.hover !== null) {
      const p = at(S.hover), [vx, vy] = toView(p[0], p[1]);
      sctx.strokeStyle = "#ffff00"; sctx.lineWidth = 2;
      sctx.beginPath(); sctx.arc(vx, vy, 8, 0, 2 * Math.PI); sctx.stroke();
      sctx.fillStyle = "#ffff00"; sctx.font = "12px system-ui";
      sctx.fillText(lay.names[S.hover], vx + 10, vy - 10);
    }
    if (S.locked[t]) {
      sctx.fillStyle = "#d33"; sctx.fillRect(8, 8, 64, 20);
      sctx.fillStyle = "#fff"; sctx.font = "bold 12px system-ui"; sctx.fillText("LOCKED", 16, 22);
    }
    $("stage-caption").textContent = `frame ${t} / ${S.T - 1}` + (S.locked[t] ? " (locked)" : "");
  }

  const tl = $("timeline"), tctx = tl.getContext("2d");
  function tlX(f) { return ((f - S.view.start) / S.view.frames) * tl.clientWidth; }
  function tlFrame(x) { return Math.max(0, Math.min(S.T - 1, Math.floor(S.view.start + (x / tl.clientWidth) * S.view.frames))); }
  function drawTimeline() {
    const dpr = window.devicePixelRatio || 1, w = tl.clientWidth, h = tl.clientHeight;
    if (tl.width !== Math.round(w * dpr)) { tl.width = Math.round(w * dpr); tl.height = Math.round(h * dpr); }
    tctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    tctx.fillStyle = "#15171b"; tctx.fillRect(0, 0, w, h);
    const fw = w / S.view.frames, a0 = S.view.start, a1 = Math.min(S.T, a0 + S.view.frames);
    // locked frames: a red band on top, shaded below
    for (let f = Math.floor(a0); f < a1; f++) {
      if (!S.locked[f]) continue;
      tctx.fillStyle = "rgba(255,80,80,0.3)"; tctx.fillRect(tlX(f), 14, Math.max(1, fw), h - 14);
      tctx.fillStyle = "#ff5050"; tctx.fillRect(tlX(f), 14, Math.max(2, fw), 6);
    }
    // range
    const [r0, r1] = range();
    tctx.fillStyle = "rgba(80,150,255,0.22)";
    tctx.fillRect(tlX(r0), 14, tlX(r1 + 1) - tlX(r0), h - 14);
    // waveform
    if (S.peaks.length) {
      const mid = 14 + (h - 14) / 2, amp = (h - 20) / 2, k = S.perFrame;
      tctx.strokeStyle = "#7fd1a8"; tctx.lineWidth = 1; tctx.beginPath();
      for (let x = 0; x < w; x++) {
        const i0 = Math.floor((a0 + (x / w) * S.view.frames) * k), i1 = Math.max(i0 + 1, Math.floor((a0 + ((x + 1) / w) * S.view.frames) * k));
        let m = 0; for (let i = i0; i < i1 && i < S.peaks.length; i++) m = Math.max(m, S.peaks[i]);
        tctx.moveTo(x + 0.5, mid - m * amp); tctx.lineTo(x + 0.5, mid + m * amp);
      }
      tctx.stroke();
    }
    // ticks every second
    tctx.fillStyle = "#8a90a0"; tctx.font = "10px system-ui";
    const step = Math.max(1, Math.round(S.fps)) * Math.max(1, Math.ceil(S.view.frames / S.fps / 12));
    for (let f = Math.ceil(a0 / step) * step; f < a1; f += step) {
      tctx.fillRect(tlX(f), 0, 1, 6); tctx.fillText(`${f} (${(f / S.fps).toFixed(1)}s)`, tlX(f) + 2, 11);
    }
    // cursor: the current frame's cell outlined, a line at its start
    tctx.fillStyle = "rgba(255,221,85,0.25)"; tctx.fillRect(tlX(S.frame), 12, Math.max(2, fw), h - 12);
    tctx.fillStyle = "#ffdd55"; tctx.fillRect(tlX(S.frame), 12, 2, h - 12);
  }

  function draw() {
    if (!S.ready) return;
    drawStage(); drawTimeline();
    $("frame-input").value = S.frame;
    $("time").textContent = (S.frame / S.fps).toFixed(2) + " s";
    $("btn-lock").textContent = S.locked[S.frame] ? "Unlock frame" : "Lock frame";
  }

  // --- frame and range ---------------------------------------------------------------------------
  function setFrame(t, fromAudio) {
    S.frame = Math.max(0, Math.min(S.T - 1, t | 0));
    if (S.frame < S.view.start || S.frame >= S.view.start + S.view.frames) {
      S.view.start = Math.max(0, Math.min(S.T - S.view.frames, S.frame - Math.floor(S.view.frames / 2)));
    }
    if (!fromAudio && !S.playing && S.info.has_audio) $("audio").currentTime = S.frame / S.fps;
    draw();
  }
  function range() {
    let a = parseInt($("range-start").value, 10), b = parseInt($("range-end").value, 10);
    if (!Number.isFinite(a)) a = 0; if (!Number.isFinite(b)) b = S.T - 1;
    a = Math.max(0, Math.min(S.T - 1, a)); b = Math.max(0, Math.min(S.T - 1, b));
    return a <= b ? [a, b] : [b, a];
  }
  function setRange(a, b) { $("range-start").value = Math.min(a, b); $("range-end").value = Math.max(a, b); draw(); }

  // --- stage interaction -------------------------------------------------------------------------
  function mode() { return document.querySelector("input[name=mode]:checked").value; }
  function pick(vx, vy) {
    layoutStage();
    let best = null, bd = PICK_PX * PICK_PX;
    for (let j = 0; j < NK; j++) {
      const p = P(S.frame, j);
      if (p[2] < SCORE_MIN || !visible(j)) continue;
      const [x, y] = toView(p[0], p[1]), d = (x - vx) ** 2 + (y - vy) ** 2;
      // body joints win ties over the hand / face points drawn on top of them
      if (d < bd || (d === bd && j < best)) { bd = d; best = j; }
    }
    return best;
  }
  function localXY(ev) { const r = stage.getBoundingClientRect(); return [ev.clientX - r.left, ev.clientY - r.top]; }

  function partPreview(d) {
    const part = S.info.layout.parts[$("part").value], t = S.frame, out = {};
    const pv = part.pivot.map((j) => P(t, j)), px = pv.reduce((s, p) => s + p[0], 0) / pv.length, py = pv.reduce((s, p) => s + p[1], 0) / pv.length;
    const a = (d.angle * Math.PI) / 180, c = Math.cos(a), s = Math.sin(a);
    for (const j of part.joints) {
      const p = P(t, j), dx = p[0] - px, dy = p[1] - py;
      out[j] = [c * dx + s * dy + px + d.dx, -s * dx + c * dy + py + d.dy, p[2]];
    }
    return out;
  }

  stage.addEventListener("mousedown", (ev) => {
    if (!S.ready || ev.button !== 0) return;
    layoutStage();
    pause();
    const [vx, vy] = localXY(ev);
    if (mode() === "joint") {
      const j = pick(vx, vy);
      if (j === null) return;
      S.drag = { kind: "joint", joint: j, preview: null, down: [vx, vy] };
    } else {
      const part = S.info.layout.parts[$("part").value];
      const pv = part.pivot.map((j) => P(S.frame, j));
      const pivot = toView(pv.reduce((s, p) => s + p[0], 0) / pv.length, pv.reduce((s, p) => s + p[1], 0) / pv.length);
      S.drag = { kind: "part", start: [vx, vy], down: [vx, vy], pivot, dx: 0, dy: 0, angle: 0, rotate: ev.shiftKey, preview: null };
    }
    ev.preventDefault();
  });
  function dragTo(vx, vy) {
    const d = S.drag;
    if (d.kind === "joint") {
      const [x, y] = toImage(vx, vy), j = d.joint, p = P(S.frame, j), pre = {};
      pre[j] = [x, y, p[2]];
      const hands = { [S.info.layout.wrists.left]: "left_hand", [S.info.layout.wrists.right]: "right_hand" };
      if (hands[j]) { const g = S.info.layout.groups[hands[j]]; for (let k = g[0]; k < g[1]; k++) { const q = P(S.frame, k); pre[k] = [q[0] + x - p[0], q[1] + y - p[1], q[2]]; } }
      d.x = x; d.y = y; d.preview = pre;
    } else {
      if (d.rotate) {
        const a0 = Math.atan2(d.start[1] - d.pivot[1], d.start[0] - d.pivot[0]), a1 = Math.atan2(vy - d.pivot[1], vx - d.pivot[0]);
        d.angle = (-(a1 - a0) * 180) / Math.PI;  // y down: screen counter-clockwise is positive
      } else { d.dx = (vx - d.start[0]) / S.fit.s; d.dy = (vy - d.start[1]) / S.fit.s; }
      d.preview = partPreview(d);
    }
  }
  window.addEventListener("mousemove", (ev) => {
    if (!S.ready) return;
    const [vx, vy] = localXY(ev);
    if (!S.drag) {
      if (mode() === "joint" && ev.target === stage) { const h = pick(vx, vy); if (h !== S.hover) { S.hover = h; drawStage(); } }
      return;
    }
    dragTo(vx, vy);
    drawStage();
  });
  window.addEventListener("mouseup", async (ev) => {
    const d = S.drag;
    if (!d) return;
    const [ux, uy] = localXY(ev);
    if (ux === d.down[0] && uy === d.down[1]) { S.drag = null; draw(); return; }  // a click
    dragTo(ux, uy);  // the release point is the final one (moves may be coalesced)
    S.drag = null;
    const span = $("spread").checked ? (() => { const [a, b] = range(); return [Math.min(a, S.frame), Math.max(b, S.frame) + 1]; })() : undefined;
    const body = d.kind === "joint"
      ? { op: "move", frame: S.frame, joint: d.joint, x: d.x, y: d.y }
      : { op: "part", frame: S.frame, part: $("part").value, dx: d.dx, dy: d.dy, angle: d.angle };
    if (span) body.span = span;
    d.preview = null;
    await guarded(async () => { const res = await api("/api/edit", body); await afterChange(res); status(res.label); });
    draw();
  });

  // --- timeline interaction ----------------------------------------------------------------------
  let tlDrag = null;
  tl.addEventListener("mousedown", (ev) => {
    const x = ev.clientX - tl.getBoundingClientRect().left, f = tlFrame(x);
    if (ev.shiftKey) { tlDrag = { anchor: f }; setRange(f, f); } else { tlDrag = { scrub: true }; setFrame(f); }
  });
  tl.addEventListener("mousemove", (ev) => {
    if (!tlDrag) return;
    const f = tlFrame(ev.clientX - tl.getBoundingClientRect().left);
    if (tlDrag.scrub) setFrame(f); else setRange(tlDrag.anchor, f);
  });
  window.addEventListener("mouseup", () => { tlDrag = null; });
  tl.addEventListener("wheel", (ev) => { ev.preventDefault(); zoom(ev.deltaY < 0 ? 0.8 : 1.25, tlFrame(ev.clientX - tl.getBoundingClientRect().left)); }, { passive: false });
  function zoom(factor, around) {
    const c = around === undefined ? S.frame : around;
    const n = Math.max(10, Math.min(S.T, Math.round(S.view.frames * factor)));
    const rel = (c - S.view.start) / S.view.frames;
    S.view.frames = n;
    S.view.start = Math.max(0, Math.min(S.T - n, Math.round(c - rel * n)));
    draw();
  }

  // --- playback ----------------------------------------------------------------------------------
  function play() {
    if (S.playing) return;
    S.playing = true; $("btn-play").textContent = "Pause";
    const audio = $("audio");
    if (S.info.has_audio) {
      if (S.frame >= S.T - 1) audio.currentTime = 0;
      audio.play().catch((e) => status("audio: " + e.message, true));
    }
    const t0 = performance.now(), f0 = S.frame;
    const tick = () => {
      if (!S.playing) return;
      const f = S.info.has_audio ? Math.floor(audio.currentTime * S.fps + 1e-6)
        : f0 + Math.floor(((performance.now() - t0) / 1000) * S.fps);
      if (f >= S.T) { pause(); setFrame(S.T - 1); return; }
      if (f !== S.frame) setFrame(f, true);
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }
  function pause() {
    if (!S.playing) return;
    S.playing = false; $("btn-play").textContent = "Play";
    if (S.info.has_audio) $("audio").pause();
  }
  $("audio").addEventListener("ended", () => pause());

  // --- jobs --------------------------------------------------------------------------------------
  async function runJob(path, body, label) {
    const job = await api(path, body);
    $("job-text").textContent = label + "...";
    $("job-progress").value = 0;
    S.busy = true;
    for (;;) {
      await new Promise((r) => setTimeout(r, 150));
      const j = await api(`/api/jobs/${job.id}`);
      $("job-progress").value = j.progress;
      $("job-text").textContent = `${label}: ${j.state}` + (j.total ? ` ${j.done}/${j.total}` : "") + (j.message ? ` (${j.message})` : "");
      if (j.state !== "running") {
        S.busy = false;
        if (j.state === "error") throw new Error(`${label} failed: ${j.message}`);
        return j;
      }
    }
  }

  // --- buttons -----------------------------------------------------------------------------------
  const on = (id, fn) => $(id).addEventListener("click", () => guarded(fn));
  on("btn-undo", async () => { const r = await api("/api/undo", {}); await afterChange(r); status(r.label ? "undone: " + r.label : "nothing to undo"); });
  on("btn-redo", async () => { const r = await api("/api/redo", {}); await afterChange(r); status(r.label ? "redone: " + r.label : "nothing to redo"); });
  on("btn-save", async () => { const r = await api("/api/save", {}); applyStatus(r); status(`saved ${r.saved} (${r.frames} frames)`); });
  on("btn-export", async () => { const r = await api("/api/export", {}); status(`exported ${r.frames} OpenPose frames to ${r.exported}/`); });
  on("btn-lock", async () => { const r = await api("/api/lock", { start: S.frame, stop: S.frame + 1, locked: !S.locked[S.frame] }); await afterChange(r); status(r.label); });
  on("btn-lock-range", async () => { const [a, b] = range(); const r = await api("/api/lock", { start: a, stop: b + 1, locked: true }); await afterChange(r); status(r.label); });
  on("btn-unlock-range", async () => { const [a, b] = range(); const r = await api("/api/lock", { start: a, stop: b + 1, locked: false }); await afterChange(r); status(r.label); });
  on("btn-regenerate", async () => {
    const [a, b] = range(), body = { start: a, stop: b + 1, seed: parseInt($("seed").value, 10) || 0 };
    const steps = parseInt($("steps").value, 10), cfg = parseFloat($("cfg").value);
    if (Number.isFinite(steps)) body.steps = steps;
    if (Number.isFinite(cfg)) body.cfg = cfg;
    status(`re-generating frames ${a}-${b}...`);
    const j = await runJob("/api/regenerate", body, "re-generate");
    const st = await api("/api/session");
    await loadFrames(a, b + 1); applyStatus(st); draw();
    status(`re-generated ${j.result.frames} unlocked frames of ${a}-${b} (seed ${j.result.seed})`);
  });
  on("btn-render-frame", async () => {
    const url = withToken(`/api/render/frame/${S.frame}?renderer=${encodeURIComponent($("renderer").value)}`);
    status(`rendering frame ${S.frame}...`);
    const r = await fetch(url);
    if (!r.ok) throw new Error((await r.json()).error);
    const img = $("rendered");
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(await r.blob());
    $("rendered-view").classList.add("shown");
    $("rendered-caption").textContent = `rendered frame ${S.frame} (${$("renderer").value})`;
    status(`rendered frame ${S.frame}`);
    requestAnimationFrame(() => { layoutStage(); draw(); });
  });
  async function renderRange(body) {
    const j = await runJob("/api/render", body, "render");
    const link = $("video-link");
    link.href = withToken(`/api/files/${encodeURIComponent(j.result.file)}`);
    link.textContent = `${j.result.file} (${j.result.frames} frames)`;
    status(`rendered ${j.result.file}`);
  }
  on("btn-render-range", () => { const [a, b] = range(); return renderRange({ start: a, stop: b + 1, renderer: $("renderer").value }); });
  on("btn-render-all", () => renderRange({ renderer: $("renderer").value }));
  on("btn-play", async () => (S.playing ? pause() : play()));
  on("btn-prev", async () => setFrame(S.frame - 1));
  on("btn-next", async () => setFrame(S.frame + 1));
  on("btn-zoom-in", async () => zoom(0.5));
  on("btn-zoom-out", async () => zoom(2));
  $("frame-input").addEventListener("change", () => setFrame(parseInt($("frame-input").value, 10) || 0));
  for (const id of ["range-start", "range-end", "show-face"]) $(id).addEventListener("change", draw);
  document.querySelectorAll("input[name=mode]").forEach((el) => el.addEventListener("change", () => { S.hover = null; draw(); }));

  window.addEventListener("keydown", (ev) => {
    if (ev.target.tagName === "INPUT" && ev.target.type !== "checkbox" && ev.target.type !== "radio") return;
    const k = ev.key.toLowerCase();
    if ((ev.ctrlKey || ev.metaKey) && k === "z") { ev.preventDefault(); $(ev.shiftKey ? "btn-redo" : "btn-undo").click(); }
    else if ((ev.ctrlKey || ev.metaKey) && k === "y") { ev.preventDefault(); $("btn-redo").click(); }
    else if ((ev.ctrlKey || ev.metaKey) && k === "s") { ev.preventDefault(); $("btn-save").click(); }
    else if (k === " ") { ev.preventDefault(); S.playing ? pause() : play(); }
    else if (k === "arrowleft") setFrame(S.frame - (ev.shiftKey ? 10 : 1));
    else if (k === "arrowright") setFrame(S.frame + (ev.shiftKey ? 10 : 1));
    else if (k === "l") $("btn-lock").click();
  });
  window.addEventListener("resize", () => { layoutStage(); draw(); });
  window.addEventListener("beforeunload", (ev) => { if ($("dirty").textContent) { ev.preventDefault(); ev.returnValue = ""; } });

  // --- start -------------------------------------------------------------------------------------
  async function start() {
    const info = await api("/api/session");
    S.info = info; S.T = info.num_frames; S.fps = info.fps; S.W = info.width; S.H = info.height;
    S.kp = new Float32Array(S.T * NK * 3); S.locked = new Uint8Array(S.T);
    S.view = { start: 0, frames: Math.min(S.T, Math.max(10, Math.round(info.fps * 12))) };
    $("file-name").textContent = info.pose_file + (info.save_file !== info.pose_file ? ` \u2192 ${info.save_file}` : "");
    $("range-end").value = Math.min(S.T - 1, 50); $("range-start").max = $("range-end").max = S.T - 1;
    $("frame-input").max = S.T - 1;
    for (const n of Object.keys(info.layout.parts)) $("part").add(new Option(n.replace("_", " "), n));
    for (const n of info.renderers) $("renderer").add(new Option(n, n));
    if (info.renderers.includes(info.default_renderer)) $("renderer").value = info.default_renderer;
    if (!info.has_audio) { $("btn-regenerate").disabled = true; $("btn-regenerate").title = "start csg edit with --audio"; }
    await loadFrames(0, S.T);
    if (info.has_audio) {
      const wf = await api(`/api/waveform?per_frame=${Math.max(4, Math.min(32, Math.round(3000 / S.T)))}`);
      S.peaks = wf.peaks; S.perFrame = wf.per_frame;
      $("audio").src = withToken("/api/audio");
    }
    S.photo = await new Promise((resolve) => {
      const img = new Image(); img.onload = () => resolve(img); img.onerror = () => resolve(null);
      img.src = withToken("/api/photo");
    });
    applyStatus(info);
    S.ready = true;
    layoutStage(); draw();
    status(`${S.T} frames at ${S.fps} fps, ${S.W}x${S.H}`);
  }

  // a small handle for scripts and tests: where joint j is drawn, in client (page) pixels
  window.csgEditor = {
    get ready() { return S.ready; }, get frame() { return S.frame; }, setFrame,
    jointClientXY(j) {
      const p = P(S.frame, j), [x, y] = toView(p[0], p[1]), r = stage.getBoundingClientRect();
      return { x: r.left + x, y: r.top + y };
    },
    setRange,
  };
  guarded(start);
})();
