// One job on the page: Start, live per-stage progress, Cancel, and the result.

import { api, describe, fetchBlob } from "./api.js";
import { $, el, formatPercent, formatSeconds, randomKey, setText } from "./dom.js";
import { ProgressStream } from "./events.js";

/** @typedef {import("./api-types").components["schemas"]} Schemas */
/** @typedef {Schemas["Job"]} Job */

const STAGES = ["script", "voice", "face", "animate", "enhance", "assemble"];
const STAGE_LABELS = {
  script: "Script",
  voice: "Voice",
  face: "Face",
  animate: "Animation and lip sync",
  enhance: "Enhancement",
  assemble: "Final video",
};
const STATE_WORDS = {
  queued: "Waiting in the queue",
  running: "Working",
  completed: "Done: your video is ready",
  failed: "The job failed",
  cancelled: "Cancelled",
};
/** @type {Record<Schemas["OutputName"], string>} */
const OUTPUT_FILES = {
  video: "video.mp4",
  thumbnail: "thumbnail.jpg",
  audio: "audio.wav",
  script: "script.txt",
  captions: "captions.vtt",
  captions_srt: "captions.srt",
};

function stageItem(name) {
  const id = `stage-${name}`;
  return el(
    "li",
    { id, className: "stage", "data-stage": name, "data-status": "pending" },
    el("label", { for: `${id}-bar`, text: STAGE_LABELS[name] || name }),
    el("progress", { id: `${id}-bar`, max: "100", value: "0" }),
    el("span", { className: "percent", text: "0%" }),
    el("span", { className: "stage-note" }),
  );
}

export class JobView {
  constructor({ onFinished }) {
    this.onFinished = onFinished;
    /** @type {Job | null} */
    this.job = null;
    /** @type {ProgressStream | null} */
    this.stream = null;
    this.blobUrls = [];
    this.panel = $("#job-panel");
    this.cancelButton = $("#cancel");
    this.cancelButton.addEventListener("click", () => this.cancel());
  }

  /**
   * Starts a job in `sessionId` with `spec` (the POST body).
   * @param {string} sessionId
   * @param {Schemas["ScriptTextJob"] | Schemas["ScriptPromptJob"]} spec
   */
  async start(sessionId, spec) {
    this.clear();
    /** @type {Job} */
    const job = await api("POST", `/v1/sessions/${sessionId}/jobs`, {
      body: spec,
      headers: { "Idempotency-Key": randomKey() },
    });
    await this.attach(sessionId, job);
    return job;
  }

  /**
   * Shows `job` and follows its events (replayed from the start, then live).
   * @param {string} sessionId
   * @param {Job} job
   */
  async attach(sessionId, job) {
    this.clear();
    this.job = job;
    this.panel.hidden = false;
    this.panel.dataset.jobId = job.job_id;
    const stages = job.stages.map((s) => s.stage);
    $("#stage-list").replaceChildren(...(stages.length ? stages : STAGES).map(stageItem));
    for (const stage of job.stages) this.applyStage(stage.stage, stage.status, stage.percent, stage.backend);
    this.applyJob(job.state, job.overall_percent, job.eta_seconds, job.queue_position);
    this.cancelButton.disabled = false;
    this.stream = new ProgressStream({
      sessionId,
      jobId: job.job_id,
      onEvent: (event) => this.onEvent(event),
      onStatus: (text, state) => this.showStreamStatus(text, state),
    });
    await this.stream.open();
  }

  /** The stream's state in words, plus its counters as data attributes (support and tests read them). */
  showStreamStatus(text, state) {
    const status = $("#stream-status");
    setText(status, text);
    status.dataset.state = state;
    const stream = this.stream || {};
    for (const name of ["reconnects", "reopens", "applied", "gaps"]) status.dataset[name] = String(stream[name] || 0);
  }

  clear() {
    if (this.stream) this.stream.close();
    this.stream = null;
    for (const url of this.blobUrls) URL.revokeObjectURL(url);
    this.blobUrls = [];
    $("#result").hidden = true;
    $("#downloads").replaceChildren();
    $("#result-video").removeAttribute("src");
    $("#overall-progress").value = 0;
    setText($("#overall-percent"), "0%");
    setText($("#start-error"), "");
    setText($("#stream-status"), "");
  }

