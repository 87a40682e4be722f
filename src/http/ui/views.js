// The views, one per tab, and their forms. Reads come from the /api/
// routes; every action is a protocol command (cmd/act in app.js).
"use strict";

const VIEWS = { overview, queues, exchanges, streams, schemas, connections, users };

// ---- overview ----

async function overview() {
  const o = state.overview, b = o.broker;
  const cards = [
    ["messages", fmtInt(b.messages)], ["unacked", fmtInt(b.unacked)],
    ["publish/s", fmtRate(b.rates.publish.last_second)], ["deliver/s", fmtRate(b.rates.deliver.last_second)],
    ["ack/s", fmtRate(b.rates.ack.last_second)], ["queues", fmtInt(b.queues)],
    ["consumers", fmtInt(b.consumers)], ["connections", fmtInt(b.connections)],
    ["memory", fmtBytes(b.memory_rss_bytes)], ["disk free", fmtBytes(b.disk_free_bytes)],
  ];
  $("totals").replaceChildren(...cards.map(([label, value]) =>
    el("div", { class: "card", "data-total": label }, el("div", { class: "label" }, label), el("div", { class: "value" }, value))));
  renderCluster(o.cluster);
  const h = (await api("/api/history"))[state.range];
  lineChart($("chart-rates"), h.t, [
    { label: "publish", color: "var(--c1)", values: h.publish },
    { label: "deliver", color: "var(--c2)", values: h.deliver },
    { label: "ack", color: "var(--c3)", values: h.ack },
  ], fmtAxis);
  lineChart($("chart-depth"), h.t, [
    { label: "ready", color: "var(--c1)", values: h.messages },
    { label: "unacked", color: "var(--c4)", values: h.unacked },
  ], fmtAxis);
  // In MiB, so that the axis steps are round numbers of MiB.
  lineChart($("chart-memory"), h.t, [
    { label: "resident", color: "var(--c2)", values: h.memory.map(v => v / 1048576) },
  ], v => fmtAxis(v) + " MiB");
}

function renderCluster(c) {
  $("cluster").hidden = !c;
  if (!c) return;
  $("cluster-view").textContent = "node " + c.node_id + " · " + c.state + " · term " + c.term +
    " · applied " + (c.last_applied ?? "-");
  const last = c.last_log_index ?? 0;
  $("nodes").replaceChildren(...c.nodes.map(n => {
    const known = n.matched != null;
    return el("tr", { "data-node": n.id },
      el("td", { class: "name" }, String(n.id) + (n.id === c.node_id ? " (this node)" : "")),
      el("td", {}, n.addr), el("td", {}, n.voter ? "voter" : "learner"),
      el("td", {}, c.leader === n.id ? "yes" : ""),
      el("td", {}, known ? fmtInt(n.matched) : "-"),
      el("td", {}, known ? fmtInt(Math.max(0, last - n.matched)) : "-"));
  }));
}

// ---- queues ----

async function queues() {
  const qs = state.overview.queues;
  const body = $("queues");
  if (qs.length === 0) {
    body.replaceChildren(el("tr", {}, el("td", { class: "empty", colspan: 10 }, "no queues yet")));
  } else {
    body.replaceChildren(...qs.map(queueRow));
  }
  const selected = qs.find(x => x.name === state.selected);
  if (!selected) {
    state.selected = null;
    $("queue-detail").hidden = true;
    return;
  }
  await queueDetail(selected);
}

