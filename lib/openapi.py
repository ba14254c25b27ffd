"""OpenAPI 3 description of the whole service, built from the served models, and Swagger UI served locally.

``document(settings, models)`` writes the description from the registry's manifests (each model's path,
labels and an example answer computed by the model itself) and the configured limits; ``lib/docs.py``
serves it at ``/openapi.json``, rebuilt whenever a reload changes the models, with Swagger UI at ``/docs``.

Why hand-written: no maintained library lets one definition drive both validation and this document
under Flask-RESTful while keeping the contract. flask-smorest, flask-openapi3 and flask-restx need their
own routing (resources added with ``Api.add_resource`` never reach their documents; flask-restx writes
only Swagger 2.0); spectree and flask-pydantic-spec validate query, form and JSON as separate models, so
"``query`` in the URL, a form or a JSON body" cannot be said; all of them fix their models at import and
answer 422 in their own error shape, while our labels and limits are known only at run time and errors
must name ``queries[i]`` with 400 or 413. So the validators in ``lib/parsing.py`` stay the definition, and
this module states their contract once, in the fewest schemas that keep it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from lib import demo, docs
from lib.answers import shape_answers
from lib.headers import MODEL_VERSION_HEADER, REQUEST_ID_HEADER
from lib.limits import limits, reads_characters
from lib.observability import REQUEST_ID_PATTERN
from lib.registry import ServedModel, component
from lib.settings import MAX_EXPLAIN_TERMS, MAX_URL_BYTES, Settings

OPENAPI_VERSION = "3.0.3"  # Swagger UI 4 (the bundled version) renders 3.0, not 3.1
EXAMPLE_TEXT = "that movie was boring"  # each model's example answer is its real answer to this
Schema = dict[str, Any]


def ref(kind: str, name: str) -> Schema:
    """Point at a component, so each shape is written once."""
    return {"$ref": f"#/components/{kind}/{name}"}


def json_content(schema: Schema, example: Any = None) -> Schema:
    """Wrap a schema as an application/json body (every API answer and error is JSON)."""
    media: Schema = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def response(description: str, content: Schema | None = None, headers: Schema | None = None) -> Schema:
    """A response object that always documents X-Request-ID: every answer carries it."""
    result: Schema = {"description": description, "headers": {REQUEST_ID_HEADER: ref("headers", "XRequestID"), **(headers or {})}}
    if content is not None:
        result["content"] = content
    return result


# --- schemas ----------------------------------------------------------------------------------


def text_schema(max_chars: int, description: str) -> Schema:
    """A text to classify: non-blank, at most MAX_QUERY_CHARS characters (longer ones get 413, not 400)."""
    return {"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": r"\S", "description": description}


def probabilities_schema(labels: tuple[str, ...]) -> Schema:
    """Every label's probability: an object keyed by exactly the model's labels."""
    return {
        "type": "object",
        "description": "Probability of every label, rounded to 3 decimals.",
        "properties": {label: {"type": "number", "minimum": 0, "maximum": 1} for label in labels},
        "required": list(labels),
        "additionalProperties": False,
    }


def prediction_schema(served: ServedModel) -> Schema:
    """One prediction as ``lib.answers.shape_answers`` shapes it, with this model's labels."""
    labels = served.labels
    properties: Schema = {"prediction": {"type": "string", "enum": list(labels), "description": "The most probable label."}}
    if served.index_field:
        properties[served.index_field] = {
            "type": "integer",
            "minimum": 0,
            "maximum": len(labels) - 1,
            "description": f"Index of the predicted label in `prediction`'s enum (the labels' order): 0 to {len(labels) - 1}.",
        }
    calibration = (
        "calibrated on held-out sentences (temperature scaling), so of the answers given with confidence p about a "
        "share p were right in validation"
        if served.model.inverse_temperature_ is not None
        else "this model's own probability, not calibrated"
    )
    properties["confidence"] = {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "description": f"Probability of the predicted label, rounded to 3 decimals: {calibration}.",
    }
    properties["probabilities"] = probabilities_schema(labels)
    character = reads_characters(served.model)
    properties["coverage"] = {
        "type": "object",
        "description": (
            "How much of the text the model knew: the text's terms (words and word pairs) that it has weights for, "
            "of all its terms. "
            + (
                "This model also reads character n-grams, so a word it does not know may still count through them: "
                "the answer is the intercepts alone only when its explanation lists no term."
                if character
                else "0 known terms means the answer is the class prior alone."
            )
        ),
        "properties": {"known_terms": {"type": "integer", "minimum": 0}, "terms": {"type": "integer", "minimum": 0}},
        "required": ["known_terms", "terms"],
        "additionalProperties": False,
    }
    properties["model_version"] = model_version_schema()
    required = list(properties)
    properties["explanation"] = ref("schemas", f"{component(served.name)}Explanation")
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def explanation_meaning(served: ServedModel) -> dict[str, str]:
    """What an explanation's numbers are for this model's family: naive Bayes' log-probabilities, or a linear model's
    coefficients and logits; and how they relate to the answer's probabilities (calibrated, if the model is)."""
    model = served.model
    character = reads_characters(model)
    beta = model.inverse_temperature_
    calibrated = (
        f" The answer's probabilities are calibrated (temperature scaling, inverse temperature {beta:.3g}): "
        f"log(P(`predicted`) / P(`runner_up`)) is about {beta:.3g} * `log_odds`."
        if beta is not None
        else " The answer's probabilities are its softmax: log(P(`predicted`) / P(`runner_up`)) = `log_odds`."
    )
    words = (
        " The model also reads character n-grams (within words): each one's contribution is added to the word it lies "
        "in, so a word is one term whose contribution covers its n-grams and the word itself."
        if character
        else ""
    )
    if model.family == "naive_bayes":
        return {
            "description": (
                "Why naive Bayes chose `predicted` over `runner_up` (the most likely other label): each distinct known term "
                "contributes `weight * (log P(term | predicted) - log P(term | runner_up))`, and `prior_difference` plus "
                "every contribution (listed, and `terms_omitted`) equals `log_odds`, the joint log-likelihood of "
                "`predicted` minus that of `runner_up`. Positive contributions pushed towards `predicted`, negative ones "
                f"towards `runner_up`.{calibrated}{words}"
            ),
            "log_odds": "Joint log-likelihood of `predicted` minus that of `runner_up`.",
            "prior_difference": "log P(predicted) - log P(runner_up), the part no term decides.",
            "weight": "The term's TF-IDF weight in this text.",
        }
    return {
        "description": (
            "Why this linear model chose `predicted` over `runner_up` (the most likely other label): its score for a "
            "label is its intercept plus the sum of each feature's TF-IDF weight times the label's coefficient, so each "
            "distinct known term contributes `weight * (coefficient for predicted - coefficient for runner_up)`, and "
            "`prior_difference` plus every contribution (listed, and `terms_omitted`) equals `log_odds`, the score "
            "(logit) of `predicted` minus that of `runner_up`. Positive contributions pushed towards `predicted`, "
            f"negative ones towards `runner_up`. The numbers are coefficients and logits, not log-probabilities.{calibrated}"
            f"{words}"
        ),
        "log_odds": "Score (logit) of `predicted` minus that of `runner_up`: intercepts plus weighted coefficients.",
        "prior_difference": "Intercept of `predicted` minus that of `runner_up`, the part no term decides.",
        "weight": "The TF-IDF weight in this text of the features the term stands for, added up.",
    }


