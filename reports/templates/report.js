// Synchronized zoom: the red box marks the same detail in every image of a comparison; moving the
// pointer over (or tapping) any image moves it in all of them, and every panel below shows it magnified.
(function () {
  "use strict";
  var figures = Array.prototype.slice.call(document.querySelectorAll("figure.cmp"));

  function place(fig, cx, cy) {
    // cx, cy: the detail's centre as fractions of the image's width and height.
    var W = +fig.dataset.w, H = +fig.dataset.h, size = +fig.dataset.size;
    var bw = Math.min(1, size / W), bh = Math.min(1, size / H);
    var bx = Math.min(Math.max(cx - bw / 2, 0), 1 - bw);
    var by = Math.min(Math.max(cy - bh / 2, 0), 1 - bh);
    fig.dataset.cx = bx + bw / 2;
    fig.dataset.cy = by + bh / 2;
    fig.querySelectorAll(".view .box").forEach(function (b) {
      b.style.left = 100 * bx + "%"; b.style.top = 100 * by + "%";
      b.style.width = 100 * bw + "%"; b.style.height = 100 * bh + "%";
    });
    fig.querySelectorAll(".zoom img").forEach(function (z) {
      z.style.width = 100 / bw + "%";
      z.style.left = -100 * bx / bw + "%";
      z.style.top = -100 * by / bh + "%";
    });
  }

  function onPointer(fig, view, ev) {
    var r = view.getBoundingClientRect();
    var p = ev.touches ? ev.touches[0] : ev;
    place(fig, (p.clientX - r.left) / r.width, (p.clientY - r.top) / r.height);
  }

  figures.forEach(function (fig) {
    // Each magnified panel shows its own image: take its source from the full view above it.
    fig.querySelectorAll(".panel").forEach(function (panel) {
      var full = panel.querySelector(".view img"), zoom = panel.querySelector(".zoom img");
      if (full && zoom) { zoom.src = full.src; }
    });
    fig.querySelectorAll(".view").forEach(function (view) {
      view.addEventListener("mousemove", function (ev) { onPointer(fig, view, ev); });
      view.addEventListener("click", function (ev) { onPointer(fig, view, ev); });
      view.addEventListener("touchmove", function (ev) { onPointer(fig, view, ev); ev.preventDefault(); },
                            { passive: false });
    });
  });

  // Printing shows what is folded away on screen (versions, hashes, raters).
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  });

  // Magnification buttons: the detail is 1/m of the image's short side.
  document.querySelectorAll("button[data-zoom]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var m = +btn.dataset.zoom;
      document.querySelectorAll("button[data-zoom]").forEach(function (b) { b.classList.toggle("on", b === btn); });
      figures.forEach(function (fig) {
        fig.dataset.size = Math.max(4, Math.round(Math.min(+fig.dataset.w, +fig.dataset.h) / m));
        place(fig, +fig.dataset.cx, +fig.dataset.cy);
      });
    });
  });
})();
