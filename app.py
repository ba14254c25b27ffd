"""The HTTP service: ``create_app()`` wraps the saved models in Flask-RESTful resources.

    python app.py                      # local development server on 127.0.0.1:5000
    python -m lib.server               # production (granian): make production

Models load once, inside the factory, and are injected into the resources; nothing heavy runs at
import. Where things live: settings in ``lib/settings.py``, request parsing in ``lib/parsing.py``,
the resources in ``lib/resources.py``, the error shape in ``lib/errors.py``, model discovery and
reload in ``lib/registry.py``, the OpenAPI document in ``lib/openapi.py``, served with Swagger UI by ``lib/docs.py``,
the demo page in ``lib/demo.py``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from flask import Flask

from lib import demo, docs, openapi
from lib.errors import JsonApi, error_response
from lib.lifecycle import Lifecycle
from lib.logs import DevelopmentRequestHandler, development_logging
from lib.middleware import install
from lib.observability import Metrics
from lib.registry import ModelRegistry
from lib.resources import Health, MetricsResource, Models, Prediction, Ready
from lib.settings import ConfigError, Settings
from model import ModelLoadError

log = logging.getLogger(__name__)


def create_app(config: Mapping[str, Any] | None = None, previous: Flask | None = None) -> Flask:
    """Build the service: settings from the environment (then ``config``), models, resources.

    ``previous``, an app this one replaces (the production server builds a new app on SIGHUP), hands over its
    lifecycle and metrics, and its served models: versions this app no longer serves stop showing as loaded.
    """
    settings = Settings.from_mapping({**os.environ, **(config or {})})
    logging.getLogger("lib").setLevel(settings.log_level)
    log.setLevel(settings.log_level)
    app = Flask(__name__, static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, ERROR_404_HELP=False, SETTINGS=settings)
    if previous is None:
        metrics, lifecycle, served = Metrics(settings.metrics_dir), Lifecycle(), None
    else:
        metrics, lifecycle = previous.extensions["metrics"], previous.extensions["lifecycle"]
        served = previous.extensions["models"].models
    registry = ModelRegistry(settings.models_dir, metrics, served, settings)
    app.extensions.update(models=registry, lifecycle=lifecycle, metrics=metrics)
    install(app, settings, metrics)

    api = JsonApi(app, catch_all_404s=True)
    api.add_resource(Health, "/health")
    ready = {"registry": registry, "lifecycle": lifecycle, "metrics": metrics}
    api.add_resource(Ready, "/ready", resource_class_kwargs=ready)
    api.add_resource(Models, "/models", resource_class_kwargs={"registry": registry})
    api.add_resource(MetricsResource, "/metrics", resource_class_kwargs={"metrics": metrics})
    docs.register(app, settings, registry, openapi.document)
    demo.register(app)
    own = list(app.url_map.iter_rules())  # the service's own routes, before any model's
    registry.reserve((rule.rule for rule in own), (rule.endpoint for rule in own))
    registry.load()
    for name, served in registry.models.items():
        kwargs = {"model_name": name, "registry": registry, "metrics": metrics}
        api.add_resource(Prediction, served.endpoint, endpoint=name, resource_class_kwargs=kwargs)
    app.register_error_handler(Exception, error_response)
    return app


def main() -> int:
    """Run the development server (HOST, PORT; DEBUG=1 only when you ask for it)."""
    try:
        settings = Settings.from_mapping(os.environ)
        development_logging(settings.log_level)
        app = create_app()
    except (ModelLoadError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    log.warning(
        "development server: no read timeout for slow clients, HTML answers for oversized URLs and headers, "
        "and a Server header naming Werkzeug. Run `make production` for anything others can reach."
    )
    app.run(host=settings.host, port=settings.port, debug=settings.debug, request_handler=DevelopmentRequestHandler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