def explanation_schema(served: ServedModel) -> Schema:
    """What ``explain=true`` adds: the terms that decided the label, exactly, with their places in the text."""
    meaning = explanation_meaning(served)
    span = {
        "type": "array",
        "items": {"type": "integer", "minimum": 0},
        "minItems": 2,
        "description": "Two numbers: [start, end) of one occurrence, in characters of the text as sent (not lower-cased).",
    }
    spans = {"type": "array", "items": span, "description": "Where the term occurs; a word pair spans both words."}
    count = {"type": "integer", "minimum": 1, "description": "How many times the term occurs in the text."}
    number = {"type": "number"}
    label = {"type": "string", "enum": list(served.labels)}
    return {
        "type": "object",
        "description": meaning["description"],
        "properties": {
            "predicted": {**label, "description": "The answer's label."},
            "runner_up": {**label, "description": "The most likely other label."},
            "log_odds": {**number, "description": meaning["log_odds"]},
            "prior_difference": {**number, "description": meaning["prior_difference"]},
            "terms": {
                "type": "array",
                "description": "The `explain_terms` known terms with the largest absolute contribution, largest first.",
                "items": {
                    "type": "object",
                    "properties": {
                        "term": {"type": "string", "description": "A word or word pair, as the model spells it (lower case)."},
                        "contribution": number,
                        "weight": {**number, "minimum": 0, "description": meaning["weight"]},
                        "count": count,
                        "spans": spans,
                    },
                    "required": ["term", "contribution", "weight", "count", "spans"],
                    "additionalProperties": False,
                },
            },
            "terms_omitted": {
                "type": "object",
                "description": "The known terms not listed: how many, and their summed contribution.",
                "properties": {"count": {"type": "integer", "minimum": 0}, "contribution": number},
                "required": ["count", "contribution"],
                "additionalProperties": False,
            },
            "unknown_terms": {
                "type": "array",
                "description": (
                    "The first `explain_terms` terms of the text the model has no weight for (they count for nothing), "
                    "in text order."
                ),
                "items": {
                    "type": "object",
                    "properties": {"term": {"type": "string"}, "count": count, "spans": spans},
                    "required": ["term", "count", "spans"],
                    "additionalProperties": False,
                },
            },
            "unknown_terms_omitted": {"type": "integer", "minimum": 0, "description": "Unknown terms beyond those listed."},
        },
        "required": [
            "predicted",
            "runner_up",
            "log_odds",
            "prior_difference",
            "terms",
            "terms_omitted",
            "unknown_terms",
            "unknown_terms_omitted",
        ],
        "additionalProperties": False,
    }


