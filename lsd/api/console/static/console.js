// The LSD console's only script: confirmation before disabling a key, the feedback form's hint, and a page answering a
// form (a new key's) made a plain visit, so that reloading it does not post the form again. Pages work without it.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
document.addEventListener("DOMContentLoaded", () => {
  if (document.getElementById("new-key")) {
    window.history.replaceState(null, "", window.location.pathname); // a reload asks for the page, creates no key
  }
});
document.addEventListener("DOMContentLoaded", () => {
  const kind = document.getElementById("feedback-kind");
  const metric = document.getElementById("feedback-metric");
  if (!kind || !metric) {
    return;
  }
  const sync = () => {
    const needsMetric = kind.value === "boolean" || kind.value === "float";
    metric.disabled = !needsMetric;
    for (const option of metric.options) {
      option.hidden = needsMetric && option.dataset.type !== kind.value;
    }
    const visible = Array.from(metric.options).find((o) => !o.hidden);
    if (needsMetric && metric.selectedOptions[0] && metric.selectedOptions[0].hidden && visible) {
      metric.value = visible.value;
    }
  };
  kind.addEventListener("change", sync);
  sync();
});
