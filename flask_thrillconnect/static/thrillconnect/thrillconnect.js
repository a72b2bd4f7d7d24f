/*
 * flask_thrillconnect page script: keeps the server-rendered jackpot tickers, opt-in widgets and
 * win feeds of thrillconnect/widgets.html live, and gives the portal's own scripts a small API
 * over the page's one relay socket (docs/javascript.rst; types in thrillconnect.d.ts).
 *
 * Plain, dependency-free, no build step. Works under a strict CSP: no inline handlers, no eval,
 * no inline styles (state is shown by toggling classes and the `hidden` attribute). Loadable as
 * a classic script (assets()) and, through thrillconnect.mjs, as an ES module.
 *
 * Page configuration: data- attributes of this script's own tag (thrillconnect.assets()):
 *   data-tc-config          marks the tag
 *   data-tc-base            the blueprint prefix ("/thrillconnect")
 *   data-tc-events          the relay WebSocket path ("/thrillconnect/v1/events")
 *   data-tc-player          the player's id (absent for anonymous visitors)
 *   data-tc-currency        the display currency (absent for anonymous visitors)
 *   data-tc-csrf            the X-CSRFToken value for opt-ins (absent for anonymous visitors)
 *   data-tc-locale          BCP 47 locale for Intl ("en-GB")
 *   data-tc-rates           {"base_currency", "multipliers"} JSON (absent when unknown)
 *   data-tc-texts           {key: text} JSON: the texts below (TEXTS) in the page's language
 *                           (absent on an English page: the defaults are English)
 *   data-tc-live            "off" when the page gets no live updates of its own (an anonymous
 *                           visitor of a portal without a service token): tickers then say so
 *                           ([data-tc-live-off-note]) instead of "reconnecting"
 *
 * DOM hooks: see the comment at the top of templates/thrillconnect/widgets.html.
 *
 * Live data: ONE relay WebSocket per page (ws(s)://<host><events path>), subscribed to every
 * thrillpots event (plus what subscribe() adds). It opens at once on a page with a widget, and
 * on the first API method call on a page without one. Reconnects with exponential backoff and
 * jitter (capped at 30 s), resuming with ?since=<highest seq>&relay_id=<id>; refreshes tickers
 * over REST when the relay could not resume.
 *
 * window.ThrillConnect (frozen):
 *   state       "idle" (not connected yet) | "connecting" | "open" | "closed"
 *   lastSeq     highest `seq` seen (null before any)
 *   relayId     the relay's id from its first RelayStatus (null before)
 *   upstream    "connected" | "reconnecting" | null (last RelayStatus)
 *   optIn({instanceId | sourceId, optIn, contribution?}) → Promise<opt-in detail>
 *   refresh(instanceId) → Promise<update detail>
 *   subscribe(events?) → Promise<subscriptions held>
 * CustomEvents on document: thrillconnect:update, :win (cancellable), :raffle-win (cancellable),
 * :optin, :status, and :event (every relayed ThrillConnect event, for subscribe()).
 */
