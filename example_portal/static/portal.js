/*
 * The example portal's own script (the widgets have theirs: thrillconnect.js).
 *
 * - Forms marked `data-async` (simulator controls) post with fetch and stay on the page, so the
 *   live widgets keep their WebSocket and show what happens; without JS they post normally.
 * - The CORS admin page (#cors-admin) lists, adds and removes rules through the blueprint's
 *   /v1/cors routes, sending the blueprint's CSRF token in X-CSRFToken.
 *
 * Runs under a strict CSP: no inline handlers, no eval, no style attributes; text is put in the
 * DOM with textContent only.
 */
(function () {
  "use strict";

  var REQUEST_TIMEOUT_MS = 10000;

  function timedFetch(url, options) {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT_MS);
    options.signal = controller.signal;
    options.credentials = "same-origin";
    return fetch(url, options).finally(function () { clearTimeout(timer); });
  }

  function readJson(response) {
    return response.json().catch(function () { return {}; }).then(function (body) {
      return { ok: response.ok, status: response.status, body: body };
    });
  }

  function say(element, text, isError) {
    if (!element) { return; }
    element.textContent = text;
    element.classList.toggle("async-status--error", Boolean(isError));
  }

  // -- async forms --------------------------------------------------------------------------
  function initAsyncForms() {
    var status = document.querySelector("[data-async-status]");
    document.querySelectorAll("form[data-async]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var button = form.querySelector("button[type=submit]");
        if (button) { button.disabled = true; }
        timedFetch(form.action, {
          method: "POST",
          body: new FormData(form),
          headers: { "Accept": "application/json" }
        })
          .then(readJson)
          .then(function (answer) {
            say(status, answer.body.message || (answer.ok ? "Done." : "That did not work."),
                !answer.ok);
          })
          .catch(function () { say(status, "The portal did not answer. Try again.", true); })
          .finally(function () { if (button) { button.disabled = false; } });
      });
    });
  }

  // -- CORS admin ---------------------------------------------------------------------------
  function initCorsAdmin() {
    var root = document.getElementById("cors-admin");
    if (!root) { return; }
    var endpoint = root.dataset.endpoint;
    var csrf = root.dataset.csrf;
    var rows = root.querySelector("[data-cors-rows]");
    var status = root.querySelector("[data-cors-status]");
    var addForm = root.querySelector("[data-cors-add]");

    function call(method, body) {
      var headers = { "Accept": "application/json" };
      if (body !== undefined) {
        headers["Content-Type"] = "application/json";
        headers["X-CSRFToken"] = csrf;
      }
      return timedFetch(endpoint, {
        method: method,
        headers: headers,
        body: body === undefined ? undefined : JSON.stringify(body)
      }).then(readJson);
    }

    function cell(text, className) {
      var td = document.createElement("td");
      td.textContent = text;
      if (className) { td.className = className; }
      return td;
    }

    function render(rules) {
      rows.replaceChildren();
      if (!rules.length) {
        var empty = cell("No rules: ThrillConnect allows no browser origin.", "hint");
        empty.colSpan = 3;
        var emptyRow = document.createElement("tr");
        emptyRow.appendChild(empty);
        rows.appendChild(emptyRow);
        return;
      }
      rules.forEach(function (rule) {
        var row = document.createElement("tr");
        row.dataset.corsPattern = rule.pattern;
        row.appendChild(cell(rule.pattern, "mono"));
        row.appendChild(cell(rule.match_mode));
        var actions = document.createElement("td");
        var remove = document.createElement("button");
        remove.type = "button";
        remove.className = "button button--small button--danger";
        remove.textContent = "Remove";
        remove.setAttribute("aria-label", "Remove " + rule.pattern);
        remove.addEventListener("click", function () { removeRule(rule.pattern); });
        actions.appendChild(remove);
        row.appendChild(actions);
        rows.appendChild(row);
      });
    }

    function handle(answer, doneText) {
      if (!answer.ok) {
        say(status, answer.body.message || "ThrillConnect refused (HTTP " + answer.status + ").",
            true);
        return;
      }
      render(answer.body.cors_origin_list || []);
      if (doneText) { say(status, doneText, false); }
    }

    function failed() { say(status, "The portal did not answer. Try again.", true); }

    function removeRule(pattern) {
      call("DELETE", { cors_origin_list: [pattern] })
        .then(function (answer) { handle(answer, "Removed " + pattern + "."); })
        .catch(failed);
    }

    addForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var pattern = addForm.elements.pattern.value.trim();
      var mode = addForm.elements.match_mode.value;
      call("PUT", { cors_origin_list: [{ pattern: pattern, match_mode: mode }] })
        .then(function (answer) {
          handle(answer, "Added " + pattern + ".");
          if (answer.ok) { addForm.reset(); }
        })
        .catch(failed);
    });

    call("GET").then(function (answer) { handle(answer, ""); }).catch(failed);
  }

  function init() {
    initAsyncForms();
    initCorsAdmin();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
}());
