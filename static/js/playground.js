/* igris tool playground: lists a server's tools and calls them through the proxy, from the
   browser, with the console session cookie (same origin; the proxy checks the Origin header).

   It speaks the modern, sessionless era of MCP (2026-07-28): each POST carries
   MCP-Protocol-Version, Mcp-Method and (for tools/call) Mcp-Name headers that mirror the body,
   and params._meta names the protocol version, client capabilities and client info. Responses
   come back as application/json or as a text/event-stream ending with the response.

   No framework, no inline script: the page passes its settings in data- attributes. */
(function () {
  "use strict";

  var root = document.getElementById("playground");
  if (!root) return;

  var PROTOCOL = root.getAttribute("data-protocol");
  var CLIENT = { name: root.getAttribute("data-client-name"), version: "1" };
  var PROXY_BASE = root.getAttribute("data-proxy-base");
  var SESSION_URL = root.getAttribute("data-session-url");
  var MAX_LIST_PAGES = 20;

  var $ = function (id) { return document.getElementById(id); };
  var els = {
    server: $("pg-server"),
    reload: $("pg-reload"),
    listStatus: $("pg-list-status"),
    tools: $("pg-tools"),
    other: $("pg-other"),
    title: $("pg-tool-title"),
    description: $("pg-tool-description"),
    hints: $("pg-tool-hints"),
    form: $("pg-form"),
    fields: $("pg-fields"),
    run: $("pg-run"),
    runStatus: $("pg-run-status"),
    result: $("pg-result"),
    resultMeta: $("pg-result-meta"),
    resultBody: $("pg-result-body")
  };

  var nextId = 1;
  var current = { slug: null, tools: [], tool: null, byName: false, inputs: [] };

  // --- small DOM helpers ------------------------------------------------------------------------

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else node.setAttribute(key, value === true ? "" : value);
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function badge(text, kind, testid) {
    return el("span", { className: "badge" + (kind ? " badge-" + kind : ""), text: text, "data-testid": testid });
  }

  function pretty(value) {
    return JSON.stringify(value, null, 2);
  }

  function codeBlock(text, label, testid) {
    return el("div", { className: "code-block" }, [
      label ? el("div", { className: "code-head" }, [el("span", { text: label })]) : null,
      el("pre", {}, [el("code", { text: text, "data-testid": testid })])
    ]);
  }

  // --- MCP over fetch ---------------------------------------------------------------------------

  // 2026-07-28: a header value outside printable ASCII travels as =?base64?<utf-8 base64>?=
  function headerValue(value) {
    if (/^[\x20-\x7e]*$/.test(value)) return value;
    var bytes = new TextEncoder().encode(value);
    var binary = "";
    bytes.forEach(function (b) { binary += String.fromCharCode(b); });
    return "=?base64?" + btoa(binary) + "?=";
  }

  function parseEventStream(text) {
    var messages = [];
    text.split(/\r?\n\r?\n/).forEach(function (block) {
      var data = [];
      block.split(/\r?\n/).forEach(function (line) {
        if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""));
      });
      if (!data.length) return;
      try { messages.push(JSON.parse(data.join("\n"))); } catch (err) { /* keepalive or partial */ }
    });
    return messages;
  }

  function rpc(slug, method, params, name) {
    var id = nextId++;
    var body = {
      jsonrpc: "2.0",
      id: id,
      method: method,
      params: Object.assign({}, params, {
        _meta: {
          "io.modelcontextprotocol/protocolVersion": PROTOCOL,
          "io.modelcontextprotocol/clientCapabilities": {},
          "io.modelcontextprotocol/clientInfo": CLIENT
        }
      })
    };
    var headers = {
      "Content-Type": "application/json",
      "Accept": "application/json, text/event-stream",
      "MCP-Protocol-Version": PROTOCOL,
      "Mcp-Method": method
    };
    if (name !== undefined) headers["Mcp-Name"] = headerValue(name);
    var started = performance.now();
    return fetch(PROXY_BASE + encodeURIComponent(slug) + "/mcp", {
      method: "POST",
      headers: headers,
      body: JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (response) {
      return response.text().then(function (text) {
        var type = (response.headers.get("content-type") || "").toLowerCase();
        var messages = [];
        if (type.indexOf("text/event-stream") >= 0) {
          messages = parseEventStream(text);
        } else if (text) {
          try { messages = [JSON.parse(text)]; } catch (err) { messages = []; }
        }
        var reply = messages.filter(function (m) {
          return m && m.id === id && ("result" in m || "error" in m);
        })[0] || messages.filter(function (m) { return m && "error" in m; })[0] || null;
        return {
          status: response.status,
          statusText: response.statusText,
          reply: reply,
          notifications: messages.filter(function (m) { return m && m.method && !("id" in m); }),
          raw: text,
          ms: Math.round(performance.now() - started),
          retryAfter: response.headers.get("retry-after"),
          sessionId: response.headers.get("igris-session-id")
        };
      });
    }, function (err) {
      return { status: 0, statusText: String(err), reply: null, notifications: [], raw: "", ms: 0 };
    });
  }

  // --- the tool list ----------------------------------------------------------------------------

  function listTools() {
    var slug = els.server.value;
    if (!slug) return;
    current.slug = slug;
    current.tools = [];
    clear(els.tools);
    els.listStatus.textContent = "Loading tools…";
    var collected = [];

    function page(cursor, count) {
      return rpc(slug, "tools/list", cursor ? { cursor: cursor } : {}).then(function (answer) {
        if (slug !== current.slug) return null;
        var result = answer.reply && answer.reply.result;
        if (!result || !Array.isArray(result.tools)) return answer;
        collected = collected.concat(result.tools);
        if (result.nextCursor && count < MAX_LIST_PAGES) return page(result.nextCursor, count + 1);
        return null;
      });
    }

    page(null, 1).then(function (failure) {
      if (slug !== current.slug) return;
      if (failure) {
        els.listStatus.textContent = "Could not list tools: " + describeFailure(failure);
        els.listStatus.classList.add("text-danger");
        return;
      }
      els.listStatus.classList.remove("text-danger");
      current.tools = collected;
      els.listStatus.textContent = collected.length
        ? collected.length + " tool" + (collected.length === 1 ? "" : "s") + " visible to you"
        : "No tools visible to you on this server.";
      collected.forEach(function (tool) {
        var hints = [];
        var notes = tool.annotations || {};
        if (notes.destructiveHint) hints.push(badge("destructive", "warn"));
        else if (notes.readOnlyHint) hints.push(badge("read-only", "ok"));
        els.tools.appendChild(el("li", {}, [
          el("button", { type: "button", className: "pg-tool", "data-tool": tool.name }, [
            el("span", { className: "pg-tool-name" }, [el("code", { text: tool.name })].concat(hints)),
            tool.title || tool.description
              ? el("span", { className: "pg-tool-desc", text: tool.title || tool.description })
              : null
          ])
        ]));
      });
      var again = current.tool && !current.byName
        ? collected.filter(function (t) { return t.name === current.tool.name; })[0]
        : null;
      if (again) chooseTool(again);
    });
  }

  function describeFailure(answer) {
    if (answer.status === 0) return "the network request failed (" + answer.statusText + ").";
    var error = answer.reply && answer.reply.error;
    var text = "HTTP " + answer.status;
    if (error) text += ": " + error.message;
    return text;
  }

  function markActive(name) {
    Array.prototype.forEach.call(els.tools.querySelectorAll(".pg-tool"), function (button) {
      button.classList.toggle("is-active", button.getAttribute("data-tool") === name);
    });
    els.other.classList.toggle("is-active", name === null);
  }

  // --- the argument form ------------------------------------------------------------------------

  // Pick the one concrete schema of `anyOf`/`oneOf` unions such as `X | None` (pydantic's shape).
  function concrete(schema, defs) {
    var seen = 0;
    while (schema && seen++ < 8) {
      if (schema.$ref && defs) {
        var name = schema.$ref.split("/").pop();
        schema = Object.assign({}, defs[name] || {}, { description: schema.description || (defs[name] || {}).description });
        continue;
      }
      var union = schema.anyOf || schema.oneOf;
      if (Array.isArray(union)) {
        var options = union.filter(function (s) { return s && s.type !== "null"; });
        var nullable = options.length < union.length;
        var base = options.length === 1 ? options[0] : { type: "json" };
        schema = Object.assign({}, base, {
          description: schema.description || base.description,
          "default": "default" in schema ? schema["default"] : base["default"],
          title: schema.title || base.title,
          _nullable: nullable
        });
        continue;
      }
      break;
    }
    return schema || {};
  }

  function kindOf(schema) {
    var type = Array.isArray(schema.type)
      ? schema.type.filter(function (t) { return t !== "null"; })[0]
      : schema.type;
    if (Array.isArray(schema["enum"])) return "enum";
    if (type === "string" || type === "number" || type === "integer" || type === "boolean") return type;
    return "json";
  }

  function field(name, schema, required) {
    var id = "pg-arg-" + name.replace(/[^A-Za-z0-9_-]/g, "_");
    var kind = kindOf(schema);
    var hasDefault = "default" in schema && schema["default"] !== null;
    var label = el("label", { className: "label", "for": id }, [
      name,
      required ? el("span", { className: "required-mark", text: "required" }) : el("span", { className: "optional", text: "optional" })
    ]);
    var input;
    if (kind === "enum") {
      input = el("select", { id: id, name: name });
      if (!required) input.appendChild(el("option", { value: "", text: "—" }));
      schema["enum"].forEach(function (value, i) {
        input.appendChild(el("option", {
          value: String(i), text: JSON.stringify(value),
          selected: hasDefault && schema["default"] === value
        }));
      });
    } else if (kind === "boolean" && required) {
      input = el("input", { type: "checkbox", id: id, name: name, checked: hasDefault && schema["default"] === true });
    } else if (kind === "boolean") {
      input = el("select", { id: id, name: name }, [
        el("option", { value: "", text: hasDefault ? "default (" + schema["default"] + ")" : "—" }),
        el("option", { value: "true", text: "true" }),
        el("option", { value: "false", text: "false" })
      ]);
    } else if (kind === "number" || kind === "integer") {
      input = el("input", {
        type: "number", id: id, name: name, step: kind === "integer" ? "1" : "any",
        min: schema.minimum, max: schema.maximum,
        placeholder: hasDefault ? String(schema["default"]) : null
      });
    } else if (kind === "string") {
      var long = (schema.maxLength || 0) > 200 || /content|body|text|query/i.test(name);
      input = el(long ? "textarea" : "input", {
        type: long ? null : "text", rows: long ? "3" : null, id: id, name: name,
        placeholder: hasDefault ? String(schema["default"]) : null
      });
    } else {
      input = el("textarea", {
        id: id, name: name, rows: "4", spellcheck: "false", className: "code-editor",
        placeholder: hasDefault ? JSON.stringify(schema["default"]) : (schema.type === "array" ? "[ ]" : "{ }")
      });
    }
    var help = schema.description ? el("div", { className: "help", text: schema.description }) : null;
    var error = el("p", { className: "field-error", role: "alert", hidden: true });
    var wrap = el("div", { className: "field" + (kind === "boolean" && required ? " field-check" : "") },
      kind === "boolean" && required
        ? [el("label", { className: "check", "for": id }, [input, el("span", { text: name }), el("span", { className: "required-mark", text: "required" })]), error, help]
        : [label, input, error, help]);
    return { name: name, kind: kind, schema: schema, required: required, input: input, error: error, wrap: wrap };
  }

  function chooseTool(tool) {
    current.tool = tool;
    current.byName = false;
    markActive(tool.name);
    els.title.textContent = tool.title ? tool.title + " (" + tool.name + ")" : tool.name;
    els.description.textContent = tool.description || "No description.";
    clear(els.hints);
    var schema = tool.inputSchema || {};
    var properties = schema.properties || {};
    var required = Array.isArray(schema.required) ? schema.required : [];
    clear(els.fields);
    current.inputs = Object.keys(properties).map(function (name) {
      var spec = field(name, concrete(properties[name], schema.$defs || schema.definitions), required.indexOf(name) >= 0);
      els.fields.appendChild(spec.wrap);
      return spec;
    });
    if (!current.inputs.length) {
      els.fields.appendChild(el("p", { className: "muted", text: "This tool takes no arguments." }));
    }
    els.form.hidden = false;
    els.runStatus.textContent = "";
  }

  function chooseByName() {
    current.tool = null;
    current.byName = true;
    markActive(null);
    els.title.textContent = "Call a tool by name";
    els.description.textContent = "For a tool that is hidden from your list, or one the server does not advertise.";
    clear(els.hints);
    clear(els.fields);
    var nameSpec = field("tool name", { type: "string" }, true);
    nameSpec.input.setAttribute("data-testid", "pg-tool-name");
    var argsSpec = field("arguments", { type: "object", description: "A JSON object." }, false);
    argsSpec.input.setAttribute("data-testid", "pg-tool-arguments");
    els.fields.appendChild(nameSpec.wrap);
    els.fields.appendChild(argsSpec.wrap);
    current.inputs = [nameSpec, argsSpec];
    els.form.hidden = false;
    els.runStatus.textContent = "";
    nameSpec.input.focus();
  }

  // Read one input into a JSON value; `undefined` leaves an optional argument out.
  function readValue(spec) {
    var input = spec.input;
    var raw = input.type === "checkbox" ? input.checked : input.value;
    if (spec.kind === "boolean") {
      if (input.type === "checkbox") return raw;
      return raw === "" ? undefined : raw === "true";
    }
    if (spec.kind === "enum") {
      return raw === "" ? undefined : spec.schema["enum"][Number(raw)];
    }
    if (raw.trim() === "") {
      if (!spec.required) return undefined;
      if (spec.kind === "string") return "";
      throw new Error("Fill this in.");
    }
    if (spec.kind === "string") return raw;
    if (spec.kind === "number" || spec.kind === "integer") {
      var number = Number(raw);
      if (!isFinite(number)) throw new Error("Enter a number.");
      if (spec.kind === "integer" && Math.floor(number) !== number) throw new Error("Enter a whole number.");
      return number;
    }
    try {
      return JSON.parse(raw);
    } catch (err) {
      throw new Error("Not valid JSON: " + err.message);
    }
  }

  function collect() {
    var values = {};
    var ok = true;
    current.inputs.forEach(function (spec) {
      spec.error.hidden = true;
      spec.wrap.classList.remove("has-error");
      try {
        var value = readValue(spec);
        if (value !== undefined) values[spec.name] = value;
      } catch (err) {
        ok = false;
        spec.error.textContent = err.message;
        spec.error.hidden = false;
        spec.wrap.classList.add("has-error");
      }
    });
    return ok ? values : null;
  }

  // --- running and showing the result -----------------------------------------------------------

  function run(event) {
    event.preventDefault();
    var values = collect();
    if (!values) return;
    var name, args;
    if (current.byName) {
      name = String(values["tool name"] || "").trim();
      args = values.arguments === undefined ? {} : values.arguments;
      if (!name) return;
      if (typeof args !== "object" || args === null || Array.isArray(args)) {
        var spec = current.inputs[1];
        spec.error.textContent = "Give a JSON object.";
        spec.error.hidden = false;
        spec.wrap.classList.add("has-error");
        return;
      }
    } else {
      name = current.tool.name;
      args = values;
    }
    els.run.disabled = true;
    els.runStatus.textContent = "Calling " + name + "…";
    rpc(current.slug, "tools/call", { name: name, arguments: args }, name).then(function (answer) {
      els.run.disabled = false;
      els.runStatus.textContent = "";
      showResult(name, args, answer);
    });
  }

  function decisionBox(decision) {
    var denied = decision.action === "deny";
    var action = badge(decision.action, "action");
    action.setAttribute("data-action", decision.action);
    return el("div", { className: "decision", "data-action": decision.action, "data-testid": "pg-decision" }, [
      el("div", { className: "decision-head" }, [
        action,
        el("strong", {}, decision.rule
          ? [denied ? "Denied by rule " : "Decided by rule ", el("code", { text: decision.rule, "data-testid": "pg-decision-rule" })]
          : [denied ? "Denied by the default posture" : "Allowed by the default posture"]),
        decision.version ? el("span", { className: "muted", text: "policy v" + decision.version }) : null
      ]),
      decision.reason ? el("p", { className: "decision-line muted", text: decision.reason }) : null
    ]);
  }

  function contentBlock(block) {
    if (!block || typeof block !== "object") return codeBlock(pretty(block));
    if (block.type === "text") return el("pre", { className: "pg-text", "data-testid": "pg-text" }, [block.text]);
    if (block.type === "image" && /^image\/(png|jpeg|gif|webp)$/.test(block.mimeType || "")) {
      return el("img", { className: "pg-image", alt: "image result", src: "data:" + block.mimeType + ";base64," + block.data });
    }
    if (block.type === "resource_link") {
      return el("p", {}, [badge("resource link"), " ", el("code", { text: block.uri }), block.name ? " " + block.name : null]);
    }
    if (block.type === "resource" && block.resource) {
      var resource = block.resource;
      return el("div", {}, [
        el("p", {}, [badge("resource"), " ", el("code", { text: resource.uri })]),
        "text" in resource ? el("pre", { className: "pg-text" }, [resource.text]) : codeBlock(pretty(resource))
      ]);
    }
    return el("div", {}, [badge(block.type || "block"), codeBlock(pretty(block))]);
  }

  function showResult(name, args, answer) {
    clear(els.resultMeta);
    clear(els.resultBody);
    els.result.hidden = false;
    var status = answer.status;
    var kind = status >= 200 && status < 300 ? "ok" : status >= 500 || status === 0 ? "error" : "warn";
    els.resultMeta.appendChild(badge(status ? "HTTP " + status : "network error", kind, "pg-http-status"));
    if (answer.ms) els.resultMeta.appendChild(el("span", { className: "muted small", text: answer.ms + " ms" }));
    if (answer.sessionId) {
      els.resultMeta.appendChild(el("a", {
        className: "small", href: SESSION_URL.replace("SESSION-ID", encodeURIComponent(answer.sessionId)),
        text: "session"
      }));
    }
    var body = els.resultBody;
    body.appendChild(el("p", { className: "muted small" }, ["tools/call ", el("code", { text: name }), " with ", el("code", { text: JSON.stringify(args) })]));

    var reply = answer.reply;
    if (status === 0) {
      body.appendChild(el("div", { className: "alert alert-error", role: "alert" }, [el("p", { text: "The request did not reach igris: " + answer.statusText })]));
    } else if (reply && reply.error) {
      var error = reply.error;
      var lines = [el("p", {}, [el("strong", { text: "JSON-RPC error " + error.code + ": " }), error.message])];
      if (answer.retryAfter) lines.push(el("p", { text: "Retry after " + answer.retryAfter + " s." }));
      body.appendChild(el("div", { className: "alert alert-error", role: "alert", "data-testid": "pg-rpc-error" }, [el("div", {}, lines)]));
      if (error.data !== undefined) body.appendChild(codeBlock(pretty(error.data), "error.data"));
    } else if (reply && reply.result) {
      var result = reply.result;
      var meta = result._meta || {};
      if (meta["igris/decision"]) body.appendChild(decisionBox(meta["igris/decision"]));
      body.appendChild(el("p", {}, [
        result.isError ? badge("isError: true", "warn", "pg-is-error") : badge("isError: false", "ok", "pg-is-error")
      ]));
      var blocks = Array.isArray(result.content) ? result.content : [];
      if (blocks.length) {
        body.appendChild(el("p", { className: "pg-label", text: "content · " + blocks.length + " block" + (blocks.length === 1 ? "" : "s") }));
      }
      blocks.forEach(function (block) {
        body.appendChild(contentBlock(block));
      });
      if (result.structuredContent !== undefined) {
        body.appendChild(el("p", { className: "pg-label", text: "structuredContent" }));
        body.appendChild(codeBlock(pretty(result.structuredContent), null, "pg-structured"));
      }
    } else {
      body.appendChild(el("div", { className: "alert alert-warn", role: "alert" }, [el("p", { text: "No JSON-RPC response to this call came back." })]));
    }
    if (answer.notifications && answer.notifications.length) {
      body.appendChild(el("p", { className: "muted small", text: answer.notifications.length + " notification(s) arrived before the result (progress, logs)." }));
    }
    body.appendChild(el("details", { className: "raw" }, [
      el("summary", { text: "Raw response" }),
      codeBlock(answer.raw || "(empty body)")
    ]));
  }

  // --- wiring -----------------------------------------------------------------------------------

  els.server.addEventListener("change", function () {
    current.tool = null;
    current.byName = false;
    els.form.hidden = true;
    els.result.hidden = true;
    els.title.textContent = "Choose a tool";
    els.description.textContent = "Pick a tool on the left to get a form for its arguments.";
    var url = new URL(window.location.href);
    url.searchParams.set("server", els.server.value);
    window.history.replaceState(null, "", url.toString());
    listTools();
  });
  els.reload.addEventListener("click", listTools);
  els.other.addEventListener("click", chooseByName);
  els.tools.addEventListener("click", function (event) {
    var button = event.target.closest(".pg-tool");
    if (!button) return;
    var name = button.getAttribute("data-tool");
    var tool = current.tools.filter(function (t) { return t.name === name; })[0];
    if (tool) chooseTool(tool);
  });
  els.form.addEventListener("submit", run);

  if (els.server.value) listTools();
})();
