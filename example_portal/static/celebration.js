/*
 * The example portal's own win celebration, built on flask_thrillconnect's page API
 * (docs/javascript.rst): when this player wins, it cancels the built-in dialog
 * (preventDefault() on thrillconnect:win and thrillconnect:raffle-win) and shows the portal's
 * banner instead, with the amount already in the player's currency.
 *
 * Only listens on document, so it works whichever script loads first. Runs under the portal's
 * strict CSP: no inline handlers or styles, text put in the DOM with textContent only; the look
 * comes from the widgets' stylesheet (tc-celebration) plus the portal's own classes.
 */
(function () {
  "use strict";

  var banner = null;
  var returnFocus = null;

  function element(tag, className, text) {
    var node = document.createElement(tag);
    node.className = className;
    if (text) {
      node.textContent = text;
    }
    return node;
  }

  /** The banner, made once: a labelled, non-modal dialog with a Close button. */
  function makeBanner() {
    var root = element("div", "tc-widget tc-celebration portal-celebration");
    root.setAttribute("role", "dialog");
    root.setAttribute("aria-modal", "false");
    root.setAttribute("aria-labelledby", "portal-celebration-title");
    root.setAttribute("aria-describedby", "portal-celebration-text");
    root.setAttribute("tabindex", "-1");
    root.setAttribute("data-portal-celebration", "");
    root.hidden = true;
    var coins = element("p", "portal-celebration__coins", "🪙 🎉 🪙 🎉 🪙");
    coins.setAttribute("aria-hidden", "true");
    var title = element("p", "tc-celebration__title", "Jackpot!");
    title.id = "portal-celebration-title";
    var text = element("p", "tc-celebration__text");
    text.id = "portal-celebration-text";
    text.setAttribute("data-portal-celebration-text", "");
    var close = element("button", "button button--primary", "Close");
    close.type = "button";
    close.addEventListener("click", hide);
    root.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        hide();
      }
    });
    root.append(coins, title, text, close);
    document.body.appendChild(root);
    return root;
  }

  function show(message) {
    banner = banner || makeBanner();
    banner.querySelector("[data-portal-celebration-text]").textContent = message;
    if (banner.hidden) {
      returnFocus = document.activeElement;
    }
    banner.hidden = false;
    banner.classList.remove("tc-celebration--open");
    void banner.offsetWidth; // restart the entrance animation for a second win
    banner.classList.add("tc-celebration--open");
    banner.querySelector("button").focus();
  }

  function hide() {
    banner.hidden = true;
    var back = returnFocus;
    returnFocus = null;
    if (back && typeof back.focus === "function" && document.contains(back)) {
      back.focus();
    }
  }

  document.addEventListener("thrillconnect:win", function (event) {
    var win = event.detail;
    if (!win.mine) {
      return; // other players' wins: the feed shows them
    }
    event.preventDefault(); // ours instead of the built-in dialog
    var what = win.jackpotName || "a jackpot";
    show("You won " + win.formatted + " in " + what + "!");
  });

  document.addEventListener("thrillconnect:raffle-win", function (event) {
    var draw = event.detail;
    var mine = draw.winners.filter(function (winner) { return winner.mine; })[0];
    if (!mine) {
      return;
    }
    event.preventDefault();
    show("You won " + mine.formatted + " in the " + (draw.jackpotName || "raffle") + " draw!");
  });
})();
