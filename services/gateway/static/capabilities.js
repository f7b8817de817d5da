// The capabilities panel: the processing mode and which stage backends are real.

import { api, describe } from "./api.js";
import { $, el, setText } from "./dom.js";

const lower = (value) => String(value || "").toLowerCase();

/** Whether a backend is the Gemini script writer (a remote API at the script stage). */
export function isScriptWriter(backend) {
  return lower(backend.stage).includes("script") && (lower(backend.kind).includes("api") || lower(backend.name).includes("gemini"));
}

/** {available, reason} of "write it for me", from the capabilities. */
export function scriptWriterStatus(capabilities) {
  const writers = ((capabilities && capabilities.backends) || []).filter(isScriptWriter);
  const usable = writers.find((backend) => backend.available);
  if (usable) return { available: true, reason: "" };
  const reason = writers.length && writers[0].reason ? writers[0].reason : "no script writer is configured";
  return { available: false, reason: `Writing scripts for you is unavailable on this server: ${reason}.` };
}

export function renderCapabilities(capabilities) {
  const mode = lower(capabilities.mode).replace("processing_mode_", "") || "unknown";
  const backends = capabilities.backends || [];
  const real = backends.filter((b) => b.available && !lower(b.kind).includes("simulation"));
  const ready = capabilities.production_ready ? "ready for production" : "not production-ready";
  const gpu = capabilities.gpu_available ? `GPU: ${capabilities.gpu_name || "yes"}` : "no GPU";
  const summary = $("#caps-summary");
  summary.dataset.mode = mode;
  setText(summary, `Mode: ${mode}. ${real.length} of ${backends.length} backends are real and available; ${ready}; ${gpu}.`);
  const rows = backends.map((backend) =>
    el(
      "tr",
      { "data-available": backend.available ? "yes" : "no" },
      el("td", { text: lower(backend.stage).replace("stage_", "") }),
      el("td", { text: backend.name }),
      el("td", { text: lower(backend.kind).replace("backend_kind_", "") }),
      el("td", { text: backend.available ? "yes" : "no" }),
      el("td", { text: backend.reason || "" }),
    ),
  );
  $("#caps-table tbody").replaceChildren(...rows);
  const missing = (capabilities.missing || []).map((text) => el("li", { text: `Missing for production: ${text}` }));
  $("#caps-missing").replaceChildren(...missing);
}

/** Loads and shows the capabilities; returns them (null when they could not be loaded). */
export async function loadCapabilities() {
  const summary = $("#caps-summary");
  try {
    const capabilities = await api("GET", "/v1/capabilities");
    summary.dataset.code = "";
    renderCapabilities(capabilities);
    return capabilities;
  } catch (error) {
    summary.dataset.code = error.code || "";
    summary.dataset.mode = "";
    setText(summary, `Could not load the capabilities: ${describe(error)}`);
    return null;
  }
}