def explain_properties() -> Schema:
    """``explain`` and ``explain_terms``, as a URL, a form or a JSON body may carry them."""
    return {
        "explain": {
            "type": "boolean",
            "description": "true adds an `explanation` to each answer. In a URL or form: true, false, 1 or 0, in any case.",
        },
        "explain_terms": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_EXPLAIN_TERMS,
            "description": (
                f"How many known terms (and unknown ones) an explanation lists, 1 to {MAX_EXPLAIN_TERMS}; "
                "without it, the service's EXPLAIN_TERMS. Read only with `explain`."
            ),
        },
    }


def model_version_schema() -> Schema:
    """The version of the model that answered: a hash of its files and labels, new with any change."""
    return {"type": "string", "description": f"Version of the model that answered (also in the {MODEL_VERSION_HEADER} header)."}


def batch_answer_schema(item: str, max_batch: int) -> Schema:
    """A batch's answer: one prediction per query, in input order."""
    return {
        "type": "object",
        "properties": {
            "model_version": model_version_schema(),
            "predictions": {"type": "array", "items": ref("schemas", item), "minItems": 1, "maxItems": max_batch},
        },
        "required": ["model_version", "predictions"],
        "additionalProperties": False,
    }


def query_body_schema(max_chars: int) -> Schema:
    """A JSON body with one ``query``; a body that also has ``queries`` is a batch instead."""
    return {
        "type": "object",
        "description": 'One text to classify. Other keys are ignored, except "queries", which makes the body a batch (POST).',
        "properties": {"query": text_schema(max_chars, "The text to classify."), **explain_properties()},
        "required": ["query"],
        "not": {"required": ["queries"]},
    }


