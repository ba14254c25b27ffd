// The demo page's script: calls the public API as any browser client would, and shows the answer.
// Every URL is relative, so the page works wherever the service is mounted (behind a proxy, under a
// path prefix). Text typed by the user or returned by the API is only ever put in the page with
// textContent and DOM nodes, never parsed as HTML.
//
// One sign convention everywhere, the API's: a term's contribution is positive when it pushed towards the answer
// (the explanation's `predicted`) and negative when it pushed towards the runner-up; the table, the highlights and
// the footnote show the API's numbers as they are.
"use strict";

(() => {
  // What the page needs to know of the service it asks, not restated here: the served models and their paths
  // (GET models) and each model's limits, such as the most terms an explanation may list (the x-limits of its path
  // in GET openapi.json).
  const MODELS_URL = "models";
  const DOCUMENT_URL = "openapi.json";
  const MAIN_PATH = "/"; // the HTTP contract: the main model answers at the root, so the picker starts there
  const DEBOUNCE_MS = 250;
  const TABLE_ROWS = 10;
  const MINUS = "\u2212";

  const byId = (id) => document.getElementById(id);
  const box = byId("text");
  const picker = byId("model");
  const status = byId("status");
  const errorBox = byId("error");
  const result = byId("result");

  class ApiError extends Error {}

  let timer = 0;
  let generation = 0;
  let inFlight = null;
  let service = null; // the served models, by relative URL, with their limits: read once

  box.addEventListener("input", () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(update, DEBOUNCE_MS);
  });
  picker.addEventListener("change", update);
  discover(undefined).then(
    () => {
      if (box.value.trim()) {
        update();
      }
    },
    (failure) => showError(failure instanceof ApiError ? failure.message : `Could not reach the service (${failure.message}).`),
  );

  /** The served models, each with its path relative to the page and its own limits, read from the service on first use. */
  async function discover(signal) {
    if (!service) {
      const [served, described] = await Promise.all([request(MODELS_URL, null, signal), request(DOCUMENT_URL, null, signal)]);
      const models = Object.entries(served.models).map(([name, model]) => ({
        name,
        url: `.${model.endpoint}`, // relative to the page (./ and ./ratings), so the page works under a path prefix too
        family: model.family,
        limits: (described.paths[model.endpoint] || {})["x-limits"] || described.info["x-limits"],
        main: model.endpoint === MAIN_PATH,
      }));
      if (!models.length) {
        throw new ApiError("This service serves no model.");
      }
      models.sort((a, b) => Number(b.main) - Number(a.main) || a.name.localeCompare(b.name));
      picker.replaceChildren(
        ...models.map((model) => {
          const option = document.createElement("option");
          option.value = model.url;
          option.textContent = `${model.name} (${model.family === "naive_bayes" ? "naive Bayes" : "linear"})`;
          return option;
        }),
      );
      service = new Map(models.map((model) => [model.url, model]));
    }
    return service;
  }

  /** GET (no body) or POST a JSON body; the answer's JSON, or an ApiError carrying the API's own message. */
  async function request(url, body, signal) {
    const response = await fetch(url, {
      method: body === null ? "GET" : "POST",
      headers: body === null ? { Accept: "application/json" } : { "Content-Type": "application/json", Accept: "application/json" },
      body: body === null ? undefined : JSON.stringify(body),
      signal,
    });
    let answer = null;
    try {
      answer = await response.json();
    } catch {
      answer = null;
    }
    if (!response.ok) {
      const message = answer && typeof answer.message === "string" ? answer.message : `The service answered ${response.status}.`;
      throw new ApiError(message);
    }
    return answer;
  }

  /** Ask the chosen model about the text in the box; show the answer unless newer typing superseded it. */
  async function update() {
    const query = box.value;
    const mine = ++generation;
    if (inFlight) {
      inFlight.abort();
    }
    if (!query.trim()) {
      inFlight = null;
      clear();
      return;
    }
    inFlight = new AbortController();
    result.setAttribute("aria-busy", "true");
    try {
      const models = await discover(inFlight.signal);
      const model = models.get(picker.value) || models.values().next().value;
      const answer = await request(
        model.url,
        { query, explain: true, explain_terms: model.limits.max_explain_terms },
        inFlight.signal,
      );
      if (mine === generation) {
        render(query, model, answer);
      }
    } catch (failure) {
      if (mine === generation && failure.name !== "AbortError") {
        showError(failure instanceof ApiError ? failure.message : `Could not reach the service (${failure.message}).`);
      }
    } finally {
      if (mine === generation) {
        result.removeAttribute("aria-busy");
      }
    }
  }

  function clear() {
    result.hidden = true;
    errorBox.hidden = true;
    errorBox.textContent = "";
    status.textContent = "";
  }

  function showError(message) {
    result.hidden = true;
    errorBox.textContent = message;
    errorBox.hidden = false;
    status.textContent = "";
  }

  const percent = (probability) => `${Math.round(probability * 100)}%`;

  /** True when no term of the text counted: the answer is the model's prior and nothing else. */
  const priorOnly = (explanation) => explanation.terms.length === 0 && explanation.terms_omitted.count === 0;

  function render(query, model, answer) {
    errorBox.hidden = true;
    errorBox.textContent = "";
    const explanation = answer.explanation;
    renderAnswer(answer, explanation);
    renderLabels(answer);
    renderCoverage(answer.coverage, explanation);
    renderHighlights(query, explanation);
    renderTerms(model, explanation);
    byId("legend-answer").textContent = explanation.predicted;
    byId("legend-other").textContent = explanation.runner_up;
    result.hidden = false;
    status.textContent = priorOnly(explanation)
      ? `Only the prior: nothing in the text is known to ${model.name}. ${answer.prediction}, ${percent(answer.confidence)}.`
      : `${answer.prediction}, ${percent(answer.confidence)} sure (${model.name}).`;
  }

  function renderAnswer(answer, explanation) {
    const labels = Object.keys(answer.probabilities);
    const [low, high] = [labels[0], labels[labels.length - 1]];
    const prior = byId("prior-only");
    prior.hidden = !priorOnly(explanation);
    prior.textContent = prior.hidden ? "" : "Only the prior: the model knows nothing in this text, so it answers as it would any text.";
    byId("label").textContent = answer.prediction;
    byId("label").dataset.label = answer.prediction === high ? "high" : answer.prediction === low ? "low" : "middle";
    byId("confidence").textContent = prior.hidden ? `${percent(answer.confidence)} sure` : `${percent(answer.confidence)}, the prior alone`;
    // A scale of two ends for two labels: each end holds its own label's share (the last label's fill grows from the
    // right end). More labels are in the list of every label instead.
    const scale = byId("scale");
    scale.hidden = labels.length !== 2;
    byId("scale-low").textContent = low;
    byId("scale-high").textContent = high;
    const share = answer.probabilities[high];
    const bar = byId("bar");
    bar.setAttribute("aria-valuenow", String(Math.round(share * 100)));
    bar.setAttribute("aria-label", `Probability of ${high}`);
    bar.setAttribute("aria-valuetext", `${high} ${percent(share)}, ${low} ${percent(1 - share)}`);
    byId("bar-fill").style.width = `${share * 100}%`; // CSSOM, which the page's CSP allows (a style attribute it would not)
  }

  function renderLabels(answer) {
    const list = byId("rating-list");
    list.replaceChildren(
      ...Object.entries(answer.probabilities).map(([label, probability]) => {
        const item = document.createElement("li");
        if (label === answer.prediction) {
          item.className = "chosen";
        }
        const name = document.createElement("span");
        name.className = "rating-name";
        name.textContent = label;
        const bar = document.createElement("span");
        bar.className = "rating-bar";
        bar.setAttribute("aria-hidden", "true");
        const fill = document.createElement("span");
        fill.className = "rating-fill";
        fill.style.width = `${probability * 100}%`;
        bar.append(fill);
        const value = document.createElement("span");
        value.className = "rating-value";
        value.textContent = percent(probability);
        item.append(name, bar, value);
        return item;
      }),
    );
  }

  function renderCoverage(coverage, explanation) {
    const note = byId("coverage-note");
    const mostlyUnknown = !priorOnly(explanation) && coverage.known_terms * 2 < coverage.terms;
    note.hidden = !mostlyUnknown;
    note.textContent = mostlyUnknown
      ? `The model knows only ${coverage.known_terms} of the ${coverage.terms} terms (words and word pairs) in this ` +
        "text, so this answer says little: it is mostly the model's prior."
      : "";
  }

  /** The text as typed, each known word marked by its contribution and each unknown word flagged. */
  function renderHighlights(query, explanation) {
    // The API's spans count Unicode code points; JavaScript strings count UTF-16 units, so index code points.
    const characters = Array.from(query);
    const words = [];
    for (const term of explanation.terms) {
      if (!term.term.includes(" ")) {
        for (const [start, end] of term.spans) {
          words.push({ start, end, score: term.contribution, term: term.term });
        }
      }
    }
    for (const term of explanation.unknown_terms) {
      if (!term.term.includes(" ")) {
        for (const [start, end] of term.spans) {
          words.push({ start, end, score: null, term: term.term });
        }
      }
    }
    words.sort((a, b) => a.start - b.start);
    const largest = Math.max(1e-9, ...words.filter((w) => w.score !== null).map((w) => Math.abs(w.score)));
    const nodes = [];
    let at = 0;
    for (const word of words) {
      if (word.start < at) {
        continue; // words never overlap; kept safe anyway
      }
      nodes.push(document.createTextNode(characters.slice(at, word.start).join("")));
      nodes.push(wordNode(characters.slice(word.start, word.end).join(""), word, largest, explanation));
      at = word.end;
    }
    nodes.push(document.createTextNode(characters.slice(at).join("")));
    byId("highlighted").replaceChildren(...nodes);
  }

  function wordNode(text, word, largest, explanation) {
    if (word.score === null) {
      const node = document.createElement("span");
      node.className = "term unknown";
      node.textContent = text;
      node.title = `"${word.term}" is unknown to the model`;
      return node;
    }
    const node = document.createElement("mark");
    const strength = Math.max(1, Math.ceil((Math.abs(word.score) / largest) * 3));
    node.className = `term ${word.score >= 0 ? "towards-answer" : "towards-other"} strength-${strength}`;
    node.textContent = text;
    node.dataset.contribution = String(word.score);
    node.dataset.sign = word.score >= 0 ? "+" : MINUS;
    node.title = `"${word.term}": ${signed(word.score)}, towards ${word.score >= 0 ? explanation.predicted : explanation.runner_up}`;
    return node;
  }

  const signed = (number) => (number < 0 ? MINUS : "+") + Math.abs(number).toFixed(3);

  /** The most decisive terms, as the API gives them: + towards the answer, − towards the runner-up. */
  function renderTerms(model, explanation) {
    const rows = explanation.terms.slice(0, TABLE_ROWS).map((term) => {
      const row = document.createElement("tr");
      const name = document.createElement("td");
      name.textContent = term.term;
      const value = document.createElement("td");
      value.className = "number";
      value.textContent = signed(term.contribution);
      const towards = document.createElement("td");
      towards.textContent = term.contribution >= 0 ? explanation.predicted : explanation.runner_up;
      row.append(name, value, towards);
      return row;
    });
    byId("terms").replaceChildren(...rows);
    const rest = explanation.terms.length - rows.length + explanation.terms_omitted.count;
    const scale =
      model.family === "naive_bayes"
        ? "naive Bayes' log-odds (joint log-likelihoods)"
        : "the linear model's score (logit) difference";
    const prior = model.family === "naive_bayes" ? "the prior" : "the intercepts";
    byId("log-odds").textContent =
      `Contributions add up to ${scale} of ${explanation.predicted} over ${explanation.runner_up}: ` +
      `${signed(explanation.log_odds)} in all, of which ${prior} ${signed(explanation.prior_difference)}` +
      (rest > 0 ? ` and ${rest} more terms not listed.` : ".") +
      ` Positive numbers pushed towards ${explanation.predicted}, negative ones towards ${explanation.runner_up}.`;
  }
})();
