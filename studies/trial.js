// The trial page's display: draws a pair (and the LR input) at one image pixel per device pixel, shows it
// for the exposure, hides it, then enables Left/Right. It reports to the server only what it did:
// "shown" when both images are on screen (a POST to the server's route, else an event), {type: "answer"}
// for one click per display (resent until the next display arrives), and {type: "screen"}
// (window size, devicePixelRatio, whether the study fits) on the screen check before the study starts.
// On a crowd study's end page it sends the browser to the platform's completion URL (mode "redirect").
// Both images are drawn in the same animation frame from raw RGB rows of equal length: nothing in the
// order, size or timing of what happens differs between the real image and the other one.
// One image pixel per device pixel at any devicePixelRatio: each canvas is sized image_px / DPR CSS px and
// nudged (position: relative) so that its corner lies on a whole device pixel, so Chromium paints it unscaled.
// The window check asks for the study's need from the header (studies/payload.py Need: the same numbers
// `study create` prints), with the page's side padding measured and a scrollbar not counted.
// Streamlit can lose a component's event when reruns overlap (a rerun requested right after the click, on a
// busy server): an answer is sent again after each of these waits until the next display replaces this one
// (the server takes the same answer for the same display once), then the page asks for a reload.
const RESEND_MS = [2000, 3000, 5000, 8000, 8000, 8000];

function parse(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getUint32(0);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + n)));
  return [header, bytes.subarray(4 + n)];
}

// Width of the vertical scrollbar of the element that scrolls the page (0 when it shows none or overlays).
function scrollbar(root) {
  let el = root.getRootNode().host || root;
  for (; el && el !== document.body; el = el.parentElement) {
    const o = getComputedStyle(el).overflowY;
    if ((o === "auto" || o === "scroll") && el.clientWidth) {
      const cs = getComputedStyle(el);
      return Math.max(0, el.offsetWidth - el.clientWidth - parseFloat(cs.borderLeftWidth) -
        parseFloat(cs.borderRightWidth));
    }
  }
  return Math.max(0, window.innerWidth - document.documentElement.clientWidth);
}

function fit(root, need) {
  const dpr = window.devicePixelRatio || 1;
  const needW = Math.max(Math.ceil(need.w / dpr) + need.pad_w, need.min_w);
  const needH = Math.ceil(need.h / dpr) + need.pad_h;
  const avail = root.clientWidth + scrollbar(root); // the content width with no scrollbar showing
  return {
    ok: avail >= needW && window.innerHeight >= needH,
    needW, needH, avail, window: needW + (window.innerWidth - avail),
    w: window.innerWidth, h: window.innerHeight, dpr,
  };
}

function tooSmall(f) {
  return `Please make the browser window larger (or use a desktop screen): the images are shown at their ` +
    `true pixel size and need a window of about ${f.window} \u00d7 ${f.needH} pixels ` +
    `at your display scaling; it is now ${f.w} \u00d7 ${f.h}. The study continues when the window is large enough.`;
}

function canvas(w, h, label) {
  const c = document.createElement("canvas");
  c.width = w;
  c.height = h;
  c.style.position = "relative";
  c.style.visibility = "hidden";
  c.setAttribute("role", "img");
  c.setAttribute("aria-label", label);
  return c;
}

// Size each canvas to its pixels at the current DPR and move it onto whole device pixels (layout positions
// are fractional: centring, text heights). Run before the pair is shown, every frame while it is, and on resize.
function place(canvases) {
  const dpr = window.devicePixelRatio || 1;
  for (const c of canvases) {
    // 1/256 px over: the layout (in 1/64 device px) then holds exactly c.width device px, not 1/64 less, so
    // the painted box is c.width px wherever it is rounded to device pixels.
    const w = `${(c.width + 1 / 256) / dpr}px`, h = `${(c.height + 1 / 256) / dpr}px`;
    if (c.style.width !== w) c.style.width = w;
    if (c.style.height !== h) c.style.height = h;
    const dx = parseFloat(c.style.left) || 0, dy = parseFloat(c.style.top) || 0;
    const r = c.getBoundingClientRect();
    const x = (r.left - dx) * dpr, y = (r.top - dy) * dpr; // where the layout put it, in device pixels
    const left = `${(Math.round(x) - x) / dpr}px`, top = `${(Math.round(y) - y) / dpr}px`;
    if (c.style.left !== left) c.style.left = left;
    if (c.style.top !== top) c.style.top = top;
  }
}

