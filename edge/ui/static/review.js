// Review page: draw boxes with the mouse, send one verdict per view, keyboard shortcuts.
// Boxes are kept in view pixels (the SVG's viewBox), exactly what the labels table stores.
(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const views = [...document.querySelectorAll(".review-view")];
  const className = document.getElementById("class-name");
  const classes = [...document.querySelectorAll("#classes option")].map(o => o.value);
  const SVG = "http://www.w3.org/2000/svg";
  let selected = null;

  function rect(box, kind) {
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("class", "box " + kind);
    r.setAttribute("x", box[0]); r.setAttribute("y", box[1]);
    r.setAttribute("width", box[2] - box[0]); r.setAttribute("height", box[3] - box[1]);
    return r;
  }

  function redraw(fig) {
    const g = fig.querySelector("g.boxes");
    g.replaceChildren(...fig.kept.map(b => rect(b.box, "rejecting")), ...fig.drawn.map(b => rect(b.box, "drawn")));
  }

  function select(fig) {
    views.forEach(v => v.classList.toggle("selected", v === fig));
    selected = fig;
    if (fig) fig.focus({preventScroll: false});
  }

  function pixel(fig, event) {  // mouse position in view pixels
    const box = fig.querySelector("svg").getBoundingClientRect();
    const x = (event.clientX - box.left) * fig.dataset.width / box.width;
    const y = (event.clientY - box.top) * fig.dataset.height / box.height;
    return [Math.max(0, Math.min(+fig.dataset.width, x)), Math.max(0, Math.min(+fig.dataset.height, y))];
  }

  async function send(fig, verdict) {
    const boxes = verdict === "false reject" ? [] : fig.kept.concat(fig.drawn);
    const response = await fetch(fig.dataset.url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: JSON.stringify({verdict, boxes: boxes.map(b => ({class: b.class, box: b.box}))}),
    });
    const state = fig.querySelector(".state");
    const answer = await response.json().catch(() => ({error: response.statusText}));
    if (!response.ok) { state.textContent = answer.error; state.classList.add("alarm"); return; }
    state.classList.remove("alarm");
    state.textContent = verdict + " · saved";
    fig.classList.add("done");
    const next = views.find(v => !v.classList.contains("done"));
    if (next) select(next);
  }

  views.forEach(fig => {
    fig.kept = JSON.parse(fig.dataset.boxes).map(b => ({class: b.class, box: b.box}));
    fig.drawn = [];
    redraw(fig);
    const svg = fig.querySelector("svg");
    let start = null, ghost = null;
    svg.addEventListener("mousedown", e => {
      e.preventDefault(); select(fig);
      start = pixel(fig, e); ghost = rect([...start, ...start], "drawn"); svg.appendChild(ghost);
    });
    svg.addEventListener("mousemove", e => {
      if (!start) return;
      const p = pixel(fig, e);
      const b = [Math.min(start[0], p[0]), Math.min(start[1], p[1]), Math.max(start[0], p[0]), Math.max(start[1], p[1])];
      ghost.replaceWith(ghost = rect(b, "drawn"));
    });
    window.addEventListener("mouseup", e => {
      if (!start) return;
      const p = pixel(fig, e);
      const b = [Math.min(start[0], p[0]), Math.min(start[1], p[1]), Math.max(start[0], p[0]), Math.max(start[1], p[1])];
      start = null; ghost.remove();
      if (b[2] - b[0] >= 3 && b[3] - b[1] >= 3) fig.drawn.push({class: className.value.trim(), box: b.map(Math.round)});
      redraw(fig);
    });
    fig.addEventListener("click", () => select(fig));
    fig.querySelectorAll("button[data-verdict]").forEach(button =>
      button.addEventListener("click", e => { e.stopPropagation(); send(fig, button.dataset.verdict); }));
  });

  document.addEventListener("keydown", e => {
    if (e.target === className) return;  // typing a new class name
    const keys = {c: "confirmed", f: "false reject", m: "missed defect"};
    const i = views.indexOf(selected);
    if (keys[e.key] && selected) send(selected, keys[e.key]);
    else if (e.key === "j" || e.key === "ArrowRight") select(views[Math.min(views.length - 1, i + 1)]);
    else if (e.key === "k" || e.key === "ArrowLeft") select(views[Math.max(0, i - 1)]);
    else if (e.key === "u" && selected) { selected.drawn.pop(); redraw(selected); }
    else if (e.key === "n") document.getElementById("next-container").click();
    else if (/^[1-9]$/.test(e.key) && classes[+e.key - 1]) className.value = classes[+e.key - 1];
    else return;
    e.preventDefault();
  });
  select(views.find(v => !v.classList.contains("done")) || views[0] || null);
})();