def batch_body_schema(max_chars: int, max_batch: int) -> Schema:
    """A JSON batch ``{"queries": [...]}``; other keys (even ``query``) are ignored."""
    return {
        "type": "object",
        "description": 'Several texts to classify at once. Other keys, "query" included, are ignored.',
        "properties": {
            "queries": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_batch,
                "items": text_schema(max_chars, "One text to classify."),
                "description": f"1 to {max_batch:,} texts; more gives 413, an empty array 400.",
            },
            **explain_properties(),
        },
        "required": ["queries"],
    }


def form_body_schema(max_chars: int) -> Schema:
    """A form body with ``query``, as curl -d query=... sends it."""
    return {
        "type": "object",
        "properties": {"query": text_schema(max_chars, "The text to classify."), **explain_properties()},
        "required": ["query"],
    }


def manifest_schema(endpoints: list[str]) -> Schema:
    """A model's manifest as /models serves it; open-ended, since the build may add fields."""
    string = {"type": "string"}
    return {
        "type": "object",
        "description": "The model's manifest.json, plus the URL path that serves the model.",
        "properties": {
            "endpoint": {"type": "string", "enum": endpoints, "description": "URL path serving this model."},
            "format": {"type": "integer", "description": "Manifest format number."},
            "name": string,
            "version": {"type": "string", "description": "Content-derived version, e.g. sentiment-3f2a9c1b7d4e."},
            "labels": {"type": "array", "items": string, "description": "Label names in class order."},
            "files": {"type": "object", "additionalProperties": string, "description": "SHA-256 of each artifact file."},
            "sklearn_version": string,
            "python_version": string,
            "data": {"type": "object", "description": "Training data: file name, SHA-256, row counts."},
            "params": {"type": "object", "description": "Vectorizer and classifier parameters."},
            "metrics": {"type": "object", "description": "Validation metrics on held-out phrases and sentences."},
            "limits": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
                "description": "What one request to this model may carry and cost, named as `info.x-limits` names them.",
            },
        },
        "required": ["endpoint", "format", "name", "version", "labels", "files", "sklearn_version", "limits"],
        "additionalProperties": True,
    }


def versions_schema() -> Schema:
    """Model name -> version of the loaded model."""
    return {"type": "object", "additionalProperties": {"type": "string"}, "example": {"sentiment": "sentiment-8e574b0832e6"}}


def degraded_schema() -> Schema:
    """What works less well while the service still serves: for now, metrics that cannot be written to their folder."""
    return {
        "type": "object",
        "description": "Present only when something is degraded; requests are still answered as usual.",
        "properties": {
            "metrics": {
                "type": "object",
                "description": "Writes to the metrics folder fail: the values they carried are missing from /metrics.",
                "properties": {
                    "folder": {"type": "string"},
                    "error": {"type": "string", "description": "The first failure: what was written, and the OS error."},
                    "failed_writes": {"type": "integer", "minimum": 1},
                },
                "required": ["folder", "error", "failed_writes"],
                "additionalProperties": False,
            }
        },
        "additionalProperties": False,
    }


def schemas(settings: Settings, models: list[ServedModel]) -> Schema:
    """Every component schema, with the configured limits and each model's labels."""
    per_model: Schema = {}
    for served in models:
        name = component(served.name)
        per_model[f"{name}Prediction"] = prediction_schema(served)
        per_model[f"{name}Batch"] = batch_answer_schema(f"{name}Prediction", settings.max_batch)
        per_model[f"{name}Explanation"] = explanation_schema(served)
    return {
        "Error": {
            "type": "object",
            "description": "The one error shape, for every status (400, 404, 405, 413, 500, ...).",
            "properties": {"message": {"type": "string", "description": "What was wrong, in words meant for the caller."}},
            "required": ["message"],
            "additionalProperties": False,
        },
        **per_model,
        "QueryBody": query_body_schema(settings.max_query_chars),
        "BatchBody": batch_body_schema(settings.max_query_chars, settings.max_batch),
        "QueryForm": form_body_schema(settings.max_query_chars),
        "Health": {
            "type": "object",
            "properties": {"status": {"type": "string", "enum": ["ok"]}},
            "required": ["status"],
            "additionalProperties": False,
        },
        "Ready": {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": ["ready", "draining"]},
                "models": versions_schema(),
                "degraded": degraded_schema(),
            },
            "required": ["status", "models"],
            "additionalProperties": False,
        },
        "Manifest": manifest_schema([served.endpoint for served in models]),
        "Models": {
            "type": "object",
            "properties": {"models": {"type": "object", "additionalProperties": ref("schemas", "Manifest")}},
            "required": ["models"],
            "additionalProperties": False,
        },
    }


