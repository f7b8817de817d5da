// The script: the user's own text, or "write it for me" (topic, length, tone, emotion,
// audience), disabled with the reason when the server has no script writer.

import { api, describe } from "./api.js";
import { $, setText } from "./dom.js";

function source() {
  return $("input[name=script-source]:checked").value;
}

function prompt() {
  return {
    topic: $("#prompt-topic").value.trim(),
    duration_minutes: Number($("#prompt-duration").value) || 0.5,
    tone: $("#tone").value,
    emotion: $("#emotion").value,
    audience: $("#prompt-audience").value.trim(),
  };
}

export function setupScript() {
  const promptRadio = $("#script-source-prompt");
  const textGroup = $("#script-text-group");
  const promptGroup = $("#prompt-group");
  const textarea = $("#script-text");
  let writerAvailable = true;

  function showSource() {
    const usePrompt = source() === "prompt";
    textGroup.hidden = usePrompt;
    promptGroup.hidden = !usePrompt;
  }

  function countWords() {
    const words = textarea.value.trim().split(/\s+/).filter(Boolean).length;
    // About 150 spoken words a minute.
    setText($("#script-count"), words ? `${words} words, about ${Math.max(1, Math.round((words / 150) * 60))} s of speech.` : "");
  }

  for (const radio of document.querySelectorAll("input[name=script-source]")) radio.addEventListener("change", showSource);
  textarea.addEventListener("input", countWords);

  $("#prompt-generate").addEventListener("click", async () => {
    const error = $("#prompt-error");
    setText(error, "");
    const body = prompt();
    if (!body.topic) {
      setText(error, "Enter a topic first.");
      $("#prompt-topic").focus();
      return;
    }
    const button = $("#prompt-generate");
    button.disabled = true;
    setText(button, "Writing…");
    try {
      /** @type {import("./api-types").components["schemas"]["GeneratedScript"]} */
      const result = await api("POST", "/v1/scripts/generate", { body });
      textarea.value = result.text;
      $("input[name=script-source][value=text]").checked = true;
      showSource();
      countWords();
      textarea.focus();
    } catch (failure) {
      setText(error, describe(failure));
    } finally {
      button.disabled = !writerAvailable;
      setText(button, "Write a draft now");
    }
  });

  showSource();

  return {
    /** Enables or disables "write it for me" (with the reason shown). */
    setWriter({ available, reason }) {
      writerAvailable = available;
      promptRadio.disabled = !available;
      $("#prompt-generate").disabled = !available;
      const notice = $("#prompt-disabled");
      notice.hidden = available;
      setText(notice, reason);
      const label = promptRadio.closest("label");
      label.title = available ? "" : reason;
      if (!available && source() === "prompt") {
        $("input[name=script-source][value=text]").checked = true;
        showSource();
      }
      // The reason stays visible next to the choice even while the text mode is shown.
      let hint = $("#prompt-unavailable");
      if (!hint) {
        hint = document.createElement("p");
        hint.id = "prompt-unavailable";
        hint.className = "hint";
        promptRadio.closest("fieldset").append(hint);
      }
      setText(hint, available ? "" : reason);
      promptRadio.setAttribute("aria-describedby", "prompt-unavailable");
    },
    /** The job's script and style fields, or an error message when something is missing. */
    jobBody() {
      const style = { emotion: $("#emotion").value, tone: $("#tone").value };
      if (source() === "prompt") {
        const body = prompt();
        if (!body.topic) return { error: "Enter a topic for the script." };
        return { body: { script_prompt: body, ...style } };
      }
      const text = textarea.value.trim();
      if (!text) return { error: "Write a script first (or choose “Write it for me”)." };
      return { body: { script_text: text, ...style } };
    },
  };
}