  applyJob(state, overall, eta, queuePosition) {
    const panel = this.panel;
    if (state) panel.dataset.state = state;
    if (overall !== undefined && overall !== null) {
      // Never moves backwards (a cancelled or replayed event may carry less).
      const value = Math.max(Number($("#overall-progress").value), Number(overall));
      $("#overall-progress").value = value;
      setText($("#overall-percent"), formatPercent(value));
    }
    const words = STATE_WORDS[panel.dataset.state] || "";
    setText($("#job-status"), `${words}${words ? "." : ""}`);
    const etaText = formatSeconds(Number(eta));
    setText($("#job-eta"), etaText && !["completed", "failed", "cancelled"].includes(panel.dataset.state) ? `About ${etaText} left.` : "");
    setText($("#job-queue"), queuePosition ? `Position in the queue: ${queuePosition}.` : "");
  }

  applyStage(name, status, percent, backend) {
    const item = $(`#stage-${name}`);
    if (!item) return;
    if (status) item.dataset.status = status;
    if (percent !== undefined && percent !== null) {
      const value = Math.max(Number(item.querySelector("progress").value), Number(percent));
      item.querySelector("progress").value = value;
      setText(item.querySelector(".percent"), formatPercent(value));
    }
    if (backend) setText(item.querySelector(".stage-note"), backend);
  }

  /** @param {Schemas["ProgressEvent"]} event */
  onEvent(event) {
    const type = event.type;
    if (event.stage) {
      if (type === "stage.started") this.applyStage(event.stage, "running", event.stage_percent, event.backend);
      if (type === "stage.progress") this.applyStage(event.stage, "running", event.stage_percent, event.backend);
      if (type === "stage.completed") this.applyStage(event.stage, "completed", 100, event.backend);
      if (type === "stage.failed") this.applyStage(event.stage, "failed", null, event.backend);
    }
    const states = {
      "job.queued": "queued",
      "job.started": "running",
      "job.completed": "completed",
      "job.failed": "failed",
      "job.cancelled": "cancelled",
    };
    const overall = type === "job.completed" ? 100 : event.overall_percent;
    this.applyJob(states[type] || (type.startsWith("stage.") ? "running" : null), overall, event.eta_seconds, event.queue_position);
    if (type === "job.failed" || type === "stage.failed" || type === "warning") {
      const detail = (event.error && event.error.message) || event.message;
      if (detail) setText($("#start-error"), type === "warning" ? `Note: ${detail}` : detail);
    }
    if (states[type] && ["completed", "failed", "cancelled"].includes(states[type])) this.finish(states[type]);
  }

  async cancel() {
    if (!this.job) return;
    this.cancelButton.disabled = true;
    try {
      const job = await api("POST", `/v1/jobs/${this.job.job_id}/cancel`);
      if (job && job.state === "cancelled") this.finish("cancelled");
    } catch (error) {
      setText($("#start-error"), describe(error));
      this.cancelButton.disabled = false;
    }
  }

  async finish(state) {
    if (this.panel.dataset.finished === this.job.job_id) return;
    this.panel.dataset.finished = this.job.job_id;
    this.applyJob(state, state === "completed" ? 100 : undefined, 0, 0);
    if (this.stream) this.stream.close(state === "completed" ? "The job has finished." : `The job was ${state}.`);
    this.cancelButton.disabled = true;
    if (state !== "completed") {
      // Stages that never got to finish say so instead of looking busy.
      for (const item of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll("#stage-list .stage"))) {
        if (item.dataset.status === "running") item.dataset.status = state === "failed" ? "failed" : "cancelled";
        else if (item.dataset.status === "pending") item.dataset.status = "not-run";
      }
    }
    if (state === "completed") await this.showResult();
    this.onFinished(state);
  }

  async showResult() {
    const jobId = this.job.job_id;
    try {
      /** @type {Job} */
      const job = await api("GET", `/v1/jobs/${jobId}`);
      const outputs = job.outputs;
      const downloads = $("#downloads");
      const byName = {};
      for (const output of outputs) {
        const blob = await fetchBlob(`/v1/jobs/${jobId}/outputs/${encodeURIComponent(output.name)}`);
        const url = URL.createObjectURL(blob);
        this.blobUrls.push(url);
        byName[output.name] = url;
        const fileName = `${jobId}-${OUTPUT_FILES[output.name] || output.name}`;
        downloads.append(el("li", {}, el("a", { href: url, download: fileName, text: `Download ${output.name}` })));
      }
      if (byName.video) $("#result-video").src = byName.video;
      const thumbnail = $("#result-thumbnail");
      thumbnail.hidden = !byName.thumbnail;
      if (byName.thumbnail) thumbnail.src = byName.thumbnail;
      $("#result").hidden = false;
    } catch (error) {
      setText($("#start-error"), `The video is ready but could not be loaded: ${describe(error)}`);
    }
  }
}
