// usagewatch dashboard: the live header balance (Server-Sent Events), the breakdown
// popover, the operator's account switcher, and the daily usage chart (plotly.js served
// by usagewatch itself). No framework; nothing loaded from elsewhere.
"use strict";

function groupThousands(text) {
  // "1234567.50" -> "1,234,567.50" (exact: works on the decimal string, never a float)
  const negative = text.startsWith("-");
  const [units, frac] = (negative ? text.slice(1) : text).split(".");
  const grouped = units.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return (negative ? "-" : "") + grouped + (frac !== undefined ? "." + frac : "");
}

function accountTime(iso, list) {
  // "2026-12-22 04:16 IST": the account's zone, as the server writes times on every page
  const zone = list.dataset.zone;
  const parts = {};
  const format = new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric",
    month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  for (const part of format.formatToParts(new Date(iso))) parts[part.type] = part.value;
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute} ` +
    list.dataset.zoneLabel;
}

function showBalance(balance) {
  const currency = balance.currency;
  for (const name of ["available_balance", "paid_credits", "promotional_credits",
                      "reserved_amount", "today_usage", "month_usage"]) {
    for (const el of document.querySelectorAll(`[data-field="${name}"]`)) {
      const text = `${currency} ${groupThousands(balance[name])}`;
      if (el.textContent !== text) {
        el.textContent = text;
        if (el.classList.contains("balance-amount")) {
          el.classList.remove("changed");
          void el.offsetWidth; // restart the animation
          el.classList.add("changed");
        }
      }
    }
  }
  const list = document.querySelector('[data-field="promotional_expiries"]');
  if (list) {
    list.replaceChildren();
    const items = balance.promotional_expiries.length ? balance.promotional_expiries : [null];
    for (const item of items) {
      const li = document.createElement("li");
      li.textContent = item
        ? `${currency} ${groupThousands(item.amount)} expires ${accountTime(item.expires_at, list)}`
        : "No promotional credit.";
      list.append(li);
    }
  }
  const banner = document.getElementById("paused-banner");
  if (banner) {
    if (balance.outbound_allowed) {
      banner.hidden = true;
    } else {
      // The words of web/context.py's BLOCK_REASONS, which the page carries.
      const code = balance.outbound_block_reason;
      const [why, todo] = JSON.parse(banner.dataset.reasons || "{}")[code] ||
        [`Outbound calls and messages are paused (${code.replaceAll("_", " ")}).`,
         "See Spending Limits and Credits."];
      banner.querySelector('[data-field="block_why"]').textContent = why;
      banner.querySelector('[data-field="block_todo"]').textContent = todo;
      banner.hidden = false;
    }
  }
}

function startBalanceStream() {
  const button = document.getElementById("header-balance");
  if (!button || !window.EventSource) return;
  const status = document.querySelector(".live-status");
  const source = new EventSource(button.dataset.stream);
  source.addEventListener("balance", (event) => {
    showBalance(JSON.parse(event.data));
    if (status) status.textContent = "Live.";
  });
  source.addEventListener("error", () => {
    if (status) status.textContent = "Reconnecting…"; // EventSource retries by itself
  });
}

function setUpBreakdown() {
  const button = document.getElementById("header-balance");
  const panel = document.getElementById("balance-breakdown");
  if (!button || !panel) return;
  const close = () => { panel.hidden = true; button.setAttribute("aria-expanded", "false"); };
  button.addEventListener("click", () => {
    const opening = panel.hidden;
    panel.hidden = !opening;
    button.setAttribute("aria-expanded", String(opening));
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !panel.hidden) { close(); button.focus(); }
  });
  document.addEventListener("click", (e) => {
    if (!panel.hidden && !panel.contains(e.target) && !button.contains(e.target)) close();
  });
  // Tabbing away from the button and the panel closes it too (it would cover the page).
  const leaving = (e) => {
    const next = e.relatedTarget;
    if (!panel.hidden && next && !panel.contains(next) && !button.contains(next)) close();
  };
  button.addEventListener("focusout", leaving);
  panel.addEventListener("focusout", leaving);
}

function setUpAutosubmit() {
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
}

function setUpForms() {
  // Ask before a destructive post (deleting an alert); the server never depends on it.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (e) => {
      if (!window.confirm(form.dataset.confirm)) e.preventDefault();
    });
  }
  // A form that charges money is sent once: its button is disabled while the post runs
  // (the server's idempotency key makes a second post harmless anyway).
  for (const form of document.querySelectorAll("form[data-once]")) {
    form.addEventListener("submit", () => {
      for (const button of form.querySelectorAll("button[type=submit]")) {
        window.setTimeout(() => { button.disabled = true; button.setAttribute("aria-busy", "true"); }, 0);
      }
    });
  }
  // Add Alert: period and service belong to usage alerts only.
  const type = document.querySelector("select[data-alert-type]");
  const usageOnly = document.querySelector("[data-usage-only]");
  if (type && usageOnly) {
    const sync = () => { usageOnly.hidden = type.value !== "usage"; };
    type.addEventListener("change", sync);
    sync();
  }
}

function keepTableRoles() {
  // A .stack-table is shown one block per row on a phone (app.css); some browsers then stop
  // announcing it as a table, so its roles are said explicitly (the header cells stay).
  const roles = [["table", "table"], ["thead, tbody, tfoot", "rowgroup"], ["tr", "row"],
                 ["thead th", "columnheader"], ["tbody th", "rowheader"], ["td", "cell"]];
  for (const table of document.querySelectorAll("table.stack-table")) {
    for (const [selector, role] of roles) {
      if (selector === "table") { table.setAttribute("role", role); continue; }
      for (const el of table.querySelectorAll(selector)) el.setAttribute("role", role);
    }
  }
}

// Each bar colour has at least 3:1 contrast with the card behind it (WCAG 1.4.11): the
// light theme's SMS orange is darker than the dark theme's (#f28e2b is 2.4:1 on white).
const SERVICE_COLORS = {
  voice: "#4e79a7", sms: "#f28e2b", whatsapp: "#59a14f", number: "#b07aa1", agent_seat: "#e15759",
};
const SERVICE_COLORS_LIGHT = { ...SERVICE_COLORS, sms: "#c2570c" };

function drawChart() {
  const target = document.getElementById("daily-chart");
  const source = document.getElementById("chart-data");
  if (!target || !source || !window.Plotly) return;
  const data = JSON.parse(source.textContent);
  const dark = window.matchMedia("(prefers-color-scheme: dark)").matches;
  const ink = dark ? "#e6edf3" : "#1b1f24";
  const grid = dark ? "#30363d" : "#d0d7de";
  const traces = data.series.map((s) => ({
    type: "bar", name: s.label, x: data.dates, y: s.costs.map(Number), text: s.costs,
    hovertemplate: `%{x}<br>${s.label}: %{text}<extra></extra>`, textposition: "none",
    marker: { color: (dark ? SERVICE_COLORS : SERVICE_COLORS_LIGHT)[s.service] },
  }));
  if (!traces.length) {
    // No usage: zero bars over the chosen dates, so the axis shows the period (plotly's
    // empty chart would show the year 2000).
    traces.push({ type: "bar", x: data.dates, y: data.dates.map(() => 0), showlegend: false,
                  hoverinfo: "skip" });
  }
  const layout = {
    barmode: "stack", paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    font: { color: ink, family: "system-ui, sans-serif" }, margin: { l: 56, r: 8, t: 8, b: 40 },
    legend: { orientation: "h", y: -0.15 }, xaxis: { gridcolor: grid, type: "date" },
    yaxis: { gridcolor: grid, title: { text: `cost (${target.dataset.currency})` }, rangemode: "tozero" }, height: 360,
  };
  // No mode bar: its ten tool buttons sit in the tab order with a focus ring hard to see,
  // cover the bars on a phone, and "share" needs a server this page does not have.
  window.Plotly.newPlot(target, traces, layout, { displayModeBar: false, responsive: true });
}

function loadChart() {
  // plotly.js (~3.5 MB) is fetched and run only after the page's first paint, so the
  // header balance and the tables show at once and the chart follows.
  const target = document.getElementById("daily-chart");
  if (!target || !target.dataset.plotly) return;
  requestAnimationFrame(() => setTimeout(() => {
    const script = document.createElement("script");
    script.src = target.dataset.plotly;
    script.async = true;
    script.addEventListener("load", drawChart);
    document.head.append(script);
  }, 0));
}

document.addEventListener("DOMContentLoaded", () => {
  setUpBreakdown();
  setUpAutosubmit();
  setUpForms();
  keepTableRoles();
  startBalanceStream();
  loadChart();
});