function queueRow(qu) {
  const history = qu.depth_history.length ? qu.depth_history : [qu.messages];
  const link = el("a", { "data-open": qu.name, onclick: () => { state.selected = qu.name; refresh(); } }, qu.name);
  return el("tr", {
    "data-queue": qu.name, "data-messages": qu.messages, "data-unacked": qu.unacked, "data-consumers": qu.consumers,
    class: qu.name === state.selected ? "selected" : null,
  },
  el("td", { class: "name" }, link, qu.kind === "stream" ? el("span", { class: "kind" }, "stream") : null,
    qu.replica ? el("span", { class: "kind" }, "replicated, leader " + (qu.replica.leader ?? "none")) : null),
  el("td", { class: "messages" }, fmtInt(qu.messages)),
  el("td", { class: "unacked" }, fmtInt(qu.unacked)),
  el("td", { class: "consumers" }, fmtInt(qu.consumers)),
  el("td", {}, fmtRate(qu.rates.publish.last_second)),
  el("td", {}, fmtRate(qu.rates.deliver.last_second)),
  el("td", {}, fmtRate(qu.rates.ack.last_second)),
  el("td", { class: qu.dead_lettered > 0 ? "dead" : "" }, fmtInt(qu.dead_lettered)),
  el("td", {}, fmtAge(qu.oldest_age_ms)),
  el("td", { class: "spark" }, sparkline(history.slice(-59).concat([qu.messages]))));
}

// The drill-down: built once per queue (so that what is typed stays),
// its numbers and consumers refreshed at each poll.
async function queueDetail(qu) {
  const box = $("queue-detail");
  box.hidden = false;
  if (box.dataset.queue !== qu.name) buildDetail(box, qu);
  $("detail-stats").replaceChildren(
    el("span", { class: "stat" }, "messages ", el("b", { id: "detail-messages" }, fmtInt(qu.messages))),
    el("span", { class: "stat" }, "unacked ", el("b", {}, fmtInt(qu.unacked))),
    el("span", { class: "stat" }, "consumers ", el("b", {}, fmtInt(qu.consumers))),
    el("span", { class: "stat" }, "dead-lettered ", el("b", {}, fmtInt(qu.dead_lettered))),
    el("span", { class: "stat" }, qu.durable ? "durable" : "transient"));
  // The queue's last minute: one sample a second, and the depth now.
  const depths = qu.depth_history.concat([qu.messages]);
  const now = Date.now();
  lineChart($("detail-chart"), depths.map((_, i) => now - (depths.length - 1 - i) * 1000), [
    { label: "messages", color: "var(--c1)", values: depths },
  ], fmtAxis);
  const consumers = (await api("/api/consumers")).filter(c => c.queue === qu.name);
  $("detail-consumers").replaceChildren(consumers.length
    ? el("table", {}, el("thead", {}, el("tr", {}, ...["tag", "connection", "ack", "prefetch", "in flight", "bytes in flight", "group", "lag", "lag (time)"].map(h => el("th", {}, h)))),
      el("tbody", {}, ...consumers.map(c => el("tr", {},
        el("td", { class: "name" }, c.tag), el("td", {}, c.connection), el("td", {}, c.ack),
        el("td", {}, c.prefetch + (c.prefetch_bytes == null ? "" : " / " + fmtBytes(c.prefetch_bytes))), el("td", {}, c.in_flight),
        el("td", {}, fmtBytes(c.bytes_in_flight)), el("td", {}, c.group || "–"), el("td", {}, fmtInt(c.lag)),
        el("td", {}, c.lag ? fmtAge(c.lag_ms) : "–")))))
    : el("p", { class: "muted" }, "no consumers"));
}

