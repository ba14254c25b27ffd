// The demo page's script: calls the public API as any browser client would, and shows the answer.
// Every URL is relative, so the page works wherever the service is mounted (behind a proxy, under a
// path prefix). Text typed by the user or returned by the API is only ever put in the page with
// textContent and DOM nodes, never parsed as HTML.
"use strict";

(() => {
  // What the page needs to know of the service it asks, not restated here: the served models and their paths
  // (GET models) and the most terms an explanation may list (info.x-limits of GET openapi.json).
  const MODELS_URL = "models";
  const DOCUMENT_URL = "openapi.json";
  const MAIN_PATH = "/"; // the HTTP contract: the main (sentiment) model answers at the root ...
  const RATING_FIELD = "rating"; // ... and the five-class one adds a rating to each answer
  const DEBOUNCE_MS = 250;
  const TABLE_ROWS = 10;
  const MINUS = "\u2212";

  const byId = (id) => document.getElementById(id);
  const box = byId("text");
  const status = byId("status");
  const errorBox = byId("error");
  const result = byId("result");

  class ApiError extends Error {}

  let timer = 0;
  let generation = 0;
  let inFlight = null;

  box.addEventListener("input", () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(update, DEBOUNCE_MS);
  });
  if (box.value.trim()) {
    update();
  }

  let service = null; // the models' relative URLs and the explain-terms limit, read once

  /** The models to ask and how many terms to ask for, read from the service itself on first use. */
  async function discover(signal) {
    if (!service) {
      const [served, described] = await Promise.all([request(MODELS_URL, null, signal), request(DOCUMENT_URL, null, signal)]);
      const models = Object.values(served.models);
      const main = models.find((model) => model.endpoint === MAIN_PATH);
      const rating = models.find((model) => model.index_field === RATING_FIELD);
      if (!main || !rating) {
        throw new ApiError("This service serves no model at / or none that answers with a rating.");
      }
      // Relative to the page (./ and ./ratings), so the page works under a path prefix too.
      service = { main: `.${main.endpoint}`, rating: `.${rating.endpoint}`, explainTerms: described.info["x-limits"].max_explain_terms };
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

  /** Ask both models about the text in the box; show the answers unless newer typing superseded them. */
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
      const { main, rating, explainTerms } = await discover(inFlight.signal);
      const [sentiment, ratings] = await Promise.all([
        request(main, { query, explain: true, explain_terms: explainTerms }, inFlight.signal),
        request(rating, { query }, inFlight.signal),
      ]);
      if (mine === generation) {
        render(query, sentiment, ratings);
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

  function render(query, sentiment, ratings) {
    errorBox.hidden = true;
    errorBox.textContent = "";
    const labels = Object.keys(sentiment.probabilities);
    const [low, high] = [labels[0], labels[labels.length - 1]];
    renderAnswer(sentiment, low, high);
    renderRatings(ratings);
    renderCoverage(sentiment.coverage);
    const towardsHigh = sentiment.explanation.predicted === high ? 1 : -1;
    renderHighlights(query, sentiment.explanation, towardsHigh);
    renderTerms(sentiment.explanation, towardsHigh);
    byId("legend-high").textContent = high;
    byId("legend-low").textContent = low;
    result.hidden = false;
    status.textContent =
      `${sentiment.prediction}, ${percent(sentiment.confidence)} sure. ` +
      `Rating: ${ratings.prediction}, ${percent(ratings.confidence)}.`;
  }

  function renderAnswer(sentiment, low, high) {
    byId("label").textContent = sentiment.prediction;
    byId("label").dataset.label = sentiment.prediction === high ? "high" : "low";
    byId("confidence").textContent = `${percent(sentiment.confidence)} sure`;
    byId("scale-low").textContent = low;
    byId("scale-high").textContent = high;
    const share = sentiment.probabilities[high];
    const bar = byId("bar");
    bar.setAttribute("aria-valuenow", String(Math.round(share * 100)));
    bar.setAttribute("aria-label", `Probability of ${high}`);
    bar.setAttribute("aria-valuetext", `${high} ${percent(share)}`);
    byId("bar-fill").style.width = `${share * 100}%`; // CSSOM, which the page's CSP allows (a style attribute it would not)
  }

  function renderRatings(ratings) {
    byId("rating-label").textContent = ratings.prediction;
    byId("rating-confidence").textContent = percent(ratings.confidence);
    const list = byId("rating-list");
    list.replaceChildren(
      ...Object.entries(ratings.probabilities).map(([label, probability]) => {
        const item = document.createElement("li");
        if (label === ratings.prediction) {
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

  function renderCoverage(coverage) {
    const note = byId("coverage-note");
    const mostlyUnknown = coverage.known_terms * 2 < coverage.terms;
    note.hidden = !mostlyUnknown;
    note.textContent = mostlyUnknown
      ? `The model knows only ${coverage.known_terms} of the ${coverage.terms} terms (words and word pairs) in this ` +
        "text, so this answer says little: it is mostly the model's prior."
      : "";
  }

  /** The text as typed, each known word marked by its contribution and each unknown word flagged. */
  function renderHighlights(query, explanation, towardsHigh) {
    // The API's spans count Unicode code points; JavaScript strings count UTF-16 units, so index code points.
    const characters = Array.from(query);
    const words = [];
    for (const term of explanation.terms) {
      if (!term.term.includes(" ")) {
        for (const [start, end] of term.spans) {
          words.push({ start, end, score: term.contribution * towardsHigh, term: term.term });
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
      nodes.push(wordNode(characters.slice(word.start, word.end).join(""), word, largest));
      at = word.end;
    }
    nodes.push(document.createTextNode(characters.slice(at).join("")));
    byId("highlighted").replaceChildren(...nodes);
  }

  function wordNode(text, word, largest) {
    if (word.score === null) {
      const node = document.createElement("span");
      node.className = "term unknown";
      node.textContent = text;
      node.title = `"${word.term}" is unknown to the model`;
      return node;
    }
    const node = document.createElement("mark");
    const strength = Math.max(1, Math.ceil((Math.abs(word.score) / largest) * 3));
    node.className = `term ${word.score >= 0 ? "towards-high" : "towards-low"} strength-${strength}`;
    node.textContent = text;
    node.dataset.contribution = String(word.score);
    node.title = `"${word.term}": ${signed(word.score)}`;
    return node;
  }

  const signed = (number) => (number < 0 ? MINUS : "+") + Math.abs(number).toFixed(3);

  /** The most decisive terms, signed as the highlights are: + towards the second label, − towards the first. */
  function renderTerms(explanation, towardsHigh) {
    const rows = explanation.terms.slice(0, TABLE_ROWS).map((term) => {
      const row = document.createElement("tr");
      const name = document.createElement("td");
      name.textContent = term.term;
      const value = document.createElement("td");
      value.className = "number";
      value.textContent = signed(term.contribution * towardsHigh);
      const towards = document.createElement("td");
      towards.textContent = term.contribution >= 0 ? explanation.predicted : explanation.runner_up;
      row.append(name, value, towards);
      return row;
    });
    byId("terms").replaceChildren(...rows);
    const rest = explanation.terms.length - rows.length + explanation.terms_omitted.count;
    byId("log-odds").textContent =
      `Contributions are to the log-odds of ${explanation.predicted} over ${explanation.runner_up}: ` +
      `${explanation.log_odds.toFixed(3)} in all, of which the prior ${signed(explanation.prior_difference)}` +
      (rest > 0 ? ` and ${rest} more terms not listed.` : ".");
  }
})();