# --- parameters, bodies, responses ------------------------------------------------------------


def parameters(settings: Settings) -> Schema:
    """The URL ``query`` and the optional X-Request-ID header."""
    return {
        "Query": {
            "name": "query",
            "in": "query",
            "required": False,
            "description": (
                "The text to classify (GET; POST takes its text in the body). Required unless a GET's body carries it "
                "(form or JSON `query`); when both do, the URL wins. Blank gives 400, longer than "
                f"{settings.max_query_chars:,} characters 413."
            ),
            "schema": text_schema(settings.max_query_chars, "The text to classify."),
            "example": EXAMPLE_TEXT,
        },
        "Explain": {
            "name": "explain",
            "in": "query",
            "required": False,
            "description": (
                "true adds an `explanation` to the answer (each answer, for a batch): the terms that decided the label, "
                "exactly, with where they are in the text. Also read from a form or JSON body; the URL wins. "
                "true, false, 1 or 0, in any case; anything else gives 400. Explaining costs far more than scoring, so "
                f"a request may explain at most {settings.max_explain_texts:,} texts of "
                f"{settings.max_explain_chars:,} characters in all, listing at most {settings.max_explained_terms:,} "
                "terms (texts times `explain_terms`); beyond any of them, 413."
            ),
            "schema": explain_properties()["explain"],
        },
        "ExplainTerms": {
            "name": "explain_terms",
            "in": "query",
            "required": False,
            "description": (
                f"With `explain`: how many known terms (and unknown ones) to list, 1 to {MAX_EXPLAIN_TERMS}, the most "
                "decisive first; otherwise 400. Without it, the service's EXPLAIN_TERMS. Also read from a body."
            ),
            "schema": explain_properties()["explain_terms"],
        },
        "XRequestID": {
            "name": REQUEST_ID_HEADER,
            "in": "header",
            "required": False,
            "description": (
                "Your id for this call, echoed in the response and stamped on the server's log lines. "
                "A value not matching the pattern is not rejected: it is replaced by a generated id."
            ),
            "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN},
        },
    }


def request_bodies(settings: Settings) -> Schema:
    """The POST body: a batch, or one query in a JSON or form body."""
    limit = f"Bodies over {settings.max_body_bytes:,} bytes get 413."
    form = {"schema": ref("schemas", "QueryForm")}
    forms = {"application/x-www-form-urlencoded": form, "multipart/form-data": form}
    return {
        "QueryOrBatch": {
            "required": True,
            "description": (
                'A JSON batch `{"queries": [...]}` (answered with `predictions`, in input order), or one `query` '
                "in a JSON or form body. The text goes in the body only: a POST with `query` in the URL as well gets "
                f"400. {limit}"
            ),
            "content": {
                "application/json": {
                    "schema": {"oneOf": [ref("schemas", "BatchBody"), ref("schemas", "QueryBody")]},
                    "examples": {
                        "batch": {
                            "summary": "A batch: answered with predictions, in input order",
                            "value": {"queries": ["That was pretty entertaining", EXAMPLE_TEXT]},
                        },
                        "single": {"summary": "One text: answered as GET answers", "value": {"query": EXAMPLE_TEXT}},
                    },
                },
                **forms,
            },
        },
    }


