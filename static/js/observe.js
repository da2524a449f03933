/* /observe/: the live feed. Calls appear as the audit writer stores them, over the console's
 * websocket (/ws/events, authenticated by the session cookie on this same origin; see
 * compliance/live/request.py). The page works without it: the table then shows the last calls
 * as they were when it loaded. */
(function () {
  "use strict";

  var body = document.getElementById("feed-rows");
  var status = document.getElementById("feed-status");
  if (!body || !("WebSocket" in window)) return;
  var maxRows = parseInt(body.getAttribute("data-max-rows"), 10) || 50;
  var lastSeq = 0;
  var first = body.querySelector("tr[data-seq]");
  if (first) lastSeq = parseInt(first.getAttribute("data-seq"), 10) || 0;
  var delay = 1000;

  function cell(row, text, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    if (text !== null) td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function code(td, text) {
    var el = document.createElement("code");
    el.textContent = text || "—";
    td.appendChild(el);
  }

  function two(n) { return (n < 10 ? "0" : "") + n; }

  function render(event) {
    var data = event.data || {};
    var actor = event.actor || {};
    var client = (data.client_info && data.client_info.name) || "";
    var row = document.createElement("tr");
    row.setAttribute("data-seq", event.seq);
    row.className = "is-new";
    var when = new Date(event.ts);
    var time = document.createElement("time");
    time.setAttribute("datetime", event.ts);
    time.textContent = two(when.getUTCHours()) + ":" + two(when.getUTCMinutes()) + ":" + two(when.getUTCSeconds());
    cell(row, null, "nowrap").appendChild(time);
    code(cell(row, null), data.server_slug);
    code(cell(row, null), data.tool);
    var agent = cell(row, actor.label || "—");
    if (client) {
      var span = document.createElement("span");
      span.className = "muted small";
      span.textContent = " " + client;
      agent.appendChild(span);
    }
    var tag = document.createElement("span");
    var decision = String(data.decision || "");
    tag.className = "decision-tag dec-" + decision.replace(/[^a-z_]/g, "");
    tag.textContent = decision || "—";
    cell(row, null).appendChild(tag);
    cell(row, typeof data.latency_ms === "number" ? data.latency_ms.toFixed(1) + " ms" : "—", "num");
    var link = document.createElement("a");
    link.href = "/audit/" + encodeURIComponent(event.seq) + "/";
    link.textContent = "#" + event.seq;
    cell(row, null).appendChild(link);
    return row;
  }

  function add(event) {
    if (typeof event.seq !== "number" || event.seq <= lastSeq) return;
    lastSeq = event.seq;
    body.insertBefore(render(event), body.firstChild);
    while (body.rows.length > maxRows) body.deleteRow(body.rows.length - 1);
  }

  function say(text) { if (status) status.textContent = text; }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + location.host + "/ws/events?types=tool_call" + (lastSeq ? "&since=" + lastSeq : "");
    var socket = new WebSocket(url);
    socket.onopen = function () { delay = 1000; say("Live"); };
    socket.onmessage = function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (err) { return; }
      if (event && event.type === "tool_call") add(event);
    };
    socket.onclose = function () {
      // Back off up to 30 s; `since` replays what was stored meanwhile.
      say("Reconnecting…");
      window.setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }

  connect();
})();