function buildDetail(box, queue) {
  box.dataset.queue = queue.name;
  const name = queue.name, stream = queue.kind === "stream";
  const out = el("div", { class: "result", id: "detail-result" });
  const msgs = el("div", { class: "msgs", id: "detail-messages-list" });
  const show = r => { if (r) msgs.replaceChildren(...r.messages.map(messageCard)); };

  const key = el("input", { id: "publish-key", class: "grow", value: name, placeholder: "routing key" });
  const exchange = el("input", { id: "publish-exchange", value: "", placeholder: '"" = default' });
  const opts = el("input", { id: "publish-options", class: "grow", placeholder: "options: persistent ttl=60000 h.kind=pdf" });
  const body = el("textarea", { id: "publish-body", placeholder: "message body" });
  const publish = el("form", {
    onsubmit: ev => {
      ev.preventDefault();
      const line = ["PUB", q(exchange.value), q(key.value), opts.value.trim()].filter(Boolean).join(" ");
      act(line, body.value, out);
    },
  },
  el("h3", {}, "Publish"),
  el("div", { class: "form-row" }, "exchange", exchange, "key", key),
  el("div", { class: "form-row" }, opts),
  body,
  el("div", { class: "form-row" }, el("button", { type: "submit", id: "publish-submit" }, "Publish")));

  const count = el("input", { id: "get-count", type: "number", min: 1, max: 1000, value: 1, style: "width:70px" });
  const mode = el("select", { id: "get-mode" },
    el("option", { value: "requeue" }, "look, then requeue"),
    el("option", { value: "ack" }, "take (ack)"));
  const read = el("section", {},
    el("h3", {}, "Messages"),
    el("div", { class: "form-row" }, "count", count,
      el("button", { type: "button", class: "secondary", id: "peek-button",
        onclick: async () => show(await act(`PEEK ${q(name)} count=${Number(count.value) || 1}`, null, out)) }, "Peek"),
      stream ? null : mode,
      stream ? null : el("button", { type: "button", class: "secondary", id: "get-button",
        onclick: async () => show(await act(`GET ${q(name)} count=${Number(count.value) || 1}` +
          (mode.value === "ack" ? " ack=auto" : ""), null, out)) }, "Get")),
    el("p", { class: "muted" }, stream
      ? "Peek reads from the first offset kept; nothing moves."
      : "Peek shows waiting messages without taking them. Get takes them: requeued (flagged redelivered) or acked."),
    msgs);

  box.replaceChildren(
    el("div", { class: "detail-head" },
      el("h2", {}, name), el("span", { id: "detail-stats", class: "row" }), el("span", { class: "grow" }),
      stream ? null : el("button", { type: "button", class: "secondary", id: "redrive-button",
        onclick: () => act(`REDRIVE ${q(name)}`, null, out) }, "Redrive"),
      stream ? null : confirmButton("Purge", "Really purge?", () => act(`PURGE ${q(name)}`, null, out), { id: "purge-button" }),
      confirmButton("Delete", "Really delete?", async () => {
        if (await act(`DELETE QUEUE ${q(name)}`, null, out)) { state.selected = null; box.hidden = true; box.dataset.queue = ""; }
      }, { id: "delete-button" }),
      el("button", { type: "button", class: "secondary", onclick: () => { state.selected = null; box.hidden = true; box.dataset.queue = ""; refresh(); } }, "Close")),
    out,
    el("div", { class: "detail-grid" },
      el("section", {}, publish),
      read,
      el("section", {}, el("h3", {}, "Consumers"), el("div", { id: "detail-consumers" }),
        el("h3", { style: "margin-top:12px" }, "Depth, last minute"), el("div", { id: "detail-chart", class: "chart small" }))));
}

function messageCard(m) {
  const where = m.offset != null ? "offset " + m.offset : (m.tag === "*" ? "position " : "delivery ") + m.dtag;
  const headers = Object.entries(m.headers).map(([k, v]) => ` h.${k}=${v}`).join("");
  return el("div", { class: "msg", "data-id": m.id },
    el("div", { class: "meta" }, `${where} · exchange ${m.exchange === "" ? '""' : m.exchange} · key ${m.routing_key} · ` +
      `id ${m.id} · ${m.size} B${m.redelivered ? " · redelivered" : ""}${headers}`),
    el("pre", {}, m.body != null ? m.body : "(binary) " + m.body_base64));
}

$("new-queue").onsubmit = async ev => {
  ev.preventDefault();
  const name = $("new-queue-name").value.trim();
  const words = ["DECLARE QUEUE", q(name)];
  if ($("new-queue-durable").checked) words.push("durable");
  if ($("new-queue-type").value === "stream") words.push("type=stream");
  const extra = $("new-queue-options").value.trim();
  if (extra) words.push(extra);
  if (await act(words.join(" "))) {
    $("new-queue-name").value = "";
    state.selected = name;
    refresh();
  }
};

// ---- exchanges ----