def responses(settings: Settings) -> Schema:
    """Error responses shared by the operations; all are the Error shape."""
    error = json_content(ref("schemas", "Error"))
    return {
        "BadRequest": response(
            "`query` missing or blank; not a string; malformed JSON; a JSON body that is not an object; "
            "`queries` not a non-empty array of non-blank strings (the message names the index, e.g. `'queries[3]'`); "
            "a URL or body that is not valid UTF-8; a POST with `query` in the URL and a body.",
            error,
        ),
        "TooLarge": response(
            f"A query longer than {settings.max_query_chars:,} characters, a batch of more than {settings.max_batch:,} "
            f"queries, a body larger than {settings.max_body_bytes:,} bytes, texts of more than "
            f"{settings.max_request_chars:,} characters in all, or with `explain` more than {settings.max_explain_texts:,} "
            f"texts, {settings.max_explain_chars:,} characters or {settings.max_explained_terms:,} listed terms (texts times "
            "`explain_terms`); the message states the limit and names it as "
            "`info.x-limits` does.",
            error,
        ),
        "Timeout": response(
            "The request body stopped arriving: the client went away mid-body, "
            "or (behind the deployed nginx) sent nothing for its client_body_timeout (deploy/nginx.conf).",
            error,
        ),
        "UriTooLong": response(
            f"The request line is over the production server's {MAX_URL_BYTES:,}-byte limit: send long texts in a body.", error
        ),
        "NotFound": response("No such path (or asset).", error),
        "MethodNotAllowed": response(
            "A method not listed for this path; the Allow header lists those that are.",
            error,
            {"Allow": {"description": "The allowed methods, e.g. `GET, HEAD, OPTIONS`.", "schema": {"type": "string"}}},
        ),
        "InternalError": response("Anything unexpected; logged with the request id, never a stack trace.", error),
    }


def headers() -> Schema:
    """The X-Request-ID response header on every answer, and X-Model-Version on predictions."""
    return {
        "XRequestID": {
            "description": f"The caller's {REQUEST_ID_HEADER} when it matches the pattern, else a generated one (32 hex digits).",
            "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN},
        },
        "XModelVersion": {"description": "Version of the model that answered, as in the body.", "schema": {"type": "string"}},
    }


# --- operations -------------------------------------------------------------------------------


def operation(summary: str, tag: str, operation_id: str, answers: Schema, **extra: Any) -> Schema:
    """An operation taking the optional X-Request-ID header; every one may answer 500."""
    params = [*extra.pop("parameters", []), ref("parameters", "XRequestID")]
    return {
        "tags": [tag],
        "summary": summary,
        "operationId": operation_id,
        "parameters": params,
        **extra,
        "responses": {**answers, "500": ref("responses", "InternalError")},
    }


def prediction_path(served: ServedModel, settings: Settings) -> Schema:
    """GET and POST on one model's path: a single query, or (POST) a batch."""
    name, labels = component(served.name), served.labels
    single, batch = f"{name}Prediction", f"{name}Batch"
    what = f"as {' or '.join(labels)}" if len(labels) == 2 else f"as one of: {', '.join(labels)}"
    probabilities, known, terms = served.model.score_one(EXAMPLE_TEXT)
    example = shape_answers(served, probabilities, np.array([known, terms]))[0]
    version = {MODEL_VERSION_HEADER: ref("headers", "XModelVersion")}
    errors = {
        "400": ref("responses", "BadRequest"),
        "408": ref("responses", "Timeout"),
        "413": ref("responses", "TooLarge"),
        "414": ref("responses", "UriTooLong"),
    }
    return {
        "x-limits": served.limits,
        "get": operation(
            f"Classify one text {what}",
            "predictions",
            f"{served.name}_get",
            {"200": response("The prediction.", json_content(ref("schemas", single), example), version), **errors},
            parameters=[ref("parameters", "Query"), ref("parameters", "Explain"), ref("parameters", "ExplainTerms")],
            description=(
                "`query` in the URL. The same `query` is also read from a form or JSON body, which is what "
                "`curl -X GET URL -d query=text` sends; browsers cannot send a body with GET, so use POST for bodies. "
                f"Bodies over {settings.max_body_bytes:,} bytes get 413.{own_budgets(served, settings)}"
            ),
        ),
        "post": operation(
            f"Classify one text or a batch {what}",
            "predictions",
            f"{served.name}_post",
            {
                "200": response(
                    "A single prediction for `query`, or `predictions` for a batch.",
                    json_content({"oneOf": [ref("schemas", single), ref("schemas", batch)]}, example),
                    version,
                ),
                **errors,
            },
            parameters=[ref("parameters", "Explain"), ref("parameters", "ExplainTerms")],
            requestBody=ref("requestBodies", "QueryOrBatch"),
            description=f"This path's `x-limits` are the limits this model holds a request to.{own_budgets(served, settings)}",
        ),
    }


