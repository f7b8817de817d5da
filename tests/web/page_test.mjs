// Drives the gateway's web page in Debian's chromium through playwright-core (no browser
// download). Run by tests/web/test_page.py against a real `vidsynth up` mesh.
//
// Environment: BASE_URL, API_KEY, FACE_FILE, VOICE_FILE, BAD_FILE (a text file named .jpg),
// ARTIFACTS (screenshot dir), USER_DATA_DIR (fresh), GATEWAY_PID (optional: SIGKILLed
// mid-job to prove the progress stream resumes), CHROMIUM (default /usr/bin/chromium),
// TRUSTED_SPKI (optional, for an https BASE_URL: the base64 SHA-256 of the server
// certificate's public key, the one certificate chromium accepts besides public ones).
// Prints one JSON line `RESULT {...}` with what it observed; exits non-zero on failure.

import { strict as assert } from "node:assert";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { chromium } from "playwright-core";

const env = process.env;
const BASE_URL = env.BASE_URL;
const ARTIFACTS = env.ARTIFACTS;
const STEP_TIMEOUT = 60_000;
const result = { steps: [] };

function step(name, facts = {}) {
  result.steps.push({ name, ...facts });
  console.log(`[page_test] ${name} ${JSON.stringify(facts)}`);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Records every value the overall and stage <progress> bars take (value reflects to the attribute). */
async function watchProgress(page) {
  await page.evaluate(() => {
    window.__progressSeen = [];
    window.__queueSeen = [];
    const queue = document.querySelector("#job-queue");
    new MutationObserver(() => queue.textContent && window.__queueSeen.push(queue.textContent)).observe(queue, {
      childList: true,
      characterData: true,
      subtree: true,
    });
    const panel = document.querySelector("#job-panel");
    const observer = new MutationObserver((mutations) => {
      for (const mutation of mutations) {
        const target = mutation.target;
        if (target.tagName === "PROGRESS" && mutation.attributeName === "value") {
          window.__progressSeen.push({ id: target.id, value: Number(target.value) });
        }
      }
    });
    observer.observe(panel, { attributes: true, subtree: true, attributeFilter: ["value"] });
  });
}

async function uploadAndExpectReport(page, kind, file) {
  await page.setInputFiles(`#${kind}-file`, file);
  await page.waitForSelector(`#picker-${kind} .report .ok`, { timeout: STEP_TIMEOUT });
  const bar = await page.$eval(`#picker-${kind} .upload-progress`, (node) => Number(node.value));
  assert.equal(bar, 100, `${kind} upload bar should end at 100`);
  const facts = await page.$$eval(`#picker-${kind} .report dd`, (nodes) => nodes.map((n) => n.textContent));
  assert.ok(facts.length > 0, `${kind} report lists facts`);
  step(`uploaded ${kind}`, { report: facts });
}

/** Another user's job, started over the API, so the page's job has to queue behind it. */
async function startBlockingJob() {
  const headers = { Authorization: `Bearer ${env.OTHER_API_KEY}` };
  const call = async (method, url, body, extra = {}) => {
    const response = await fetch(BASE_URL + url, { method, headers: { ...headers, ...extra }, body });
    const text = await response.text();
    assert.ok(response.ok, `${method} ${url}: ${response.status} ${text}`);
    return JSON.parse(text);
  };
  const session = await call("POST", "/v1/sessions", "{}", { "Content-Type": "application/json" });
  for (const [kind, file] of [["face", env.FACE_FILE], ["voice", env.VOICE_FILE]]) {
    const form = new FormData();
    form.append("file", new Blob([await readFile(file)]), path.basename(file));
    await call("POST", `/v1/sessions/${session.session_id}/assets/${kind}`, form);
  }
  const body = JSON.stringify({ script_text: "I am the job that keeps the runner busy for a while." });
  const job = await call("POST", `/v1/sessions/${session.session_id}/jobs`, body, { "Content-Type": "application/json" });
  return { job_id: job.job_id, state: job.state };
}

async function waitForJobState(page, states, timeout = 120_000) {
  await page.waitForFunction(
    (wanted) => wanted.includes(document.querySelector("#job-panel").dataset.state),
    states,
    { timeout },
  );
  return page.$eval("#job-panel", (node) => node.dataset.state);
}

async function main() {
  const context = await chromium.launchPersistentContext(env.USER_DATA_DIR, {
    executablePath: env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      ...(env.TRUSTED_SPKI ? [`--ignore-certificate-errors-spki-list=${env.TRUSTED_SPKI}`] : []),
    ],
    viewport: { width: 1200, height: 900 },
  });
  const problems = [];
  const page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    // Refused requests (the deliberate bad upload, the killed gateway) log network errors; scripts must not throw.
    if (message.type() === "error" && !/Failed to load resource|net::ERR_|EventSource/.test(message.text())) {
      problems.push(`console: ${message.text()}`);
    }
  });
  try {
    await page.addInitScript(() =>
      document.addEventListener("securitypolicyviolation", (e) => (window.__csp = (window.__csp || []).concat(e.violatedDirective))),
    );
    const response = await page.goto(BASE_URL + "/", { waitUntil: "load" });
    assert.equal(response.status(), 200);
    assert.match(response.headers()["content-security-policy"], /script-src 'self'/);
    const protocol = await page.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
    step("page loaded", { protocol, secure: await page.evaluate(() => window.isSecureContext) });

    // A wrong key: the server's refusal is shown in plain words.
    await page.fill("#api-key", "not-a-real-key");
    await page.press("#api-key", "Enter");
    await page.waitForFunction(() => /Could not load/.test(document.querySelector("#caps-summary").textContent), null, {
      timeout: STEP_TIMEOUT,
    });
    const wrongKey = await page.textContent("#caps-summary");
    assert.ok(!/\{|HTTP_/.test(wrongKey), `plain words for a wrong key: ${wrongKey}`);
    step("wrong key refused", { text: wrongKey, keyStatus: await page.textContent("#key-status") });

    // The API key: by default kept for this tab only (sessionStorage: it survives a reload,
    // not a new tab); "Remember on this device" keeps it in localStorage.
    const storedKeys = (target) =>
      target.evaluate(() => ({
        session: sessionStorage.getItem("vidsynth.apiKey"),
        local: localStorage.getItem("vidsynth.apiKey"),
        status: document.querySelector("#key-status").textContent,
        remember: document.querySelector("#key-remember").checked,
      }));
    const capsShown = (target) =>
      target.waitForFunction(() => document.querySelector("#caps-summary").dataset.mode, null, { timeout: STEP_TIMEOUT });
    assert.equal(await page.isChecked("#key-remember"), false, "remembering is opt-in");
    await page.fill("#api-key", env.API_KEY);
    await page.press("#api-key", "Enter");
    await capsShown(page);
    await page.reload({ waitUntil: "load" });
    await capsShown(page);
    const tabOnly = await storedKeys(page);
    assert.deepEqual([tabOnly.session, tabOnly.local], [env.API_KEY, null], "the key stays in the tab");
    const otherTab = await context.newPage();
    await otherTab.goto(BASE_URL + "/", { waitUntil: "load" });
    const inOtherTab = await storedKeys(otherTab);
    assert.deepEqual([inOtherTab.session, inOtherTab.local], [null, null], "a new tab has no key");
    await otherTab.close();
    await page.check("#key-remember");
    await page.fill("#api-key", env.API_KEY);
    await page.press("#api-key", "Enter");
    await capsShown(page);
    const remembered = await storedKeys(page);
    assert.deepEqual([remembered.session, remembered.local], [null, env.API_KEY], "remembered on the device");
    const laterTab = await context.newPage();
    await laterTab.goto(BASE_URL + "/", { waitUntil: "load" });
    await capsShown(laterTab);
    const inLaterTab = await storedKeys(laterTab);
    await laterTab.close();
    assert.equal(inLaterTab.local, env.API_KEY);
    assert.ok(inLaterTab.remember, "the checkbox shows the key is remembered");
    step("key storage", { tabOnly, inOtherTab, remembered, inLaterTab: { status: inLaterTab.status } });
    const caps = await page.$eval("#caps-summary", (node) => ({ mode: node.dataset.mode, text: node.textContent }));
    const backendRows = await page.$$eval("#caps-table tbody tr", (rows) => rows.length);
    assert.ok(backendRows > 0, "capabilities list the backends");
    const writer = await page.$eval("#script-source-prompt", (node) => ({
      disabled: node.disabled,
      reason: document.querySelector("#prompt-unavailable")?.textContent || "",
    }));
    if (writer.disabled) assert.match(writer.reason, /unavailable/, "a disabled script writer says why");
    const accept = await page.$eval("#face-file", (node) => node.accept);
    step("key saved, capabilities shown", { caps, backendRows, writer, faceAccept: accept });

    // Too large: refused in the browser from the policy's limit, before any byte is sent.
    const uploadsSent = [];
    page.on("request", (request) => request.method() === "POST" && request.url().includes("/assets/") && uploadsSent.push(request.url()));
    await page.setInputFiles("#face-file", env.BIG_FILE);
    await page.waitForFunction(() => document.querySelector("#face-error").textContent.trim(), null, { timeout: STEP_TIMEOUT });
    const tooBig = await page.textContent("#face-error");
    assert.match(tooBig, /largest accepted/);
    assert.deepEqual(uploadsSent, [], "an oversized file is never uploaded");
    step("oversized file refused in the browser", { text: tooBig });

    // A refused upload: a text file named .jpg passes the browser's checks; the server says why.
    await page.setInputFiles("#face-file", env.BAD_FILE);
    await page.waitForFunction(() => document.querySelector("#face-error").textContent.trim(), null, { timeout: STEP_TIMEOUT });
    const refusal = await page.$eval("#face-error", (node) => ({ text: node.textContent, code: node.dataset.code }));
    assert.ok(refusal.code && refusal.code !== "NETWORK", `refusal carries a catalog code: ${JSON.stringify(refusal)}`);
    assert.ok(!/^\s*\{/.test(refusal.text) && !/HTTP_\d/.test(refusal.text), "the refusal is plain words");
    step("refused upload shown", refusal);
    await shot(page, "01-refused-upload");

    await uploadAndExpectReport(page, "face", env.FACE_FILE);
    await uploadAndExpectReport(page, "voice", env.VOICE_FILE);
    await shot(page, "02-uploaded");

    // Keyboard: Tab reaches the controls and the focus ring is visible.
    await page.focus("#script-text");
    await page.keyboard.type("Hello from the browser test. This video was made by vidsynth in simulation mode.");
    await page.keyboard.press("Tab");
    const focusStyle = await page.evaluate(() => {
      const active = document.activeElement;
      return { id: active.id || active.name, outline: getComputedStyle(active).outlineStyle };
    });
    assert.notEqual(focusStyle.outline, "none", "focused control shows an outline");
    step("keyboard focus visible", focusStyle);

    // Job 1 waits behind another user's job (one job runs at a time), then runs with live
    // progress while the gateway is killed, and ends with a playable video.
    const blocker = await startBlockingJob();
    step("another user's job occupies the runner", blocker);
    await watchProgress(page);
    await page.click("#start");
    await page.waitForSelector("#job-panel:not([hidden])", { timeout: STEP_TIMEOUT });
    let killedAt = null;
    if (env.GATEWAY_PID) {
      // Wait until a media stage is under way, so the drop cuts a live stream of progress.
      await page.waitForFunction(
        () =>
          [...document.querySelectorAll("#stage-list .stage")].some(
            (item) => item.dataset.stage !== "script" && Number(item.querySelector("progress").value) > 0,
          ) || document.querySelector("#job-panel").dataset.finished,
        null,
        { timeout: 120_000 },
      );
      const finishedBeforeKill = await page.$eval("#job-panel", (node) => Boolean(node.dataset.finished));
      if (!finishedBeforeKill) {
        await shot(page, "03-progress");
        process.kill(Number(env.GATEWAY_PID), "SIGKILL");
        killedAt = await page.$eval("#overall-progress", (node) => Number(node.value));
        assert.ok(killedAt < 100, "the gateway died before the job ended");
        step("gateway killed mid-job", { overallAtKill: killedAt });
      }
    }
    const finalState = await waitForJobState(page, ["completed", "failed", "cancelled"], 180_000);
    assert.equal(finalState, "completed", `job 1 ended ${finalState}: ${await page.textContent("#start-error")}`);
    const seen = await page.evaluate(() => window.__progressSeen);
    const overall = seen.filter((s) => s.id === "overall-progress").map((s) => s.value);
    const stageBars = new Set(seen.filter((s) => s.id.startsWith("stage-")).map((s) => s.id));
    assert.ok(overall.length >= 3, `overall bar moved several times: ${overall}`);
    assert.ok(overall.some((v) => v > 0 && v < 100), "overall bar showed intermediate values");
    for (let i = 1; i < overall.length; i += 1) assert.ok(overall[i] >= overall[i - 1] - 0.01, "overall never goes back");
    const stages = await page.$$eval("#stage-list .stage", (items) =>
      items.map((item) => ({ stage: item.dataset.stage, status: item.dataset.status, value: Number(item.querySelector("progress").value) })),
    );
    const queueSeen = await page.evaluate(() => window.__queueSeen);
    assert.ok(queueSeen.some((text) => /Position in the queue: \d+/.test(text)), `queue position shown: ${queueSeen}`);
    const stream = await page.$eval("#stream-status", (node) => ({
      reconnects: Number(node.dataset.reconnects || 0),
      reopenedWithNewToken: Number(node.dataset.reopens || 0),
      eventsApplied: Number(node.dataset.applied || 0),
      gaps: Number(node.dataset.gaps || 0),
      text: node.textContent,
    }));
    if (killedAt !== null) assert.ok(stream.reconnects >= 1, "the stream reconnected after the gateway died");
    assert.equal(stream.gaps, 0, "no event was lost across reconnects");
    step("job 1 completed", { queueSeen: [...new Set(queueSeen)], overallSteps: overall.length, stageBarsMoved: stageBars.size, stages, stream });

    await page.waitForSelector("#result:not([hidden])", { timeout: STEP_TIMEOUT });
    await page.waitForFunction(() => document.querySelector("#result-video").readyState >= 1, null, { timeout: STEP_TIMEOUT });
    const video = await page.evaluate(async () => {
      const node = document.querySelector("#result-video");
      node.muted = true;
      let played = false;
      try {
        await node.play();
        await new Promise((resolve) => setTimeout(resolve, 400));
        played = node.currentTime > 0;
        node.pause();
      } catch (error) {
        played = `play failed: ${error.message}`;
      }
      return {
        readyState: node.readyState,
        duration: node.duration,
        width: node.videoWidth,
        height: node.videoHeight,
        played,
        error: node.error ? node.error.code : null,
      };
    });
    assert.ok(video.duration > 0 && Number.isFinite(video.duration), `video has a duration: ${JSON.stringify(video)}`);
    assert.ok(video.width > 0 && video.height > 0, "video has frames");
    assert.equal(video.error, null);
    const thumbnail = await page.$eval("#result-thumbnail", (node) => ({ complete: node.complete, width: node.naturalWidth }));
    const downloads = await page.$$eval("#downloads a", (links) => links.map((a) => ({ text: a.textContent, download: a.download, blob: a.href.startsWith("blob:") })));
    assert.ok(downloads.some((d) => /video/.test(d.text) && d.blob), "a video download link");
    step("video playable", { video, thumbnail, downloads });
    await page.evaluate(() => document.querySelector("#result-video").scrollIntoView());
    await shot(page, "04-completed");

    // Job 2: start, then cancel while it runs.
    const firstJobId = await page.$eval("#job-panel", (node) => node.dataset.jobId);
    await page.click("#start");
    await page.waitForFunction((previous) => document.querySelector("#job-panel").dataset.jobId !== previous, firstJobId, {
      timeout: STEP_TIMEOUT,
    });
    await page.waitForFunction(() => !document.querySelector("#cancel").disabled, null, { timeout: STEP_TIMEOUT });
    await page.click("#cancel");
    const cancelled = await waitForJobState(page, ["completed", "failed", "cancelled"], 120_000);
    assert.equal(cancelled, "cancelled", "job 2 was cancelled");
    const cancelStatus = await page.textContent("#job-status");
    const cancelledStages = await page.$$eval("#stage-list .stage", (items) => items.map((item) => item.dataset.status));
    assert.ok(!cancelledStages.includes("running"), `no stage still shows as running: ${cancelledStages}`);
    const cancelledOverall = await page.$eval("#overall-progress", (node) => Number(node.value));
    assert.ok(cancelledOverall < 100, `a cancelled job does not show 100% (${cancelledOverall})`);
    step("job 2 cancelled", { status: cancelStatus, stages: cancelledStages });
    await shot(page, "05-cancelled");

    // Phone width: nothing wider than the viewport.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.evaluate(() => window.scrollTo(0, 0));
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `no horizontal scrolling at 390px (overflow ${overflow}px)`);
    step("phone width fits", { overflow });
    await shot(page, "06-phone-390");

    const csp = await page.evaluate(() => window.__csp || []);
    assert.deepEqual(csp, [], "no Content-Security-Policy violations");
    assert.deepEqual(problems, [], "no script errors");
    result.ok = true;
  } catch (error) {
    result.ok = false;
    result.error = String(error && error.stack ? error.stack : error);
    result.problems = problems;
    await shot(page, "99-failure").catch(() => {});
  } finally {
    await context.close();
  }
  console.log("RESULT " + JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}

main();