(function () {
  "use strict";

  if (window.ThrillConnect) {
    return; // assets() included twice: one instance is enough
  }

  var BACKOFF_BASE_MS = 1000;
  var BACKOFF_CAP_MS = 30000;
  var FELL_BEHIND_DELAY_MS = 250;
  var CLOSE_FELL_BEHIND = 1013;
  var ANIMATION_MS = 1000;
  var FETCH_TIMEOUT_MS = 10000;
  var UNAVAILABLE_RETRY_MS = 10000;
  var OPTIN_TIMEOUT_MS = 20000;
  var SUBSCRIBE_TIMEOUT_MS = 15000;
  var EVENT_PREFIX = "thrillconnect:";
  var SOURCES = ["thrillpots", "thrillgate", "thrilldrops"];
  var MAX_SUBSCRIPTIONS = 64; // what the relay keeps per connection
  var MAX_PER_REQUEST = 32; // what one SubscribeRequest may carry
  var EVENT_TYPE = /^(\*|[^\s\/\\?#%]{1,128})$/;
  var MAX_FEED_LIMIT = 100;
  var STATUS_NOTES = { Pending: "statusPending", Paused: "statusPaused", Terminated: "statusTerminated" };
  var OPTIN_ERRORS = {
    400: "optinError400",
    401: "optinError401",
    403: "optinError403",
    404: "optinError404",
    502: "optinError503",
    503: "optinError503",
    504: "optinError504"
  };
  // What the script says to players, in English; assets() renders them in the page's language
  // (data-tc-texts). The same keys and texts as JS_TEXTS in flask_thrillconnect/i18n.py, whose
  // catalogues translate them (a test keeps the two equal). %(name)s is filled in by tr().
  var TEXTS = {
    "statusPending": "Starts soon",
    "statusPaused": "Paused",
    "statusTerminated": "Ended",
    "optinError400": "That choice was not accepted. Please pick another contribution and try again.",
    "optinError401": "Your session has ended. Please log in again to join.",
    "optinError403": "You cannot join this jackpot, or this page is out of date. Reload the page and try again.",
    "optinError404": "This jackpot is no longer available. Reload the page to see the current jackpots.",
    "optinError503": "The jackpot service is unavailable right now. Please try again in a moment.",
    "optinError504": "The jackpot service took too long to answer. Please try again in a moment.",
    "optinErrorNetwork": "Could not reach the server. Check your connection and try again.",
    "optinErrorOther": "Something went wrong. Please try again.",
    "optinSaving": "Saving…",
    "optinSaved": "Your contribution is saved.",
    "optinJoined": "You joined the jackpot.",
    "optinLeft": "You left the jackpot.",
    "optinIn": "You are in this jackpot.",
    "optinOut": "You are not in this jackpot.",
    "optinJoin": "Join jackpot",
    "optinSave": "Save contribution",
    "optinLeave": "Leave jackpot",
    "jackpot": "Jackpot",
    "winnerYou": "You",
    "wonIn": "You won %(amount)s in %(jackpot)s.",
    "won": "You won %(amount)s."
  };

  // -- page configuration ------------------------------------------------------------------

  var script = document.currentScript || document.querySelector("script[data-tc-config]");
  var data = (script && script.dataset) || {};
  var config = {
    base: data.tcBase || "",
    events: data.tcEvents || (data.tcBase || "") + "/v1/events",
    player: data.tcPlayer || null,
    currency: data.tcCurrency || null,
    csrf: data.tcCsrf || null,
    locale: data.tcLocale || navigator.language || "en",
    rates: parseRates(data.tcRates),
    texts: parseTexts(data.tcTexts),
    live: data.tcLive !== "off"
  };

  /** {key: text} from data-tc-texts; only known keys with text values count. */
  function parseTexts(json) {
    var texts = {};
    var given = null;
    try {
      given = json ? JSON.parse(json) : null;
    } catch (e) {
      given = null;
    }
    Object.keys(TEXTS).forEach(function (key) {
      texts[key] = given && typeof given[key] === "string" && given[key] ? given[key] : TEXTS[key];
    });
    return texts;
  }

  /** The page's text `key`, its %(name)s placeholders filled from `values`. */
  function tr(key, values) {
    var found = config.texts[key] || TEXTS[key] || "";
    return found.replace(/%\((\w+)\)s/g, function (placeholder, name) {
      return values && values[name] !== undefined ? String(values[name]) : placeholder;
    });
  }

  function parseRates(text) {
    if (!text) {
      return null;
    }
    try {
      var rates = JSON.parse(text);
      return rates && rates.multipliers ? rates : null;
    } catch (e) {
      return null;
    }
  }

  // -- window.ThrillConnect: read-only status and the methods (defined further down) ----------

  var status = { state: "idle", lastSeq: null, relayId: null, upstream: null };
  var api = {};
  ["state", "lastSeq", "relayId", "upstream"].forEach(function (name) {
    Object.defineProperty(api, name, {
      enumerable: true,
      get: function () {
        return status[name];
      }
    });
  });
  api.optIn = function (options) { return optIn(options); };
  api.refresh = function (instanceId) { return refresh(instanceId); };
  api.subscribe = function (events) { return subscribe(events); };
  Object.defineProperty(window, "ThrillConnect", { value: Object.freeze(api) });

  // -- events on document ------------------------------------------------------------------

  /** Dispatch thrillconnect:<name>; answers false when a listener called preventDefault(). A
   *  throwing listener is reported by the browser and stops neither the others nor us. */
  function emit(name, detail, cancelable) {
    var event = new CustomEvent(EVENT_PREFIX + name, {
      detail: Object.freeze(detail),
      cancelable: Boolean(cancelable)
    });
    return document.dispatchEvent(event);
  }

  /** Errors the methods reject with: the route's {error, message} plus the HTTP status (0 when
   *  no answer came). */
  function apiError(httpStatus, code, message, body) {
    var error = new Error(message || code);
    error.name = "ThrillConnectError";
    error.status = httpStatus;
    error.error = code;
    error.body = body || null;
    return error;
  }

  // -- money: convert and format -----------------------------------------------------------

  var formatters = {};

  function formatter(currency) {
    var key = config.locale + "|" + currency;
    if (!formatters[key]) {
      try {
        formatters[key] = new Intl.NumberFormat(config.locale, { style: "currency", currency: currency });
      } catch (e) {
        formatters[key] = new Intl.NumberFormat("en", { style: "currency", currency: currency });
      }
    }
    return formatters[key];
  }

  function formatMoney(value, currency) {
    try {
      return formatter(currency).format(value);
    } catch (e) {
      return value.toFixed(2) + " " + currency;
    }
  }

  /** `amount` in `from` converted to `to` with {base_currency, multipliers}; null if unknown. */
  function convert(amount, from, to, rates) {
    if (from === to) {
      return amount;
    }
    var m = rates && rates.multipliers;
    if (!m || !(m[from] > 0) || !(m[to] > 0)) {
      return null;
    }
    return (amount / m[from]) * m[to]; // via the base currency: in_ccy = in_base × m[ccy]
  }

  /** The currency a viewer sees amounts of `currency` in: theirs when convertible. */
  function displayCurrency(currency, rates) {
    if (config.currency && convert(1, currency, config.currency, rates) !== null) {
      return config.currency;
    }
    return currency;
  }

  // -- animation ---------------------------------------------------------------------------

  var reducedMotion = window.matchMedia ? window.matchMedia("(prefers-reduced-motion: reduce)") : null;
  var shown = new WeakMap(); // amount element → {value, currency, frame}

  function showAmount(element, value, currency) {
    var previous = shown.get(element);
    if (previous && previous.frame) {
      cancelAnimationFrame(previous.frame);
    }
    var current = { value: value, currency: currency, frame: 0 };
    shown.set(element, current);
    var from = previous && previous.currency === currency ? previous.shownValue : null;
    var jump = from === null || from === undefined || from === value ||
      (reducedMotion && reducedMotion.matches) || document.hidden;
    if (jump) {
      current.shownValue = value;
      element.textContent = formatMoney(value, currency);
      return;
    }
    var started = null;
    current.shownValue = from;
    function step(now) {
      if (started === null) {
        started = now;
      }
      var t = Math.min(1, (now - started) / ANIMATION_MS);
      var eased = 1 - Math.pow(1 - t, 3);
      current.shownValue = from + (value - from) * eased;
      element.textContent = formatMoney(current.shownValue, currency);
      current.frame = t < 1 ? requestAnimationFrame(step) : 0;
    }
    current.frame = requestAnimationFrame(step);
  }

  // -- DOM helpers -------------------------------------------------------------------------

  function widgets(kind) {
    return Array.prototype.slice.call(document.querySelectorAll('[data-tc-widget="' + kind + '"]'));
  }

  function widgetsOfInstance(kind, instanceId) {
    return widgets(kind).filter(function (widget) {
      return widget.dataset.tcInstance === instanceId;
    });
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    return node;
  }

  function potLabel(potId) {
    var text = String(potId).replace(/[_-]+/g, " ").trim();
    return text ? text.charAt(0).toUpperCase() + text.slice(1) : String(potId);
  }

  // -- tickers -----------------------------------------------------------------------------

  function tickerCurrency(widget, jackpotCurrency) {
    return widget.dataset.tcDisplayCurrency || displayCurrency(jackpotCurrency, config.rates);
  }

  /** Seed the animation start of each server-rendered amount from its raw value. */
  function initTicker(widget) {
    var currency = widget.dataset.tcCurrency;
    if (!currency) {
      return;
    }
    var target = tickerCurrency(widget, currency);
    widget.querySelectorAll("[data-tc-pot]").forEach(function (pot) {
      var amount = pot.querySelector("[data-tc-amount]");
      var converted = convert(Number(pot.dataset.tcValue), currency, target, config.rates);
      if (amount && converted !== null && isFinite(converted)) {
        shown.set(amount, { value: converted, shownValue: converted, currency: target, frame: 0 });
      }
    });
  }

  /** Apply {currency, status, pots: [{id, current_value}]} to one ticker widget. */
  function updateTicker(widget, jackpot) {
    var currency = jackpot.currency || widget.dataset.tcCurrency;
    if (!currency) {
      return;
    }
    if (!widget.dataset.tcCurrency) {
      widget.dataset.tcCurrency = currency;
    }
    if (!widget.dataset.tcDisplayCurrency) {
      widget.dataset.tcDisplayCurrency = displayCurrency(currency, config.rates);
    }
    var target = widget.dataset.tcDisplayCurrency;
    if (convert(1, currency, target, config.rates) === null) {
      target = currency; // no rate for this jackpot's currency: show it as it is
    }
    if (jackpot.status) {
      setTickerStatus(widget, jackpot.status);
    }
    var list = widget.querySelector("[data-tc-pots]");
    (jackpot.pots || []).forEach(function (pot) {
      var raw = Number(pot.current_value);
      if (!list || !isFinite(raw)) {
        return;
      }
      var row = null;
      list.querySelectorAll("[data-tc-pot]").forEach(function (candidate) {
        if (candidate.dataset.tcPot === String(pot.id)) {
          row = candidate;
        }
      });
      if (!row) {
        row = element("li", "tc-ticker__pot");
        row.dataset.tcPot = String(pot.id);
        row.appendChild(element("span", "tc-ticker__pot-name", potLabel(pot.id)));
        var amountNode = element("span", "tc-ticker__amount");
        amountNode.setAttribute("data-tc-amount", "");
        row.appendChild(amountNode);
        list.appendChild(row);
      }
      row.dataset.tcValue = String(pot.current_value);
      var amount = row.querySelector("[data-tc-amount]");
      var converted = convert(raw, currency, target, config.rates);
      if (amount && converted !== null) {
        showAmount(amount, converted, target);
      }
    });
    if (widget.dataset.tcState === "unavailable") {
      widget.dataset.tcState = "stale"; // data at last; live once the relay says connected
      widget.classList.remove("tc-unavailable");
      toggle(widget, "[data-tc-unavailable-note]", false);
      setTickerState(widget, status.upstream === "connected" ? "live" : "stale");
    }
  }

  function setTickerStatus(widget, value) {
    widget.dataset.tcStatus = value;
    var note = widget.querySelector("[data-tc-status-note]");
    if (note) {
      note.textContent = STATUS_NOTES[value] ? tr(STATUS_NOTES[value]) : "";
      note.hidden = !STATUS_NOTES[value];
    }
  }

  function setTickerState(widget, state) {
    if (widget.dataset.tcState === "unavailable" && state !== "unavailable") {
      return; // only data (updateTicker) makes an unavailable ticker available
    }
    widget.dataset.tcState = state;
    widget.classList.toggle("tc-stale", state !== "live");
    // No live updates for this page: say so rather than "reconnecting" (which never ends).
    var liveOff = !config.live && widget.querySelector("[data-tc-live-off-note]") !== null;
    toggle(widget, "[data-tc-stale-note]", state === "stale" && !liveOff);
    toggle(widget, "[data-tc-live-off-note]", state === "stale" && liveOff);
  }

  function toggle(root, selector, visible) {
    root.querySelectorAll(selector).forEach(function (node) {
      node.hidden = !visible;
    });
  }

  function markTickers(state) {
    widgets("ticker").forEach(function (widget) {
      setTickerState(widget, state);
    });
  }

  // -- REST refresh (relay could not resume, or a ticker rendered unavailable) ---------------

  var refreshing = {};

  /** fetch() a route of the blueprint; resolves its JSON, rejects with apiError(). */
  function requestJson(method, path, body, headers, timeoutMs) {
    var controller = window.AbortController ? new AbortController() : null;
    var timer = controller ? setTimeout(function () { controller.abort(); }, timeoutMs) : 0;
    var allHeaders = { Accept: "application/json" };
    Object.keys(headers || {}).forEach(function (name) {
      allHeaders[name] = headers[name];
    });
    if (body !== undefined) {
      allHeaders["Content-Type"] = "application/json";
    }
    return fetch(config.base + path, {
      method: method,
      credentials: "same-origin",
      cache: "no-cache", // revalidate (ETag): a refresh must not read the browser's old copy
      headers: allHeaders,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller ? controller.signal : undefined
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (answer) {
        if (!response.ok) {
          var known = answer && typeof answer.error === "string";
          throw apiError(response.status, known ? answer.error : "http_" + response.status,
            known ? answer.message : "HTTP " + response.status, known ? answer : null);
        }
        return answer || {};
      });
    }, function (failure) {
      var timedOut = failure && failure.name === "AbortError";
      throw apiError(0, timedOut ? "timeout" : "network_error",
        timedOut ? "the portal did not answer in time" : "could not reach the portal");
    }).finally(function () {
      clearTimeout(timer);
    });
  }

  function getJson(path) {
    return requestJson("GET", path, undefined, null, FETCH_TIMEOUT_MS);
  }

  function refreshOnce(key, path, apply) {
    if (refreshing[key]) {
      return; // one request per ticker at a time
    }
    refreshing[key] = true;
    getJson(path).then(apply, function () {
      /* stays as it is; the next RelayStatus tries again */
    }).finally(function () {
      delete refreshing[key];
    });
  }

  function refreshTickers(onlyUnavailable) {
    var seen = {};
    widgets("ticker").forEach(function (widget) {
      var unavailable = widget.dataset.tcState === "unavailable";
      if (onlyUnavailable && !unavailable) {
        return;
      }
      var instanceId = widget.dataset.tcInstance;
      var sourceId = widget.dataset.tcSource;
      if (instanceId && !unavailable) {
        if (seen[instanceId]) {
          return;
        }
        seen[instanceId] = true;
        refreshOnce("i:" + instanceId,
          "/v1/thrillpots/instances/" + encodeURIComponent(instanceId) + "/ticker",
          function (ticker) { applyJackpotUpdate(ticker, "refresh"); });
      } else if (sourceId) {
        refreshOnce("s:" + sourceId,
          "/v1/thrillpots/instances/source/" + encodeURIComponent(sourceId),
          function (jackpot) {
            if (!jackpot || !jackpot.id) {
              return;
            }
            widgets("ticker").forEach(function (same) {
              if (same.dataset.tcSource === sourceId) {
                same.dataset.tcInstance = String(jackpot.id);
              }
            });
            applyJackpotUpdate(jackpot, "refresh");
          });
      } else if (instanceId) {
        refreshOnce("i:" + instanceId,
          "/v1/thrillpots/instances/" + encodeURIComponent(instanceId) + "/ticker",
          function (ticker) { applyJackpotUpdate(ticker, "refresh"); });
      }
    });
  }

  // -- events --------------------------------------------------------------------------------

  var lastRetryOfUnavailable = 0;

  /** Live events flow but some ticker rendered "unavailable": retry those, at most every 10 s. */
  function retryUnavailableTickers() {
    var now = Date.now();
    if (now - lastRetryOfUnavailable < UNAVAILABLE_RETRY_MS) {
      return;
    }
    lastRetryOfUnavailable = now;
    refreshTickers(true);
  }

  /** Apply {id, currency, status, pots} to the tickers of that instance and tell the page;
   *  answers the thrillconnect:update detail (null for a malformed update). */
  function applyJackpotUpdate(jackpot, via) {
    if (!jackpot || !jackpot.id) {
      return null;
    }
    widgetsOfInstance("ticker", String(jackpot.id)).forEach(function (widget) {
      updateTicker(widget, jackpot);
    });
    var detail = updateDetail(jackpot, via);
    emit("update", detail, false);
    return detail;
  }

  /** Values in the viewer's currency when the rates convert, else in the jackpot's. */
  function updateDetail(jackpot, via) {
    var rawCurrency = String(jackpot.currency || "");
    var currency = rawCurrency ? displayCurrency(rawCurrency, config.rates) : rawCurrency;
    return {
      instanceId: String(jackpot.id),
      status: jackpot.status ? String(jackpot.status) : null,
      currency: currency,
      rawCurrency: rawCurrency,
      pots: (Array.isArray(jackpot.pots) ? jackpot.pots : []).map(function (pot) {
        var raw = Number(pot.current_value);
        var value = convert(raw, rawCurrency, currency, config.rates);
        return Object.freeze({
          id: String(pot.id),
          value: value,
          formatted: value === null || !isFinite(value) ? "" : formatMoney(value, currency),
          rawValue: raw
        });
      }),
      via: via,
      data: jackpot
    };
  }

  function applyRelayStatus(news) {
    if (news.relay_id && news.relay_id !== status.relayId) {
      status.relayId = String(news.relay_id);
      status.lastSeq = null; // another relay counts seqs afresh
    }
    if (news.upstream === "connected" || news.upstream === "reconnecting") {
      status.upstream = news.upstream;
    }
    emitStatusIfChanged();
    markTickers(status.upstream === "connected" ? "live" : "stale");
    // Values may have been missed: the relay could not resume, or this reconnect had no `since`.
    var reconnectedAfresh = news.relay_id && news.resumed === undefined && socketsOpened > 1;
    if (news.resumed === false || reconnectedAfresh) {
      refreshTickers(false);
    } else if (status.upstream === "connected") {
      lastRetryOfUnavailable = Date.now();
      refreshTickers(true);
    }
  }

  function maskPlayerId(id) {
    var text = String(id || "");
    if (text.length <= 6) {
      return text.charAt(0) + "…";
    }
    return text.slice(0, 3) + "…" + text.slice(-3);
  }

  function formatTime(timestamp) {
    var date = new Date(Number(timestamp) || Date.now());
    var text;
    try {
      text = new Intl.DateTimeFormat(config.locale, { hour: "2-digit", minute: "2-digit" }).format(date);
    } catch (e) {
      text = date.toISOString().slice(11, 16);
    }
    var node = element("time", "tc-win__time", text);
    node.setAttribute("datetime", date.toISOString());
    return node;
  }

  function isMine(playerId) {
    return config.player !== null && playerId === config.player;
  }

  /** An amount in the viewer's currency when the rates convert, else as it is. */
  function money(amount, currency, rates) {
    var target = displayCurrency(currency, rates);
    var converted = convert(amount, currency, target, rates);
    if (converted === null) {
      target = currency;
      converted = amount;
    }
    return { amount: converted, currency: target, formatted: formatMoney(converted, target) };
  }

  /** Add one win to every feed, and celebrate the viewer's own unless `celebrateMine` is
   *  false; `win` = {player_id, instance_id, jackpot_name, pot, amount, currency, rates,
   *  timestamp}. */
  function addWin(win, celebrateMine) {
    var mine = isMine(win.player_id);
    var amountText = money(win.amount, win.currency, win.rates).formatted;
    widgets("win-feed").forEach(function (feed) {
      var list = feed.querySelector("[data-tc-feed-list]");
      if (!list) {
        return;
      }
      var empty = list.querySelector("[data-tc-feed-empty]");
      if (empty) {
        empty.remove();
      }
      var item = element("li", "tc-win" + (mine ? " tc-win--mine" : ""));
      item.setAttribute("data-tc-win", "");
      item.dataset.tcInstance = String(win.instance_id || "");
      item.appendChild(element("span", "tc-win__amount", amountText));
      var what = win.jackpot_name || tr("jackpot");
      if (win.pot) {
        what += " · " + potLabel(win.pot);
      }
      item.appendChild(element("span", "tc-win__jackpot", what));
      item.appendChild(element("span", "tc-win__player", mine ? tr("winnerYou") : maskPlayerId(win.player_id)));
      item.appendChild(formatTime(win.timestamp));
      list.insertBefore(item, list.firstChild);
      var limit = Math.min(MAX_FEED_LIMIT, Math.max(1, parseInt(feed.dataset.tcLimit, 10) || 10));
      while (list.children.length > limit) {
        list.removeChild(list.lastChild);
      }
    });
    if (mine && celebrateMine !== false) {
      celebrate(amountText, win.jackpot_name);
    }
  }

  function eventRates(event) {
    var rates = event.currency_multipliers;
    return rates && rates.multipliers ? rates : config.rates;
  }

  function applyWinEvent(event) {
    if (event.win_withheld) {
      return;
    }
    var win = {
      player_id: event.player_id,
      instance_id: event.instance_id,
      jackpot_name: event.jackpot_name,
      pot: event.win_pot_id,
      amount: Number(event.win_amount),
      currency: event.jackpot_currency,
      rates: eventRates(event),
      timestamp: event.timestamp
    };
    // Cancellable: a portal that calls preventDefault() celebrates in its own way.
    var celebrateMine = emit("win", winDetail(win, event), true);
    addWin(win, celebrateMine);
  }

  function winDetail(win, event) {
    var shown = money(win.amount, win.currency, win.rates);
    return {
      instanceId: String(win.instance_id || ""),
      jackpotName: win.jackpot_name ? String(win.jackpot_name) : null,
      potId: win.pot ? String(win.pot) : null,
      playerId: win.player_id ? String(win.player_id) : null,
      mine: isMine(win.player_id),
      amount: shown.amount,
      currency: shown.currency,
      formatted: shown.formatted,
      rawAmount: win.amount,
      rawCurrency: String(win.currency || ""),
      timestamp: Number(win.timestamp) || null,
      data: event
    };
  }

  function applyRaffleWinEvent(event) {
    if (event.win_withheld || !Array.isArray(event.winners)) {
      return;
    }
    var wins = event.winners.slice(0, MAX_FEED_LIMIT).map(function (winner) {
      return {
        player_id: winner.player_id,
        instance_id: event.instance_id,
        jackpot_name: event.jackpot_name,
        pot: null,
        amount: Number(winner.win_amount),
        currency: winner.currency || event.jackpot_currency,
        rates: eventRates(event),
        timestamp: event.timestamp
      };
    });
    var winners = wins.map(function (win) {
      var shown = money(win.amount, win.currency, win.rates);
      return Object.freeze({
        playerId: win.player_id ? String(win.player_id) : null,
        mine: isMine(win.player_id),
        amount: shown.amount,
        currency: shown.currency,
        formatted: shown.formatted,
        rawAmount: win.amount,
        rawCurrency: String(win.currency || "")
      });
    });
    var celebrateMine = emit("raffle-win", {
      instanceId: String(event.instance_id || ""),
      jackpotName: event.jackpot_name ? String(event.jackpot_name) : null,
      mine: winners.some(function (winner) { return winner.mine; }),
      winners: Object.freeze(winners),
      timestamp: Number(event.timestamp) || null,
      data: event
    }, true);
    wins.forEach(function (win) {
      addWin(win, celebrateMine);
    });
  }

  // -- celebration -------------------------------------------------------------------------

  var returnFocus = null;

  function celebrate(amountText, jackpotName) {
    var dialog = document.querySelector("[data-tc-celebration]");
    if (!dialog) {
      return;
    }
    var text = dialog.querySelector("[data-tc-celebration-text]");
    if (text) {
      text.textContent = jackpotName ? tr("wonIn", { amount: amountText, jackpot: jackpotName })
        : tr("won", { amount: amountText });
    }
    if (dialog.hidden) {
      returnFocus = document.activeElement;
    }
    dialog.hidden = false;
    dialog.classList.remove("tc-celebration--open");
    void dialog.offsetWidth; // restart the entrance animation for a second win
    dialog.classList.add("tc-celebration--open");
    var close = dialog.querySelector("[data-tc-celebration-close]");
    (close || dialog).focus();
  }

  function dismissCelebration(dialog) {
    dialog.hidden = true;
    dialog.classList.remove("tc-celebration--open");
    var back = returnFocus;
    returnFocus = null;
    if (back && typeof back.focus === "function" && document.contains(back)) {
      back.focus();
    }
  }

  document.addEventListener("click", function (event) {
    var close = event.target.closest && event.target.closest("[data-tc-celebration-close]");
    if (close) {
      dismissCelebration(close.closest("[data-tc-celebration]"));
    }
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") {
      return;
    }
    var dialog = event.target.closest && event.target.closest("[data-tc-celebration]");
    if (dialog && !dialog.hidden) {
      dismissCelebration(dialog);
    }
  });

  // -- opt-in ------------------------------------------------------------------------------

  /** The opt-in widget's own text (data-tc-text-<name>), else the page's. */
  function text(widget, name) {
    return widget.dataset["tcText" + name] || tr("optin" + name);
  }

  function setOptedIn(widget, optedIn, preferred) {
    widget.dataset.tcOptedIn = optedIn ? "true" : "false";
    var state = widget.querySelector("[data-tc-optin-state]");
    if (state) {
      state.textContent = optedIn ? text(widget, "In") : text(widget, "Out");
    }
    var join = widget.querySelector("[data-tc-optin-join]");
    if (join) {
      join.textContent = optedIn ? text(widget, "Save") : text(widget, "Join");
    }
    var leave = widget.querySelector("[data-tc-optin-leave]");
    if (leave) {
      leave.hidden = !optedIn;
    }
    var select = widget.querySelector("[data-tc-contribution]");
    if (select && preferred !== null && preferred !== undefined) {
      Array.prototype.forEach.call(select.options, function (option) {
        if (Number(option.value) === Number(preferred)) {
          select.value = option.value;
        }
      });
    }
  }

  function applyOptInEvent(event) {
    if (!config.player || event.player_id !== config.player || !event.instance_id) {
      return;
    }
    showOptIn(event);
    emit("optin", optInDetail(event), false);
  }

  function showOptIn(status) {
    widgetsOfInstance("optin", String(status.instance_id)).forEach(function (widget) {
      setOptedIn(widget, status.opted_in === true, status.preferred_contribution_value);
    });
  }

  /** The player's opt-in status (an OptInEvent, or the route's answer) for the page. */
  function optInDetail(status) {
    var contribution = status.preferred_contribution_value;
    return {
      instanceId: String(status.instance_id || ""),
      playerId: status.player_id ? String(status.player_id) : null,
      optedIn: status.opted_in === true,
      contribution: contribution === null || contribution === undefined ? null : Number(contribution),
      data: status
    };
  }

  /** POST <prefix>/v1/thrillpots/optin: resolves the route's answer, rejects with apiError(). */
  function postOptIn(body, csrfToken) {
    return requestJson("POST", "/v1/thrillpots/optin", body, { "X-CSRFToken": csrfToken || "" },
      OPTIN_TIMEOUT_MS);
  }

  function setControlsEnabled(form, enabled) {
    form.querySelectorAll("button, select").forEach(function (control) {
      control.disabled = !enabled;
    });
    form.setAttribute("aria-busy", enabled ? "false" : "true");
  }

  function say(widget, message, error) {
    var messageNode = widget.querySelector("[data-tc-optin-message]");
    var errorNode = widget.querySelector("[data-tc-optin-error]");
    if (messageNode) {
      messageNode.textContent = error ? "" : message;
      messageNode.hidden = error || !message;
    }
    if (errorNode) {
      errorNode.textContent = error ? message : "";
      errorNode.hidden = !error;
    }
  }

  function submitOptIn(form, submitter) {
    var widget = form.closest('[data-tc-widget="optin"]');
    if (!widget || form.getAttribute("aria-busy") === "true") {
      return;
    }
    var optIn = !(submitter && submitter.hasAttribute("data-tc-optin-leave"));
    var wasIn = widget.dataset.tcOptedIn === "true";
    var body = { opt_in: optIn };
    if (widget.dataset.tcInstance) {
      body.instance_id = widget.dataset.tcInstance;
    } else {
      body.source_id = widget.dataset.tcSource;
    }
    var select = form.querySelector("[data-tc-contribution]");
    if (optIn && select && select.value) {
      body.contribution_value = Number(select.value);
    }
    setControlsEnabled(form, false);
    say(widget, tr("optinSaving"), false);
    postOptIn(body, widget.dataset.tcCsrf).then(function (answer) {
      if (answer.instance_id) {
        widget.dataset.tcInstance = String(answer.instance_id);
      }
      var nowIn = answer.opted_in === true;
      setOptedIn(widget, nowIn, answer.preferred_contribution_value);
      say(widget, tr(nowIn ? (wasIn ? "optinSaved" : "optinJoined") : "optinLeft"), false);
    }, function (error) {
      var key = error.status === 0 ? "optinErrorNetwork" : OPTIN_ERRORS[error.status];
      say(widget, tr(key || "optinErrorOther"), true);
    }).finally(function () {
      setControlsEnabled(form, true);
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("[data-tc-optin-form]")) {
      return;
    }
    event.preventDefault();
    submitOptIn(form, event.submitter || null);
  });

  function enableOptInForms() {
    document.querySelectorAll("form[data-tc-optin-form]").forEach(function (form) {
      setControlsEnabled(form, true);
    });
  }

  // -- the relay WebSocket -----------------------------------------------------------------

  var socket = null;
  var reconnectTimer = 0;
  var attempts = 0;
  var stopped = false;
  var socketsOpened = 0;
  var started = false;
  var openWaiters = []; // resolve functions of subscribe() calls waiting for the socket
  var lastStatus = "";

  function relayUrl() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + location.host + config.events;
    if (status.lastSeq !== null && status.relayId) {
      url += "?since=" + encodeURIComponent(status.lastSeq) + "&relay_id=" + encodeURIComponent(status.relayId);
    }
    return url;
  }

  function setState(state) {
    status.state = state;
    emitStatusIfChanged();
  }

  /** thrillconnect:status whenever the socket's state or the upstream status changes. */
  function emitStatusIfChanged() {
    var key = status.state + "|" + status.upstream;
    if (key === lastStatus) {
      return;
    }
    lastStatus = key;
    emit("status", {
      state: status.state,
      upstream: status.upstream,
      relayId: status.relayId,
      lastSeq: status.lastSeq
    }, false);
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    if (socket || stopped) {
      return; // never more than one socket
    }
    var ws;
    try {
      ws = new WebSocket(relayUrl());
    } catch (e) {
      setState("closed");
      scheduleReconnect(0);
      return;
    }
    socket = ws;
    setState("connecting");
    ws.onopen = function () {
      socketsOpened += 1;
      sendSubscriptions(ws, subscriptions); // a new connection starts with none
      setState("open");
      openWaiters.splice(0).forEach(function (resolve) { resolve(); });
    };
    ws.onmessage = function (message) {
      attempts = 0; // the relay talks to us: the next drop starts the backoff afresh
      var envelope;
      try {
        envelope = JSON.parse(message.data);
      } catch (e) {
        return;
      }
      if (envelope && typeof envelope === "object") {
        handle(envelope);
      }
    };
    ws.onerror = function () {
      /* a close event follows; nothing to report */
    };
    ws.onclose = function (event) {
      if (socket !== ws) {
        return;
      }
      socket = null;
      markTickers("stale");
      setState("closed");
      scheduleReconnect(event.code);
    };
  }

  function scheduleReconnect(code) {
    if (stopped || reconnectTimer) {
      return;
    }
    var delay;
    if (code === CLOSE_FELL_BEHIND && attempts === 0) {
      delay = FELL_BEHIND_DELAY_MS * (1 + Math.random()); // fell behind: catch up promptly
    } else {
      var ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * Math.pow(2, attempts));
      delay = ceiling / 2 + Math.random() * (ceiling / 2);
    }
    attempts = Math.min(attempts + 1, 16);
    reconnectTimer = setTimeout(connect, delay);
  }

  function handle(envelope) {
    var seq = envelope.seq;
    var body = envelope.data && typeof envelope.data === "object" ? envelope.data : {};
    if (envelope.source === "relay" && envelope.msg_name === "RelayStatus") {
      applyRelayStatus(body); // first: a new relay_id resets the seq we resume from
    }
    if (typeof seq === "number" && (status.lastSeq === null || seq > status.lastSeq)) {
      status.lastSeq = seq;
    }
    if (envelope.msg_type !== "Event" || SOURCES.indexOf(envelope.source) < 0) {
      return;
    }
    if (envelope.source === "thrillpots") {
      applyThrillpotsEvent(envelope.msg_name, body);
    }
    emit("event", {
      source: envelope.source,
      name: String(envelope.msg_name || ""),
      playerId: envelope.player_id ? String(envelope.player_id) : null,
      seq: typeof seq === "number" ? seq : null,
      timestamp: typeof envelope.timestamp === "number" ? envelope.timestamp : null,
      data: body
    }, false);
  }

  function applyThrillpotsEvent(name, body) {
    switch (name) {
      case "JackpotUpdate":
        applyJackpotUpdate(body, "relay");
        if (document.querySelector('[data-tc-widget="ticker"][data-tc-state="unavailable"]')) {
          retryUnavailableTickers();
        }
        break;
      case "WinEvent":
        applyWinEvent(body);
        break;
      case "RaffleWinEvent":
        applyRaffleWinEvent(body);
        break;
      case "OptInEvent":
        applyOptInEvent(body);
        break;
      default:
        break;
    }
  }

  function stop() {
    stopped = true;
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    if (socket) {
      var ws = socket;
      socket = null;
      ws.onclose = null;
      ws.close(1000);
      setState("closed");
    }
  }

  /** Open the page's one socket, once: at start on a page with a widget, else on the first
   *  method call. */
  function ensureStarted() {
    if (started) {
      return;
    }
    started = true;
    window.addEventListener("pagehide", stop);
    window.addEventListener("pageshow", function (event) {
      if (event.persisted) {
        stopped = false;
        attempts = 0;
        connect();
      }
    });
    window.addEventListener("online", function () {
      if (!socket && !stopped) {
        attempts = 0;
        connect();
      }
    });
    connect();
  }

  // -- subscriptions -----------------------------------------------------------------------

  // "source:event_type" pairs this page wants; sent again on every new connection.
  var subscriptions = ["thrillpots:*"];

  function sendSubscriptions(ws, keys) {
    for (var i = 0; i < keys.length; i += MAX_PER_REQUEST) {
      var events = keys.slice(i, i + MAX_PER_REQUEST).map(function (key) {
        var colon = key.indexOf(":");
        return { source: key.slice(0, colon), event_type: key.slice(colon + 1) };
      });
      ws.send(JSON.stringify({ SubscribeRequest: { events: events } }));
    }
  }

  /** "thrillgate", "thrillgate:PlayerBonusAdded" or {source, eventType} → "source:type". */
  function subscriptionKey(item) {
    var source;
    var type;
    if (typeof item === "string") {
      var colon = item.indexOf(":");
      source = colon < 0 ? item : item.slice(0, colon);
      type = colon < 0 ? "*" : item.slice(colon + 1);
    } else if (item && typeof item === "object") {
      source = item.source;
      type = item.eventType === undefined ? "*" : item.eventType;
    }
    if (SOURCES.indexOf(source) < 0 || typeof type !== "string" || !EVENT_TYPE.test(type) ||
        type === "." || type.indexOf("..") >= 0) {
      throw new TypeError("subscribe: not a subscription: " + JSON.stringify(item));
    }
    return source + ":" + type;
  }

  function isCovered(key, held) {
    return held.indexOf(key) >= 0 || held.indexOf(key.split(":")[0] + ":*") >= 0;
  }

  function whenOpen() {
    if (socket && socket.readyState === WebSocket.OPEN) {
      return Promise.resolve();
    }
    return new Promise(function (resolve, reject) {
      var timer = setTimeout(function () {
        var index = openWaiters.indexOf(done);
        if (index >= 0) {
          openWaiters.splice(index, 1);
        }
        reject(apiError(0, "relay_unavailable",
          "the relay is not reachable now; the subscription is sent when it is"));
      }, SUBSCRIBE_TIMEOUT_MS);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      openWaiters.push(done);
    });
  }

  // -- the methods of window.ThrillConnect ---------------------------------------------------

  /** Subscribe to more events; resolves with every subscription held once they are sent (the
   *  relay does not acknowledge them). */
  function subscribe(events) {
    var list = events === undefined || events === null ? [] : [].concat(events);
    var keys;
    try {
      keys = list.map(subscriptionKey);
    } catch (error) {
      return Promise.reject(error);
    }
    // Most general first, so that "thrillgate" makes "thrillgate:PlayerBonusAdded" redundant.
    keys.sort(function (a, b) { return Number(b.slice(-2) === ":*") - Number(a.slice(-2) === ":*"); });
    var fresh = [];
    keys.forEach(function (key) {
      if (!isCovered(key, subscriptions.concat(fresh))) {
        fresh.push(key);
      }
    });
    if (subscriptions.length + fresh.length > MAX_SUBSCRIPTIONS) {
      return Promise.reject(new RangeError("subscribe: at most " + MAX_SUBSCRIPTIONS + " subscriptions"));
    }
    subscriptions = subscriptions.concat(fresh);
    ensureStarted();
    if (socket && socket.readyState === WebSocket.OPEN) {
      if (fresh.length) {
        sendSubscriptions(socket, fresh); // a socket still opening sends them all in onopen
      }
      return Promise.resolve(subscriptions.slice());
    }
    return whenOpen().then(function () {
      return subscriptions.slice();
    });
  }

  /** Re-read an instance's ticker through the proxy; updates its tickers on the page and
   *  dispatches thrillconnect:update ("refresh"), then resolves with that detail. */
  function refresh(instanceId) {
    if (typeof instanceId !== "string" || !instanceId) {
      return Promise.reject(new TypeError("refresh: instanceId must be a non-empty string"));
    }
    ensureStarted();
    return getJson("/v1/thrillpots/instances/" + encodeURIComponent(instanceId) + "/ticker")
      .then(function (ticker) {
        var detail = applyJackpotUpdate(ticker, "refresh");
        if (!detail) {
          throw apiError(502, "bad_gateway", "the ticker answer has no instance id", null);
        }
        return detail;
      });
  }

  /** Opt the player in or out through POST <prefix>/v1/thrillpots/optin: the route checks
   *  everything (its 4xx answers reject the promise as they are). */
  function optIn(options) {
    if (!options || typeof options !== "object") {
      return Promise.reject(new TypeError("optIn: pass {instanceId | sourceId, optIn, contribution?}"));
    }
    ensureStarted();
    var body = {};
    copyDefined(body, "instance_id", options.instanceId);
    copyDefined(body, "source_id", options.sourceId);
    copyDefined(body, "opt_in", options.optIn);
    copyDefined(body, "contribution_value", options.contribution);
    return postOptIn(body, csrfToken()).then(function (answer) {
      if (answer.instance_id) {
        showOptIn(answer); // the widgets of that instance agree at once
      }
      return optInDetail(answer);
    });
  }

  function copyDefined(target, name, value) {
    if (value !== undefined && value !== null) {
      target[name] = value;
    }
  }

  /** The CSRF token assets() put on the script tag, else an opt-in widget's. */
  function csrfToken() {
    if (config.csrf) {
      return config.csrf;
    }
    var widget = document.querySelector("[data-tc-csrf]:not(script)");
    return widget ? widget.dataset.tcCsrf : "";
  }

  // -- start ---------------------------------------------------------------------------------

  function start() {
    widgets("ticker").forEach(initTicker);
    enableOptInForms();
    if (document.querySelector("[data-tc-widget]")) {
      ensureStarted(); // widgets to keep live; else the first method call connects
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