def own_budgets(served: ServedModel, settings: Settings) -> str:
    """A sentence naming the budgets in which this model differs from the service's, or nothing."""
    mine, service = served.limits, limits(settings)
    differ = [f"{name} {value:,} (the service's: {service[name]:,})" for name, value in mine.items() if value != service[name]]
    if not differ:
        return ""
    return (
        " Its text analysis costs more per character (character n-grams), so it has smaller budgets: "
        f"{', '.join(differ)}; beyond them, 413 naming the budget."
    )


def plain_get(operation_id: str, tag: str, summary: str, ok: str, content: Schema, **answers: Schema) -> Schema:
    """A path with only GET, answering 200 with ``content`` (and any other ``answers``, keyed by status)."""
    return {"get": operation(summary, tag, operation_id, {"200": response(ok, content), **answers})}


def paths(settings: Settings, models: list[ServedModel]) -> Schema:
    """Every route the app serves (besides HEAD and OPTIONS, which Flask adds)."""
    text = {"schema": {"type": "string"}}
    ready = json_content(ref("schemas", "Ready"))
    asset = operation(
        "A Swagger UI asset (script, style sheet, icon)",
        "documentation",
        "docs_asset",
        {
            "200": response(
                f"The file, cacheable for {docs.ASSET_MAX_AGE // 60} minutes.",
                {media: {"schema": {"type": "string", "format": "binary"}} for media in sorted(set(docs.ASSETS.values()))},
                {"Cache-Control": {"schema": {"type": "string"}, "example": f"public, max-age={docs.ASSET_MAX_AGE}"}},
            ),
            "304": response("Not modified since the copy the client holds (ETag or Last-Modified)."),
            "404": ref("responses", "NotFound"),
        },
        parameters=[
            {"name": "filename", "in": "path", "required": True, "schema": {"type": "string", "enum": list(docs.ASSETS)}}
        ],
    )
    demo_asset = operation(
        "The demo page's script or style sheet",
        "documentation",
        "demo_asset",
        {
            "200": response(
                "The file, revalidated by ETag (Cache-Control: no-cache).",
                {media: {"schema": {"type": "string"}} for media in sorted(set(demo.ASSETS.values()))},
            ),
            "304": response("Not modified since the copy the client holds (ETag or Last-Modified)."),
            "404": ref("responses", "NotFound"),
        },
        parameters=[
            {"name": "filename", "in": "path", "required": True, "schema": {"type": "string", "enum": list(demo.ASSETS)}}
        ],
    )
    return {
        **{served.endpoint: prediction_path(served, settings) for served in models},
        "/health": plain_get(
            "health", "operations", "Liveness: the process answers", "Alive.", json_content(ref("schemas", "Health"))
        ),
        "/ready": plain_get(
            "ready",
            "operations",
            "Readiness: whether to send traffic here",
            "Serving; the versions of the loaded models.",
            ready,
            **{"503": response("Draining for a graceful shutdown: send no new traffic.", ready)},
        ),
        "/models": plain_get(
            "models",
            "operations",
            "Each served model's manifest",
            "Versions, labels, parameters, training data hash and validation metrics.",
            json_content(ref("schemas", "Models")),
        ),
        "/metrics": plain_get(
            "metrics",
            "operations",
            "Prometheus metrics: requests and latencies by route, predictions by model and label, model versions",
            "Prometheus text exposition format.",
            {"text/plain": text},
        ),
        "/openapi.json": plain_get(
            "openapi", "documentation", "This OpenAPI document", "The OpenAPI 3 description.", json_content({"type": "object"})
        ),
        "/docs": plain_get(
            "docs",
            "documentation",
            "Swagger UI for this document",
            "An HTML page whose assets come from /docs/.",
            {"text/html": text},
        ),
        "/docs/{filename}": {"get": asset},
        "/demo": plain_get(
            "demo",
            "documentation",
            "A demo page: pick a served model, type a sentence, see its answer and the words that decided it",
            "A static HTML page that calls this API (`explain=true`) with relative URLs, so it works under a path prefix. "
            "Its Content-Security-Policy admits only this service's own script, style sheet and API.",
            {"text/html": text},
        ),
        "/demo/{filename}": {"get": demo_asset},
    }


