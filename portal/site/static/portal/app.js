// Coasty Portal: the little script the pages need. No framework; everything works without it,
// it only makes pages live and forms harder to double-submit.
(function () {
  "use strict";

  // Times are rendered in the browser's zone: tell the server which one that is.
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && document.cookie.indexOf("tz=" + zone) === -1) {
      document.cookie = "tz=" + zone + "; path=/; max-age=31536000; SameSite=Lax";
    }
  } catch (e) { /* old browser: times stay in UTC */ }

  // A form marked data-once disables its buttons on submit, so a double click sends one request.
  // (The server dedupes anyway; this keeps the page honest about what happened.)
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    if (form.hasAttribute("data-once")) {
      if (form.dataset.submitted === "1") { event.preventDefault(); return; }
      form.dataset.submitted = "1";
      form.querySelectorAll("button[type=submit], input[type=submit]").forEach(function (button) {
        button.setAttribute("aria-disabled", "true");
        if (button.dataset.busyLabel) {
          button.dataset.idleLabel = button.textContent;
          button.textContent = button.dataset.busyLabel;
        }
      });
    }
  });
  // Back to a page the browser kept whole (the back/forward cache): its forms were sent from
  // the page that followed, so they are ready to use again, not stuck on "Launching…".
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) { return; }
    document.querySelectorAll("form[data-once]").forEach(function (form) {
      delete form.dataset.submitted;
      form.querySelectorAll("[aria-disabled=true]").forEach(function (button) {
        button.removeAttribute("aria-disabled");
        if (button.dataset.idleLabel) { button.textContent = button.dataset.idleLabel; }
      });
    });
  });

  // Live regions: an element with data-live-url is replaced by a fresh fragment from that URL
  // every data-live-interval ms, until a fragment says it is final (data-live-final).
  // The swapped element is not an aria-live region itself (a screen reader would read the whole
  // fragment or nothing): when a fragment's data-live-announce differs from the last one, that
  // sentence goes to one polite status region that stays in the page.
  var OFFLINE = "Live updates paused: the portal cannot be reached. Retrying…";
  var LOGGED_OUT = "You have been logged out, so this page no longer updates. Reload it to log in again.";
  var GONE = "This page no longer updates: what it shows is no longer available to you.";
  function LiveError(message) { this.message = message; }
  var announcer = null;
  function announce(text) {
    if (!announcer) {
      announcer = document.createElement("div");
      announcer.id = "live-announcer";
      announcer.className = "visually-hidden";
      announcer.setAttribute("role", "status");
      announcer.setAttribute("aria-live", "polite");
      announcer.setAttribute("aria-atomic", "true");
      document.body.appendChild(announcer);
    }
    announcer.textContent = text;
  }
  function follow(region) {
    var said = region.getAttribute("data-live-announce") || "";
    var url = region.getAttribute("data-live-url");
    var interval = parseInt(region.getAttribute("data-live-interval") || "2000", 10);
    var failures = 0;
    function busy() {
      // Someone typing in the region (a resume note) keeps it until they are done.
      var active = document.activeElement;
      if (active && region.contains(active) && /^(TEXTAREA|INPUT|SELECT)$/.test(active.tagName)) { return true; }
      return Array.prototype.some.call(region.querySelectorAll("textarea, input[type=text]"), function (f) { return f.value; });
    }
    function tick() {
      if (document.hidden || busy()) { return schedule(); }
      fetch(url, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" })
        .then(function (response) {
          // A redirect is the login page: the session ended (logged out, or in another tab).
          if (response.redirected) { throw new LiveError(LOGGED_OUT); }
          if (!response.ok) { throw new LiveError(response.status === 404 ? GONE : OFFLINE); }
          return response.text();
        })
        .then(function (html) {
          var holder = document.createElement("div");
          holder.innerHTML = html.trim();
          var fresh = holder.firstElementChild;
          // Only the same region replaces the region: anything else would blank the page.
          if (!fresh || fresh.id !== region.id) { throw new LiveError(OFFLINE); }
          failures = 0;
          var focused = document.activeElement && region.contains(document.activeElement)
            ? document.activeElement.id : null;
          region.replaceWith(fresh);
          region = fresh;
          if (focused && document.getElementById(focused)) { document.getElementById(focused).focus(); }
          var say = region.getAttribute("data-live-announce") || "";
          if (say && say !== said) { said = say; announce(say); }
          document.dispatchEvent(new CustomEvent("live:updated", { detail: region }));
          if (!region.hasAttribute("data-live-final")) { schedule(); }
        })
        .catch(function (error) {
          failures += 1;
          // One blip goes unsaid; after that the page says the figures may be out of date.
          var message = error instanceof LiveError ? error.message : OFFLINE;
          if (failures > 1 || message !== OFFLINE) { stale(message); }
          schedule(Math.min(interval * Math.pow(2, failures), 30000));
        });
    }
    function stale(message) {
      var note = region.querySelector(".live-note");
      if (!note) {
        note = document.createElement("p");
        note.className = "live-note banner warning small";
        region.insertBefore(note, region.firstChild);
      }
      if (note.textContent !== message) { note.textContent = message; announce(message); }
    }
    function schedule(delay) { window.setTimeout(tick, delay || interval); }
    if (!region.hasAttribute("data-live-final")) { schedule(); }
  }
  var regions = document.querySelectorAll("[data-live-url]");
  // The status region exists before anything is said in it, or the first sentence is not read.
  if (regions.length) { announce(""); }
  regions.forEach(follow);

  // The team switcher goes to the team picked with the mouse. Arrow keys change a closed select
  // one option at a time, so a keyboard choice waits for Enter (or the Go button, which shows
  // itself once focused or once the keys changed the choice): moving off the page on every
  // arrow press would strand a keyboard user (WCAG 3.2.2, on input).
  document.querySelectorAll("select[data-navigate]").forEach(function (select) {
    var form = select.form;
    var button = form && form.querySelector("button");
    var byKeyboard = false;
    select.addEventListener("pointerdown", function () { byKeyboard = false; });
    select.addEventListener("keydown", function (event) {
      if (event.key === "Enter") { event.preventDefault(); form.submit(); return; }
      byKeyboard = true;
    });
    select.addEventListener("change", function () {
      if (!byKeyboard) { form.submit(); return; }
      if (button) { button.classList.remove("visually-hidden"); }
    });
    if (button) { button.classList.add("visually-hidden"); }
  });

  // Copy buttons (API tokens).
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) { return; }
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (target && navigator.clipboard) {
      navigator.clipboard.writeText(target.textContent.trim()).then(function () {
        button.textContent = "Copied";
      });
    }
  });
})();