async function exchanges() {
  const all = await api("/api/exchanges");
  $("exchange-names").replaceChildren(...all.map(x => el("option", { value: x.name })));
  const box = $("exchanges");
  if (all.length === 0) {
    box.replaceChildren(el("p", { class: "muted" }, 'No exchanges declared. Every queue is reachable through the default exchange "" by its name.'));
    return;
  }
  box.replaceChildren(...all.map(x => el("div", { class: "panel exchange", "data-exchange": x.name },
    el("div", { class: "exchange-head" },
      el("span", { class: "name" }, x.name), el("span", { class: "pill" }, x.type),
      el("span", { class: "pill" + (x.durable ? " on" : "") }, x.durable ? "durable" : "transient"),
      x.alternate ? el("span", { class: "pill" }, "alternate " + x.alternate) : null,
      el("span", { class: "grow", style: "flex:1" }),
      confirmButton("Delete", "Really delete?", () => act(`DELETE EXCHANGE ${q(x.name)}`), { class: "danger small" })),
    x.bindings.length
      ? el("table", {},
        el("thead", {}, el("tr", {}, el("th", {}, "queue"), el("th", { class: "left" }, "key"), el("th", { class: "left" }, "headers"), el("th", {}))),
        el("tbody", {}, ...x.bindings.map(b => el("tr", { "data-binding": b.queue + " " + b.key },
          el("td", { class: "name" }, b.queue), el("td", { class: "left" }, b.key === "" ? '""' : b.key),
          el("td", { class: "left" }, b.headers.map(([k, v]) => `h.${k}=${v}`).join(" ") + (b.match ? " match=" + b.match : "")),
          el("td", {}, el("button", { type: "button", class: "secondary small",
            onclick: () => act(bindLine("UNBIND", b.queue, x.name, b.key, b.headers, b.match)) }, "Unbind"))))))
      : el("p", { class: "muted" }, "no bindings"))));
}

function bindLine(verb, queue, exchange, key, headers, match) {
  const words = [verb, q(queue), q(exchange)];
  if (key !== "" || headers.length) words.push(q(key));
  for (const [k, v] of headers) words.push(`h.${k}=${q(v)}`);
  if (match && headers.length) words.push("match=" + match);
  return words.join(" ");
}

$("new-exchange").onsubmit = async ev => {
  ev.preventDefault();
  const words = ["DECLARE EXCHANGE", q($("new-exchange-name").value.trim()), $("new-exchange-type").value];
  if ($("new-exchange-durable").checked) words.push("durable");
  if (await act(words.join(" "))) $("new-exchange-name").value = "";
};

$("new-binding").onsubmit = ev => {
  ev.preventDefault();
  const words = ["BIND", q($("bind-queue").value.trim()), q($("bind-exchange").value.trim())];
  const key = $("bind-key").value, extra = $("bind-args").value.trim();
  if (key !== "" || extra) words.push(q(key));
  if (extra) words.push(extra);
  act(words.join(" "));
};

// ---- streams ----

