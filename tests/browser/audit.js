// An accessibility sanity check of the page as rendered: the basics a screen reader or keyboard
// user needs, and WCAG AA text contrast. Returns a list of problems (empty when all is well).
// Not a full audit (no axe-core here: no network, no vendored copies); it catches regressions of
// the rules the portal's templates follow.
() => {
  const problems = [];
  const say = (rule, el, detail) => {
    const where = el ? describe(el) : "page";
    problems.push(`${rule}: ${where}${detail ? " (" + detail + ")" : ""}`);
  };
  function describe(el) {
    let text = (el.getAttribute("aria-label") || el.textContent || el.getAttribute("name") || "").trim();
    text = text.replace(/\s+/g, " ").slice(0, 50);
    return `<${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}${el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\s+/).join(".") : ""}> "${text}"`;
  }
  function visible(el) {
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || style.display === "none") return false;
    if (el.closest("[hidden], details:not([open]) > :not(summary)")) return false;
    return box.width > 1 && box.height > 1;
  }
  function byIds(list) {
    return (list || "").split(/\s+/).filter(Boolean).map((id) => document.getElementById(id));
  }
  function accessibleName(el) {
    if (el.getAttribute("aria-labelledby")) {
      return byIds(el.getAttribute("aria-labelledby")).map((n) => (n ? n.textContent : "")).join(" ").trim();
    }
    if (el.getAttribute("aria-label")) return el.getAttribute("aria-label").trim();
    if (el.labels && el.labels.length) return Array.from(el.labels).map((l) => l.textContent).join(" ").trim();
    if (/^(A|BUTTON|SUMMARY)$/.test(el.tagName)) {
      const alts = Array.from(el.querySelectorAll("img[alt]")).map((i) => i.alt).join(" ");
      return (el.textContent + " " + alts).trim();
    }
    return (el.getAttribute("title") || "").trim();
  }

  // Language, one h1, no skipped heading levels.
  if (!document.documentElement.lang) say("html has no lang", null);
  const h1s = Array.from(document.querySelectorAll("h1")).filter(visible);
  if (h1s.length !== 1) say("exactly one h1 per page", null, `found ${h1s.length}`);
  let level = 0;
  for (const h of document.querySelectorAll("h1, h2, h3, h4, h5, h6")) {
    const next = Number(h.tagName[1]);
    if (level && next > level + 1) say("heading level skipped", h, `h${level} then h${next}`);
    level = next;
  }

  // Landmarks: one main, a banner, a footer; several navs each named.
  if (document.querySelectorAll("main").length !== 1) say("exactly one <main>", null);
  if (!document.querySelector("body > header")) say("a banner (<header>) at the top", null);
  if (!document.querySelector("body > footer")) say("a contentinfo (<footer>)", null);
  const navs = document.querySelectorAll("nav");
  if (navs.length > 1) navs.forEach((nav) => { if (!accessibleName(nav)) say("nav without a name", nav); });
  document.querySelectorAll("section[aria-labelledby], section[aria-label]").forEach((s) => {
    if (!accessibleName(s)) say("region whose label is missing", s);
  });

  // Every control, link and button has a name; every image an alt.
  document.querySelectorAll("input, select, textarea").forEach((el) => {
    if (el.type === "hidden" || el.type === "submit" || el.type === "button") return;
    if (!accessibleName(el)) say("form control without a label", el);
  });
  document.querySelectorAll("a[href], button, summary").forEach((el) => {
    if (!accessibleName(el)) say("link or button without a name", el);
  });
  document.querySelectorAll("img").forEach((img) => { if (!img.hasAttribute("alt")) say("img without alt", img); });
  document.querySelectorAll("svg[role=img]").forEach((svg) => { if (!accessibleName(svg)) say("svg image without a name", svg); });

  // ARIA that points somewhere, ids that are unique, progress bars that say where they are.
  const seen = new Map();
  document.querySelectorAll("[id]").forEach((el) => {
    if (seen.has(el.id)) say("duplicate id", el); else seen.set(el.id, el);
  });
  document.querySelectorAll("[aria-labelledby], [aria-describedby], [aria-controls]").forEach((el) => {
    for (const attr of ["aria-labelledby", "aria-describedby", "aria-controls"]) {
      byIds(el.getAttribute(attr)).forEach((target, i) => {
        if (!target) say(`${attr} points at a missing id`, el, el.getAttribute(attr).split(/\s+/)[i]);
      });
    }
  });
  document.querySelectorAll("[role=progressbar]").forEach((bar) => {
    const now = Number(bar.getAttribute("aria-valuenow"));
    const min = Number(bar.getAttribute("aria-valuemin"));
    const max = Number(bar.getAttribute("aria-valuemax"));
    const stated = ["aria-valuenow", "aria-valuemin", "aria-valuemax"].every((a) => bar.getAttribute(a));
    if (!stated || ![now, min, max].every(Number.isFinite) || !(min <= now && now <= max)) {
      say("progressbar values missing or out of range", bar, `${min} ≤ ${now} ≤ ${max}`);
    }
    if (!accessibleName(bar)) say("progressbar without a name", bar);
  });
  document.querySelectorAll("table").forEach((table) => {
    if (!table.querySelector("th")) say("table without header cells", table);
  });

  // Text contrast, WCAG AA: 4.5:1, or 3:1 for large text. Backgrounds are composed from the
  // element up; text over an image or gradient is not judged.
  const rgba = (value) => {
    const m = value.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat(1);
  const luminance = (c) => {
    const [r, g, b] = c.slice(0, 3).map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  function backdrop(el) {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const style = getComputedStyle(e);
      if (style.backgroundImage && style.backgroundImage !== "none") return null;
      const bg = rgba(style.backgroundColor);
      if (bg && bg[3] > 0) layers.push(bg);
      if (bg && bg[3] === 1) break;
    }
    return layers.reverse().reduce((under, layer) => over(layer, under), [255, 255, 255, 1]);
  }
  const judged = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !el || judged.has(el)) continue;
    judged.add(el);
    if (el.closest("svg, script, style, .visually-hidden, [aria-disabled=true], [disabled], option") || !visible(el)) continue;
    const style = getComputedStyle(el);
    const bg = backdrop(el);
    const fg = rgba(style.color);
    if (!bg || !fg) continue;
    const opacity = Number(style.opacity);
    const text = over([fg[0], fg[1], fg[2], fg[3] * opacity], bg);
    const [a, b] = [luminance(text), luminance(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const needed = large ? 3 : 4.5;
    if (ratio < needed) say("text contrast below AA", el, `${ratio.toFixed(2)}:1, needs ${needed}:1`);
  }
  return problems;
}
