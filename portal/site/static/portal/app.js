// Coasty Portal: the little script the pages need, beside htmx (which fetches the live regions).
// Everything works without either; they only make pages live and forms harder to double-submit.
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

  // Live regions: htmx swaps an element (hx-get, hx-trigger="every …", hx-swap="outerHTML") for
  // a fresh fragment from the server, until a fragment comes without a trigger (it is final).
  // The swapped element is not an aria-live region itself (a screen reader would read the whole
  // fragment or nothing): when a fragment's data-live-announce differs from the last one, that
  // sentence goes to the page's one polite status region outside it (#live-announcer).
  var OFFLINE = "Live updates paused: the portal cannot be reached. Retrying…";
  var LOGGED_OUT = "You have been logged out, so this page no longer updates. Reload it to log in again.";
  var GONE = "This page no longer updates: what it shows is no longer available to you.";
  function announce(text) {
    var announcer = document.getElementById("live-announcer");
    if (announcer) { announcer.textContent = text; }
  }
  var followed = {}; // by region id: what it said last, failures in a row, no request before when
  function follow(region) {
    if (!(region instanceof Element) || !region.hasAttribute("data-live-announce")) { return null; }
    var it = followed[region.id] || (followed[region.id] = { said: region.getAttribute("data-live-announce"), failures: 0, retryAt: 0 });
    it.region = region; // the one in the page (a swap puts a new one there)
    return it;
  }
  function busy(region) {
    // Someone typing in the region (a resume note) keeps it until they are done.
    var active = document.activeElement;
    if (active && region.contains(active) && /^(TEXTAREA|INPUT|SELECT)$/.test(active.tagName)) { return true; }
    return Array.prototype.some.call(region.querySelectorAll("textarea, input[type=text]"), function (f) { return f.value; });
  }
  function failed(it, message) {
    var note = it.region.querySelector(".live-note");
    it.failures += 1;
    // One blip goes unsaid; after that the page says the figures may be out of date.
    if (it.failures > 1 || message !== OFFLINE) {
      if (!note) {
        note = document.createElement("p");
        note.className = "live-note banner warning small";
        it.region.insertBefore(note, it.region.firstChild);
      }
      if (note.textContent !== message) { note.textContent = message; announce(message); }
    }
    // Back off while it fails: htmx still polls every `wait`; the first poll let through goes out
    // 2, 4, 8… intervals after the failed one (30 s at most).
    var every = /every\s+([\d.]+)(m?s)/.exec(it.region.getAttribute("hx-trigger"));
    var wait = every ? every[1] * (every[2] === "s" ? 1000 : 1) : 2000;
    it.retryAt = Date.now() + Math.min(wait * Math.pow(2, it.failures), 30000) - wait;
  }
  var on = {
    "htmx:beforeRequest": function (it, event) {
      if (document.hidden || busy(it.region) || Date.now() < it.retryAt) { event.preventDefault(); }
    },
    "htmx:beforeSwap": function (it, event) {
      var detail = event.detail;
      if (detail.isError) { return; } // htmx:responseError says why
      detail.shouldSwap = false;
      // A redirect is the login page: the session ended (logged out, or in another tab).
      var asked = new URL(detail.pathInfo.finalRequestPath, window.location.href);
      if (new URL(detail.xhr.responseURL || asked).pathname !== asked.pathname) { return failed(it, LOGGED_OUT); }
      // Only the same region replaces the region: anything else would blank the page.
      var holder = document.createElement("template");
      holder.innerHTML = detail.serverResponse;
      var fresh = holder.content.firstElementChild;
      if (!fresh || fresh.id !== it.region.id) { return failed(it, OFFLINE); }
      it.failures = it.retryAt = 0;
      detail.shouldSwap = !busy(it.region); // typing started while the request was out
    },
    "htmx:afterSwap": function (it) {
      var say = it.region.getAttribute("data-live-announce") || "";
      if (say && say !== it.said) { it.said = say; announce(say); }
    },
    "htmx:responseError": function (it, event) {
      var status = event.detail.xhr.status;
      failed(it, status === 401 ? LOGGED_OUT : status === 403 || status === 404 ? GONE : OFFLINE);
    },
    "htmx:sendError": function (it) { failed(it, OFFLINE); }
  };
  Object.keys(on).forEach(function (name) {
    document.addEventListener(name, function (event) {
      var it = follow(event.target);
      if (it) { on[name](it, event); }
    });
  });
  document.querySelectorAll("[data-live-announce]").forEach(follow);

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

  // "Go back" links (the 403 page): the browser's back, where there is a page to go back to.
  // A link's href is the way without script; no javascript: URL, which the CSP refuses.
  document.addEventListener("click", function (event) {
    var link = event.target.closest("[data-history-back]");
    if (!link || window.history.length < 2) { return; }
    event.preventDefault();
    window.history.back();
  });

  // On a phone, list tables become stacked cards whose cells are labelled by data-label. The
  // main lists carry their labels in the markup; any other table.data gets its column headers
  // copied here (again after htmx swaps a live region in).
  function labelCells(root) {
    root = root || document;
    var tables = root.matches && root.matches("table.data") ? [root] : root.querySelectorAll("table.data");
    Array.prototype.forEach.call(tables, function (table) {
      var heads = table.querySelectorAll(":scope > thead > tr > th");
      if (!heads.length) { return; }
      table.querySelectorAll(":scope > tbody > tr").forEach(function (row) {
        var column = 0;
        Array.prototype.forEach.call(row.children, function (cell) {
          var head = heads[column];
          column += cell.colSpan || 1;
          var hidden = head && head.querySelector(".visually-hidden");
          var text = head && head.textContent.trim();
          if (hidden && hidden.textContent.trim() === text) { text = ""; }  // "Actions": no label
          if (cell.tagName === "TD" && text && !cell.hasAttribute("data-label") && cell.colSpan < 2) {
            cell.setAttribute("data-label", text);
          }
        });
      });
    });
  }
  labelCells(document);
  document.addEventListener("htmx:afterSettle", function (event) { labelCells(event.target); });

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
