// Review page: keep, move, reclassify or delete the model's boxes, draw missed ones, send one
// verdict per view; keyboard shortcuts for all of it. Boxes are kept in view pixels (the SVG's
// viewBox), exactly what the labels table stores.
(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const views = [...document.querySelectorAll(".review-view")];
  const className = document.getElementById("class-name");
  const classes = [...document.querySelectorAll("#classes option")].map(o => o.value);
  const colours = JSON.parse(document.querySelector(".views").dataset.colours || "{}");  // storage/draw.py's
  const SVG = "http://www.w3.org/2000/svg";
  const NUDGE = 2, NUDGE_BIG = 10;  // view pixels per arrow key (with shift)
  let selected = null;

  function svgEl(name, attrs) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    return el;
  }

  function rect(box, kind, colour) {
    const r = svgEl("rect", {class: "box " + kind, x: box[0], y: box[1], width: box[2] - box[0], height: box[3] - box[1]});
    if (colour) r.style.stroke = colour;
    return r;
  }

  function redraw(fig) {
    const g = fig.querySelector("g.boxes");
    g.replaceChildren(...fig.boxes.flatMap((b, i) => {
      const colour = colours[b.class];
      const kind = (b.drawn ? "drawn" : "rejecting") + (i === fig.active ? " active" : "");
      const tag = svgEl("text", {class: "tag", x: b.box[0], y: Math.max(18, b.box[1] - 6)});
      tag.textContent = b.class;
      if (colour) tag.style.fill = colour;
      return [rect(b.box, kind, colour), tag];
    }));
  }

  function select(fig) {
    views.forEach(v => v.classList.toggle("selected", v === fig));
    selected = fig;
    if (fig) fig.focus({preventScroll: false});
  }

  function activate(fig, i) {  // select box i of the view (-1: none) and show its class
    fig.active = i;
    if (i >= 0) className.value = fig.boxes[i].class;
    redraw(fig);
  }

  function pixel(fig, event) {  // mouse position in view pixels
    const box = fig.querySelector("svg").getBoundingClientRect();
    const x = (event.clientX - box.left) * fig.dataset.width / box.width;
    const y = (event.clientY - box.top) * fig.dataset.height / box.height;
    return [Math.max(0, Math.min(+fig.dataset.width, x)), Math.max(0, Math.min(+fig.dataset.height, y))];
  }

  function hit(fig, p) {  // the box under p: the selected one first, then the topmost (drawn last)
    const inside = i => { const b = fig.boxes[i].box; return p[0] >= b[0] && p[0] <= b[2] && p[1] >= b[1] && p[1] <= b[3]; };
    if (fig.active >= 0 && inside(fig.active)) return fig.active;
    for (let i = fig.boxes.length - 1; i >= 0; i--) if (inside(i)) return i;
    return -1;
  }

  function shift(fig, i, dx, dy) {  // move box i by (dx, dy), kept inside the view
    const b = fig.boxes[i].box, w = +fig.dataset.width, h = +fig.dataset.height;
    dx = Math.max(-b[0], Math.min(w - b[2], dx));
    dy = Math.max(-b[1], Math.min(h - b[3], dy));
    fig.boxes[i].box = [b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy].map(Math.round);
  }

  function reclassify(fig, name) {
    if (fig.active >= 0 && name) { fig.boxes[fig.active].class = name; redraw(fig); }
  }

  async function send(fig, verdict) {
    const boxes = verdict === "false reject" ? [] : fig.boxes;
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
    activate(fig, -1);
    const next = views.find(v => !v.classList.contains("done"));
    if (next) select(next);
  }

  views.forEach(fig => {
    fig.boxes = JSON.parse(fig.dataset.boxes).map(b => ({class: b.class, box: b.box.map(Math.round), drawn: false}));
    fig.active = -1;
    redraw(fig);
    const svg = fig.querySelector("svg");
    let start = null, ghost = null, moving = -1;
    svg.addEventListener("mousedown", e => {
      e.preventDefault(); select(fig);
      start = pixel(fig, e);
      moving = hit(fig, start);
      if (moving >= 0) { activate(fig, moving); return; }  // drag moves this box
      activate(fig, -1);
      ghost = rect([...start, ...start], "drawn"); svg.appendChild(ghost);
    });
    svg.addEventListener("mousemove", e => {
      if (!start) return;
      const p = pixel(fig, e);
      if (moving >= 0) { shift(fig, moving, Math.round(p[0] - start[0]), Math.round(p[1] - start[1])); start = p; redraw(fig); return; }
      const b = [Math.min(start[0], p[0]), Math.min(start[1], p[1]), Math.max(start[0], p[0]), Math.max(start[1], p[1])];
      ghost.replaceWith(ghost = rect(b, "drawn"));
    });
    window.addEventListener("mouseup", e => {
      if (!start) return;
      const p = pixel(fig, e);
      if (moving < 0) {
        const b = [Math.min(start[0], p[0]), Math.min(start[1], p[1]), Math.max(start[0], p[0]), Math.max(start[1], p[1])];
        ghost.remove();
        if (b[2] - b[0] >= 3 && b[3] - b[1] >= 3) fig.boxes.push({class: className.value.trim(), box: b.map(Math.round), drawn: true});
      }
      start = null; moving = -1;
      redraw(fig);
    });
    fig.addEventListener("click", () => select(fig));
    fig.querySelectorAll("button[data-verdict]").forEach(button =>
      button.addEventListener("click", e => { e.stopPropagation(); send(fig, button.dataset.verdict); }));
  });

  className.addEventListener("keydown", e => {  // Enter: the typed name becomes the selected box's class
    if (e.key === "Enter" && selected) { e.preventDefault(); reclassify(selected, className.value.trim()); select(selected); }
  });

  document.addEventListener("keydown", e => {
    if (e.target === className) return;  // typing a new class name
    const keys = {c: "confirmed", f: "false reject", m: "missed defect"};
    const arrows = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1]};
    const i = views.indexOf(selected);
    const box = selected ? selected.active : -1;
    if (keys[e.key] && selected) send(selected, keys[e.key]);
    else if (arrows[e.key] && box >= 0) {
      const [dx, dy] = arrows[e.key].map(d => d * (e.shiftKey ? NUDGE_BIG : NUDGE));
      shift(selected, box, dx, dy); redraw(selected);
    }
    else if (e.key === "j" || e.key === "ArrowRight") select(views[Math.min(views.length - 1, i + 1)]);
    else if (e.key === "k" || e.key === "ArrowLeft") select(views[Math.max(0, i - 1)]);
    else if (e.key === "b" && selected && selected.boxes.length) activate(selected, (box + 1) % selected.boxes.length);
    else if (e.key === "Escape" && selected) activate(selected, -1);
    else if ((e.key === "x" || e.key === "Delete") && box >= 0) { selected.boxes.splice(box, 1); activate(selected, -1); }
    else if (e.key === "r" && box >= 0) { className.focus(); className.select(); }
    else if (e.key === "u" && selected) {
      const last = selected.boxes.map(b => b.drawn).lastIndexOf(true);
      if (last >= 0) { selected.boxes.splice(last, 1); activate(selected, -1); }
    }
    else if (e.key === "n") document.getElementById("next-container").click();
    else if (/^[1-9]$/.test(e.key) && classes[+e.key - 1]) {
      className.value = classes[+e.key - 1];
      if (selected) reclassify(selected, className.value);
    }
    else return;
    e.preventDefault();
  });
  select(views.find(v => !v.classList.contains("done")) || views[0] || null);
})();