async function streams() {
  const all = await api("/api/streams");
  const box = $("streams");
  if (all.length === 0) {
    box.replaceChildren(el("p", { class: "muted" }, "No streams."));
    return;
  }
  // Keep what is being typed into a SEEK form across polls.
  const typing = box.contains(document.activeElement);
  if (typing) return;
  box.replaceChildren(...all.map(s => {
    const out = el("div", { class: "result" });
    const group = el("input", { placeholder: "group", required: true });
    const to = el("input", { placeholder: "first | last | next | <offset> | time=<unix-ms>", class: "grow" });
    const seek = el("form", {
      class: "form-row",
      onsubmit: ev => {
        ev.preventDefault();
        const v = to.value.trim();
        act(`SEEK ${q(s.name)} ${q(group.value.trim())} ` + (v.startsWith("time=") ? v : "offset=" + (v || "next")), null, out);
      },
    }, el("strong", {}, "Seek"), group, "to", to, el("button", { type: "submit" }, "Seek"));
    return el("div", { class: "panel stream", "data-stream": s.name },
      el("div", { class: "exchange-head" }, el("span", { class: "name" }, s.name),
        el("span", { class: "pill" }, `offsets ${s.first} – ${Math.max(s.first, s.end - 1)}`),
        el("span", { class: "pill" }, fmtInt(s.messages) + " kept")),
      s.groups.length
        ? el("table", {},
          el("thead", {}, el("tr", {}, ...["group", "committed", "lag", "lag (time)", "in flight", "members", "active"].map(h => el("th", {}, h)))),
          el("tbody", {}, ...s.groups.map(g => el("tr", { "data-group": g.name },
            el("td", { class: "name" }, g.name), el("td", {}, fmtInt(g.committed)), el("td", { class: "lag" }, fmtInt(g.lag)),
            el("td", { class: "lag-time" }, g.lag ? fmtAge(g.lag_ms) : "–"),
            el("td", {}, fmtInt(g.in_flight)), el("td", {}, g.members.join(", ") || "–"), el("td", {}, g.active || "–")))))
        : el("p", { class: "muted" }, "no consumer groups (SUB " + s.name + " group=<name> makes one)"),
      seek, out);
  }));
}

// ---- schemas ----

async function schemas() {
  const all = await api("/api/schemas");
  $("schema-subjects").replaceChildren(...all.map(s => el("option", { value: s.subject })));
  const shown = state.schema;
  if (shown && !all.some(s => s.subject === shown.subject && s.versions.includes(shown.version))) {
    state.schema = null;
    $("schema-detail").hidden = true;
  }
  const box = $("schemas");
  if (all.length === 0) {
    box.replaceChildren(el("p", { class: "muted" }, "No schema subjects yet: add a first version above."));
    return;
  }
  box.replaceChildren(...all.map(s => el("div", { class: "panel exchange", "data-subject": s.subject },
    el("div", { class: "exchange-head" },
      el("span", { class: "name" }, s.subject),
      el("span", { class: "pill", "data-compat": "" }, s.compat + (s.transitive ? ", transitive" : "")),
      el("span", { class: "pill" }, "latest v" + s.latest),
      ...s.used_by.map(u => el("span", { class: "pill on", "data-used-by": u.kind + ":" + u.name }, u.kind + " " + u.name)),
      el("span", { class: "grow", style: "flex:1" }),
      confirmButton("Delete subject", "Really delete?", () => act(`SCHEMA DELETE ${q(s.subject)}`),
        { class: "danger small", "data-delete-subject": s.subject })),
    el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "version"), el("th", {}), el("th", {}))),
      el("tbody", {}, ...s.versions.slice().reverse().map(v => el("tr", { "data-version": v },
        el("td", { class: "name" }, "v" + v + (v === s.latest ? " (latest: checked against)" : "")),
        el("td", {}, el("button", { type: "button", class: "secondary small", "data-show": s.subject + ":" + v,
          onclick: () => showSchema(s.subject, v) }, "Show")),
        el("td", {}, confirmButton("Delete", "Really delete?", () => act(`SCHEMA DELETE ${q(s.subject)} version=${v}`),
          { class: "danger small", "data-delete-version": s.subject + ":" + v })))))))));
}

// One version's schema, as it was added (SCHEMA GET), pretty-printed
// when it is JSON; it stays shown across polls.
async function showSchema(subject, version) {
  const box = $("schema-detail");
  try {
    const r = await cmd(`SCHEMA GET ${q(subject)} version=${version}`);
    let text = r.data;
    try { text = JSON.stringify(JSON.parse(r.data), null, 2); } catch (_) { /* shown as it is */ }
    state.schema = { subject, version };
    box.dataset.shown = subject + ":" + version;
    box.replaceChildren(
      el("div", { class: "detail-head" }, el("h2", {}, subject + " v" + version),
        el("span", { class: "muted" }, r.reply.replace(/^OK /, "").replace(/ \{\d+\}$/, "")),
        el("span", { class: "grow" }),
        el("button", { type: "button", class: "secondary", onclick: () => { state.schema = null; box.hidden = true; box.dataset.shown = ""; } }, "Close")),
      el("pre", { id: "schema-text" }, text));
    box.hidden = false;
  } catch (e) {
    toast(e.message, true, e.code);
  }
}