function paint(c, rgb) {
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(c.width, c.height);
  const out = img.data;
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    out[j] = rgb[i];
    out[j + 1] = rgb[i + 1];
    out[j + 2] = rgb[i + 2];
    out[j + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function check(root, header) {
  const msg = root.querySelector(".es-msg");
  let last = null;
  const report = () => {
    const f = fit(root, header.need);
    msg.textContent = f.ok
      ? `Your window (${f.w} \u00d7 ${f.h}) is large enough.`
      : tooSmall(f);
    root.dataset.state = f.ok ? "fits" : "small";
    const key = `${f.ok}|${f.w}|${f.h}|${f.dpr}`;
    if (key !== last) {
      last = key;
      // Sent three times (the Start button waits for it, and an event can be lost: see RESEND_MS).
      const ev = { type: "screen", w: f.w, h: f.h, dpr: f.dpr, fits: f.ok };
      resends.forEach(clearTimeout);
      resends = [0, 2000, 5000].map((ms) => setTimeout(() => root.esSend("event", ev), ms));
    }
  };
  let timer = null;
  let resends = [];
  const onResize = () => { clearTimeout(timer); timer = setTimeout(report, 250); };
  window.addEventListener("resize", onResize);
  report();
  return () => {
    clearTimeout(timer);
    resends.forEach(clearTimeout);
    window.removeEventListener("resize", onResize);
  };
}

function trial(root, header, body) {
  const msg = root.querySelector(".es-msg");
  const pair = root.querySelector(".es-pair");
  const buttons = [...root.querySelectorAll("button")];
  const timers = [];
  let t0 = 0, tHide = 0, answered = false, started = false, recorded = false;
  const size = header.w * header.h * 3;
  const left = canvas(header.w, header.h, "left");
  const right = canvas(header.w, header.h, "right");
  const shown = [left, right];
  pair.append(left);
  if (header.lr[0]) {
    const lr = canvas(header.lr[0], header.lr[1], "low resolution input");
    pair.append(lr);
    shown.push(lr);
  }
  pair.append(right);
  place(shown);
  let visible = false;
  const keepPlaced = () => { if (visible) { place(shown); requestAnimationFrame(keepPlaced); } };
  const hide = () => {
    visible = false;
    tHide = performance.now();
    for (const c of [left, right]) {
      c.getContext("2d").clearRect(0, 0, c.width, c.height);
      c.style.visibility = "hidden";
    }
    root.dataset.state = "hidden";
    msg.textContent = "Which one? Choose Left or Right.";
    ready();
  };
  const start = () => {
    if (started) return;
    started = true;
    msg.textContent = header.note || ""; // practice feedback on the previous answer, else nothing
    paint(left, body.subarray(0, size));
    paint(right, body.subarray(size, 2 * size));
    if (shown.length === 3) paint(shown[2], body.subarray(2 * size));
    // Both (all) images become visible in the same frame; the exposure runs from that frame.
    requestAnimationFrame(() => {
      place(shown);
      shown.forEach((c) => { c.style.visibility = "visible"; });
      visible = true;
      requestAnimationFrame(keepPlaced);
      t0 = performance.now();
      root.dataset.state = "shown";
      timers.push(setTimeout(hide, header.exposure_ms));
      report({ type: "shown", display: header.display, w: window.innerWidth, h: window.innerHeight,
        dpr: window.devicePixelRatio || 1 });
    });
  };
  // "shown" goes to the server's route (a plain POST, no rerun of the page); where the route cannot be
  // reached (or does not answer in 10 s) it goes through the component as an event instead. The pair is
  // hidden after the exposure whatever the network does; the answer buttons wait for the hide and for the
  // server's receipt, so an answer never arrives before its "shown".
  const report = (ev) => {
    const fallback = () => { root.esSend("event", ev); recorded = true; ready(); };
    try {
      if (!header.shown_url) throw new Error("no route");
      const opts = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(ev),
        credentials: "same-origin", cache: "no-store" };
      if (typeof AbortSignal !== "undefined" && AbortSignal.timeout) opts.signal = AbortSignal.timeout(10000);
      fetch(new URL(header.shown_url, document.baseURI), opts)
        .then((r) => { if (!r.ok) throw new Error(`${r.status}`); recorded = true; ready(); })
        .catch(fallback);
    } catch (e) {
      fallback(); // an old browser without fetch or URL (one without AbortSignal.timeout just waits longer)
    }
  };
  const ready = () => {
    if (tHide && recorded && !answered) buttons.forEach((b) => { b.disabled = false; });
  };
  const tryStart = () => {
    if (started) { place(shown); return; }
    const f = fit(root, header.need);
    if (f.ok) {
      start();
    } else {
      root.dataset.state = "small";
      msg.textContent = tooSmall(f);
    }
  };
  buttons.forEach((b) => {
    b.disabled = true;
    b.onclick = () => {
      if (answered || !tHide || !recorded) return;
      answered = true;
      buttons.forEach((x) => { x.disabled = true; });
      root.dataset.state = "answered";
      const now = performance.now();
      const ev = { type: "answer", display: header.display, choice: b.dataset.side,
        exposed_ms: tHide - t0, rt_ms: now - t0 };
      const send = (k) => {
        root.esSend("event", ev);
        if (k < RESEND_MS.length) {
          timers.push(setTimeout(() => send(k + 1), RESEND_MS[k]));
        } else {
          msg.textContent = "Your answer has not reached the server. Please reload the page " +
            "(this pair is then shown again).";
        }
      };
      send(0);
    };
  });
  window.addEventListener("resize", tryStart);
  root.dataset.state = "waiting";
  tryStart();
  return () => {
    visible = false; // ends the placing loop
    timers.forEach(clearTimeout);
    window.removeEventListener("resize", tryStart);
  };
}

export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  const root = parentElement.querySelector(".es-root");
  root.esSend = setTriggerValue; // the latest run's sender, for a display that keeps running across reruns
  const [header, body] = parse(data);
  const id = header.display || "check";
  if (root.dataset.display === id) return undefined; // a rerun with the same display: keep it running
  root.dataset.display = id;
  if (header.mode === "redirect") {
    // The end page of a crowd study: go to the platform's completion URL (the page also shows a link). This
    // frame navigates (the whole tab on Prolific; inside MTurk's iframe, the frame, as a form submit would).
    root.querySelector(".es-buttons").remove();
    const timer = setTimeout(() => window.location.assign(header.url), 1500);
    return () => clearTimeout(timer);
  }
  if (header.mode === "check") {
    root.querySelector(".es-buttons").remove();
    return check(root, header);
  }
  return trial(root, header, body);
}
