"""The HTTP header names the service sets and reads: written once here, imported everywhere else (code and docs)."""

#: Every answer carries the request's id: the caller's when it is safe, else a generated one.
REQUEST_ID_HEADER = "X-Request-ID"
#: Every prediction answer names the model version that produced it, in the body and in this header.
MODEL_VERSION_HEADER = "X-Model-Version"