$("new-schema").onsubmit = async ev => {
  ev.preventDefault();
  const subject = $("new-schema-subject").value.trim();
  const words = ["SCHEMA ADD", q(subject)];
  const compat = $("new-schema-compat").value;
  if (compat) words.push("compat=" + compat);
  // Without compat= the broker says why it is refused.
  if ($("new-schema-transitive").checked) words.push("transitive");
  const r = await act(words.join(" "), $("new-schema-text").value, $("new-schema-result"));
  if (r) {
    $("new-schema-text").value = "";
    await showSchema(subject, Number((r.reply.match(/version=(\d+)/) || [])[1]));
  }
};

// ---- connections ----

async function connections() {
  const all = await api("/api/connections");
  const admin = state.me && state.me.admin;
  $("connections").replaceChildren(...(all.length ? all.map(c => el("tr", { "data-connection": c.id },
    el("td", {}, c.id), el("td", { class: "left" }, c.peer), el("td", { class: "left" }, c.name || "–"),
    el("td", { class: "left" }, c.user || "–"), el("td", {}, c.tls ? "yes" : "no"), el("td", {}, fmtUptime(c.connected_secs)),
    el("td", {}, c.subscriptions), el("td", {}, c.unacked),
    el("td", {}, fmtRate(c.rates.publish)), el("td", {}, fmtRate(c.rates.deliver)),
    el("td", {}, fmtBytes(c.rates.recv_bytes) + "/s"), el("td", {}, fmtBytes(c.rates.sent_bytes) + "/s"),
    admin ? el("td", {}, confirmButton("Close", "Really close?", () => act(`CLOSE CONNECTION ${c.id}`),
      { class: "danger small" })) : null))
    : [el("tr", {}, el("td", { class: "empty", colspan: 13 }, "no connections"))]));
}

// ---- users ----

async function users() {
  const all = await api("/api/users");
  // Keep what is being typed into a row across polls.
  if ($("users").contains(document.activeElement)) return;
  if (all.length === 0) {
    $("users").replaceChildren(el("tr", {}, el("td", { class: "empty", colspan: 6 },
      "No users: the broker is open, to this page as to the protocol. The first user must be an admin; from then on, everyone logs in.")));
    return;
  }
  $("users").replaceChildren(...all.map(u => {
    const p = k => el("input", { value: u[k], "data-perm": k, style: "width:110px" });
    const conf = p("configure"), write = p("write"), read = p("read");
    const admin = el("input", { type: "checkbox", checked: u.admin });
    return el("tr", { "data-user": u.name },
      el("td", { class: "name" }, u.name), el("td", {}, admin),
      el("td", { class: "left" }, conf), el("td", { class: "left" }, write), el("td", { class: "left" }, read),
      el("td", {},
        el("button", { type: "button", class: "secondary small",
          onclick: () => act(`USER PERMIT ${q(u.name)} configure=${q(conf.value)} write=${q(write.value)} read=${q(read.value)} admin=${admin.checked}`) }, "Save"),
        " ",
        confirmButton("Remove", "Really remove?", () => act(`USER REMOVE ${q(u.name)}`), { class: "danger small" })));
  }));
}

$("new-user").onsubmit = async ev => {
  ev.preventDefault();
  const words = ["USER ADD", q($("new-user-name").value.trim()), q($("new-user-password").value)];
  if ($("new-user-admin").checked) words.push("admin");
  for (const k of ["configure", "write", "read"]) {
    const v = $("new-user-" + k).value;
    if (v !== "") words.push(`${k}=${q(v)}`);
  }
  if (await act(words.join(" "))) {
    $("new-user-name").value = "";
    $("new-user-password").value = "";
    if (state.me.open) await whoami();
  }
};
