// The moderation console's queue page: keyboard navigation and decisions.
// Comment text is never put into the page from here: messages use textContent only.
(function () {
  "use strict";
  var queue = document.getElementById("queue");
  if (!queue) { return; }
  var csrf = document.getElementById("csrf").value;
  var status = document.getElementById("status");
  var counter = document.getElementById("pending-count");
  var counterWord = document.getElementById("pending-word");
  var navCounter = document.getElementById("pending-nav");
  var conflict = null;  // {item, action, label} of the last 409, for "o" (override)

  function items() { return Array.prototype.slice.call(queue.querySelectorAll("li.item")); }
  function current() {
    var el = document.activeElement;
    while (el && el !== document.body) {
      if (el.classList && el.classList.contains("item")) { return el; }
      el = el.parentNode;
    }
    return null;
  }
  function select(item) {
    if (!item) { return; }
    items().forEach(function (it) { it.classList.toggle("selected", it === item); });
    item.focus();
    item.scrollIntoView({block: "nearest"});
  }
  function move(step) {
    var all = items();
    if (!all.length) { return; }
    var at = all.indexOf(current());
    var next = at < 0 ? 0 : Math.min(all.length - 1, Math.max(0, at + step));
    select(all[next]);
  }
  function say(item, text, isError) {
    var msg = item ? item.querySelector(".msg") : null;
    if (msg) { msg.textContent = text; msg.classList.toggle("error", !!isError); }
    status.textContent = text;
  }
  function setCount(n) {
    if (typeof n !== "number") { return; }
    counter.textContent = String(n);
    counterWord.textContent = n === 1 ? "comment" : "comments";
    if (navCounter) { navCounter.textContent = String(n); }
    document.title = "Queue (" + n + ") · modclf";
  }

  function decideItem(item, action, override) {
    if (!item || item.classList.contains("busy")) { return; }
    var labelSelect = item.querySelector("select.relabel");
    var label = labelSelect && labelSelect.value ? labelSelect.value : null;
    var body = {action: action};
    if (label) { body.label = label; }
    if (override) { body.override = true; }
    item.classList.add("busy");
    say(item, (action === "approve" ? "Approving" : "Rejecting") + "…", false);
    fetch("/moderate/decide/" + encodeURIComponent(item.dataset.id), {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (data) { return {status: r.status, data: data}; });
    }).then(function (res) {
      item.classList.remove("busy");
      if (res.status === 200) {
        conflict = null;
        var all = items();
        var at = all.indexOf(item);
        var next = all[at + 1] || all[at - 1] || null;
        item.remove();
        setCount(res.data.pending);
        say(null, (res.data.action === "approve" ? "Approved" : "Rejected") + " as " + res.data.label + ".", false);
        if (next) { select(next); }
        if (!items().length) {
          var empty = document.createElement("p");
          empty.className = "empty"; empty.id = "empty";
          empty.textContent = "Nothing more on this page. Reload for more.";
          queue.parentNode.insertBefore(empty, queue);
        }
        return;
      }
      var err = (res.data && res.data.error) || {code: "error", message: "failed"};
      if (err.code === "label_required") {
        say(item, err.message + " Choose a label (l), then decide again.", true);
        if (labelSelect) { labelSelect.focus(); }
      } else if (err.code === "decision_conflict") {
        conflict = {item: item, action: action};
        say(item, err.message + " Press o to override.", true);
      } else if (res.status === 401 || res.status === 403) {
        say(item, err.message, true);
      } else {
        say(item, "Not saved: " + err.message, true);
      }
    }).catch(function () {
      item.classList.remove("busy");
      say(item, "Not saved: the server did not answer. Try again.", true);
    });
  }

  queue.addEventListener("click", function (ev) {
    var button = ev.target.closest ? ev.target.closest("button[data-action]") : null;
    if (!button) { return; }
    var item = button.closest("li.item");
    select(item);
    decideItem(item, button.dataset.action, false);
  });
  queue.addEventListener("focusin", function (ev) {
    var item = ev.target.closest ? ev.target.closest("li.item") : null;
    if (item) { items().forEach(function (it) { it.classList.toggle("selected", it === item); }); }
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var tag = (ev.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea") { return; }
    if (tag === "select" && ev.key !== "Escape") {
      if (ev.key === "a" || ev.key === "r") { /* decide with the chosen label */ } else { return; }
    }
    var item = current();
    switch (ev.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "a": if (item) { decideItem(item, "approve", false); } else { move(0); } break;
      case "r": if (item) { decideItem(item, "reject", false); } else { move(0); } break;
      case "l": if (item) { item.querySelector("select.relabel").focus(); } break;
      case "o": if (conflict && conflict.item.isConnected) { decideItem(conflict.item, conflict.action, true); } break;
      case "Escape": if (item) { select(item); } break;
      default: return;
    }
    ev.preventDefault();
  });
  if (items().length) { select(items()[0]); }
})();