def description(settings: Settings, models: list[ServedModel]) -> str:
    """The human summary at the top of the document: models, inputs, limits, errors.

    Markdown, which Swagger UI renders as HTML: only names of the safe charset go in (a model's name and path, in code
    spans), never a label, which may be any printable text. Labels are in the schemas' enums, which are shown as text.
    """
    served = "; ".join(f"`{model.endpoint}` serves `{model.name}`" for model in models)
    return (
        f"Classify movie-review text. Models: {served}; each one's labels are the `prediction` enum of its schema.\n\n"
        '`query` may come in the URL, a form body or a JSON body `{"query": "..."}`; for `GET` the URL wins if several '
        "are present, while `POST` takes its text in the body only (400 with `query` in the URL as well). `POST` also "
        'takes a batch `{"queries": [...]}`. `explain=true` (URL or body) adds to each answer '
        "the terms that decided it, exactly, with their places in the text. `GET /demo` is a page that calls this API "
        "as you type.\n\n"
        f"Limits: {settings.max_query_chars:,} characters per query, {settings.max_batch:,} queries per batch, "
        f"{settings.max_body_bytes:,} bytes per body, {settings.max_request_chars:,} characters per request (all its "
        f"texts together); with `explain`, {settings.max_explain_texts:,} texts, {settings.max_explain_chars:,} "
        f"characters and {settings.max_explained_terms:,} listed terms (texts times `explain_terms`) per request "
        "(413 beyond any of them, before any text is scored; `info.x-limits` lists them). A model whose analysis costs "
        "more per character has smaller character budgets: its path's `x-limits` and its entry in `/models` give its "
        "own.\n\n"
        'Errors are JSON everywhere, `{"message": "..."}`: 400 bad input, 404 unknown path, 405 method not '
        "allowed (with an `Allow` header), 408 stalled body, 413 over a limit, 500 anything unexpected. Every response carries "
        f"`{REQUEST_ID_HEADER}`."
    )


def document(settings: Settings, models: Iterable[ServedModel]) -> Schema:
    """The OpenAPI description of the whole service, for these models and ``settings``' limits."""
    served = list(models)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Sentiment API",
            "version": "1.0.0",
            "description": description(settings, served),
            "x-limits": limits(settings),
        },
        "tags": [
            {"name": "predictions", "description": "Classify texts."},
            {"name": "operations", "description": "Health, readiness, models and metrics."},
            {"name": "documentation", "description": "This document, its Swagger UI, and a demo page."},
        ],
        "paths": paths(settings, served),
        "components": {
            "schemas": schemas(settings, served),
            "parameters": parameters(settings),
            "requestBodies": request_bodies(settings),
            "responses": responses(settings),
            "headers": headers(),
        },
    }
