// The capabilities panel: the processing mode and which stage backends are real.

import { api, describe } from "./api.js";
import { $, el, setText } from "./dom.js";

/** @typedef {import("./api-types").components["schemas"]} Schemas */

/**
 * Whether a backend is the Gemini script writer (a remote API at the script stage).
 * @param {Schemas["Backend"]} backend
 */
export function isScriptWriter(backend) {
  return backend.stage === "script" && backend.kind === "api";
}

/**
 * {available, reason} of "write it for me", from the capabilities.
 * @param {Schemas["Capabilities"]} capabilities
 */
export function scriptWriterStatus(capabilities) {
  const writers = capabilities.backends.filter(isScriptWriter);
  const usable = writers.find((backend) => backend.available);
  if (usable) return { available: true, reason: "" };
  const reason = writers.length && writers[0].reason ? writers[0].reason : "no script writer is configured";
  return { available: false, reason: `Writing scripts for you is unavailable on this server: ${reason}.` };
}

/** @param {Schemas["Capabilities"]} capabilities */
export function renderCapabilities(capabilities) {
  const mode = capabilities.mode;
  const backends = capabilities.backends;
  const real = backends.filter((b) => b.available && b.kind !== "simulation");
  const ready = capabilities.production_ready ? "ready for production" : "not production-ready";
  const gpu = capabilities.gpu_available ? `GPU: ${capabilities.gpu_name || "yes"}` : "no GPU";
  const summary = $("#caps-summary");
  summary.dataset.mode = mode;
  setText(summary, `Mode: ${mode}. ${real.length} of ${backends.length} backends are real and available; ${ready}; ${gpu}.`);
  const rows = backends.map((backend) =>
    el(
      "tr",
      { "data-available": backend.available ? "yes" : "no" },
      el("td", { text: backend.stage }),
      el("td", { text: backend.name }),
      el("td", { text: backend.kind }),
      el("td", { text: backend.available ? "yes" : "no" }),
      el("td", { text: backend.reason || "" }),
    ),
  );
  $("#caps-table tbody").replaceChildren(...rows);
  const missing = capabilities.missing.map((text) => el("li", { text: `Missing for production: ${text}` }));
  $("#caps-missing").replaceChildren(...missing);
}

/**
 * Loads and shows the capabilities; returns them (null when they could not be loaded).
 * @returns {Promise<Schemas["Capabilities"] | null>}
 */
export async function loadCapabilities() {
  const summary = $("#caps-summary");
  try {
    /** @type {Schemas["Capabilities"]} */
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
