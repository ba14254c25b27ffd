"""The served models: every folder under MODELS_DIR with a manifest is one, loaded and reloaded as a set.

A model's name and labels come from its manifest; its URL path from the manifest's ``endpoint`` (the
build writes ``/`` for sentiment) or else ``/<name>``; ``index_field`` (``rating`` for ratings) adds the
class index to each answer. Adding a model is adding a folder: routes, ``/models``, ``/ready``, the
OpenAPI document and the metrics follow from this registry.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.limits import limits, model_settings
from lib.observability import Metrics
from lib.settings import Settings
from model import MANIFEST, REBUILD_HINT, ModelLoadError, NLPModel

log = logging.getLogger(__name__)

ENDPOINT = re.compile(r"/([a-z0-9][a-z0-9_-]{0,63})?")
INDEX_FIELD = re.compile(r"[a-z][a-z0-9_]{0,31}")
ANSWER_FIELDS = frozenset({"prediction", "confidence", "probabilities", "explanation"})


@dataclass(frozen=True)
class ServedModel:
    """One loaded model and where and how the service answers with it."""

    name: str
    endpoint: str
    index_field: str | None
    model: NLPModel
    settings: Settings  # the service's, with this model's budgets (lib.limits)

    @property
    def labels(self) -> tuple[str, ...]:
        """Label names in class order, from the manifest."""
        return self.model.labels

    @property
    def version(self) -> str:
        """The content-derived version of the loaded files."""
        return self.model.version

    @property
    def limits(self) -> dict[str, int]:
        """What one request to this model may carry and cost, by the names its 413 messages give."""
        return limits(self.settings)

    def describe(self) -> dict[str, Any]:
        """The manifest as /models shows it, with the URL path that serves it and this model's limits."""
        return {"endpoint": self.endpoint, **self.model.manifest, "limits": self.limits}


def component(name: str) -> str:
    """A model name as an OpenAPI component name: ``sentiment`` -> ``Sentiment``, ``movie-ratings`` -> ``MovieRatings``."""
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part)


def cause(exc: BaseException) -> str:
    """An exception in one line: its message (whitespace collapsed, at most 200 characters), then its type."""
    message = " ".join(str(exc).split())[:200]
    return f"{message} ({type(exc).__name__})" if message else type(exc).__name__


def load_error(path: Path, exc: Exception) -> ModelLoadError:
    """``exc``, met while loading ``path``, as one line naming both: ``<path>: <message> (<exception type>)``."""
    return exc if isinstance(exc, ModelLoadError) else ModelLoadError(f"{path}: {cause(exc)}")


@contextlib.contextmanager
def loading(path: Path) -> Iterator[None]:
    """Let only a ModelLoadError out, naming ``path``: a folder can fail in ways no check foresees (memory, access, I/O)."""
    try:
        yield
    except ModelLoadError:
        raise
    except Exception as exc:
        raise load_error(path, exc) from exc


def model_folders(models_dir: Path) -> list[Path]:
    """Return the folders holding a manifest (hidden ones are the build's staging), sorted by name."""
    with loading(models_dir):
        if not models_dir.is_dir():
            raise ModelLoadError(f"{models_dir}: no such folder (set MODELS_DIR). {REBUILD_HINT}")
        entries = sorted(path for path in models_dir.iterdir() if not path.name.startswith("."))
    folders = []
    for path in entries:
        with loading(path):
            if (path / MANIFEST).exists():
                folders.append(path)
    if not folders:
        raise ModelLoadError(f"{models_dir}: no model folder (a folder holding {MANIFEST}) in it. {REBUILD_HINT}")
    return folders


def serve(
    folder: Path,
    model: NLPModel,
    reserved: frozenset[str],
    reserved_names: frozenset[str] = frozenset(),
    settings: Settings | None = None,
) -> ServedModel:
    """Read where and how to serve a loaded model from its manifest, refusing what would clash with the service's own
    ``reserved`` paths or ``reserved_names`` (its routes' names, which a model's route would take as its own); hold
    its requests to ``settings``' budgets as its cost scales them (``lib.limits``)."""
    manifest = model.manifest
    name = manifest["name"]
    if name in reserved_names:
        raise ModelLoadError(
            f"{folder / MANIFEST}: name {name!r} is one the service's own routes use ({', '.join(sorted(reserved_names))}); "
            "rename the model."
        )
    endpoint = manifest.get("endpoint", f"/{name}")
    if not isinstance(endpoint, str) or not ENDPOINT.fullmatch(endpoint) or endpoint in reserved:
        raise ModelLoadError(
            f"{folder / MANIFEST}: endpoint {endpoint!r} is not a path like /ratings (lower-case letters, digits, - and _), "
            f"or is one the service uses ({', '.join(sorted(reserved))})."
        )
    index_field = manifest.get("index_field")
    if index_field is not None and (
        not isinstance(index_field, str) or not INDEX_FIELD.fullmatch(index_field) or index_field in ANSWER_FIELDS
    ):
        raise ModelLoadError(f"{folder / MANIFEST}: index_field {index_field!r} must be a lower-case name like 'rating'.")
    return ServedModel(name, endpoint, index_field, model, model_settings(settings or Settings(), model))


def load_all(
    models_dir: Path,
    reserved: frozenset[str] = frozenset(),
    reserved_names: frozenset[str] = frozenset(),
    settings: Settings | None = None,
) -> tuple[dict[str, ServedModel], dict[str, float]]:
    """Load and verify every model folder; raise ModelLoadError, naming the file, if one fails, two clash, or one
    would take a ``reserved`` path or name (the service's own). Each model's requests are held to ``settings``'
    budgets, as its cost scales them."""
    served: dict[str, ServedModel] = {}
    seconds: dict[str, float] = {}
    endpoints: dict[str, str] = {}
    components: dict[str, tuple[str, Path]] = {}  # OpenAPI component name -> the model and folder it came from
    for folder in model_folders(models_dir):
        started = time.perf_counter()
        with loading(folder):
            model = serve(folder, NLPModel.load(folder), reserved, reserved_names, settings)
        if model.name in served or model.endpoint in endpoints:
            clash = model.name if model.name in served else endpoints[model.endpoint]
            raise ModelLoadError(f"{folder / MANIFEST}: model {model.name!r} at {model.endpoint} clashes with {clash!r}.")
        named = component(model.name)
        if named in components:
            other, other_folder = components[named]
            raise ModelLoadError(
                f"{folder / MANIFEST}: model {model.name!r} and {other!r} ({other_folder / MANIFEST}) both make the OpenAPI "
                f"name {named!r}; rename one."
            )
        components[named] = (model.name, folder)
        served[model.name], endpoints[model.endpoint] = model, model.name
        seconds[model.name] = time.perf_counter() - started
        log.info("loaded %s from %s in %.3fs", model.version, folder, seconds[model.name])
    return served, seconds


class ModelRegistry:
    """The served models, replaced as a whole on reload so that a request sees one consistent set.

    ``served`` is the set a registry takes over from (the previous app's, when the server builds a new app on
    SIGHUP): its versions that the first load no longer serves, replaced or removed, stop showing as loaded.
    """

    def __init__(
        self,
        models_dir: Path,
        metrics: Metrics,
        served: Mapping[str, ServedModel] | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.models_dir = models_dir
        self.settings = settings or Settings(models_dir=models_dir)  # whose budgets each model's cost scales
        self.metrics = metrics
        self.models: Mapping[str, ServedModel] = dict(served or {})
        self.reserved: frozenset[str] = frozenset()  # the service's own paths, which no model may take
        self.reserved_names: frozenset[str] = frozenset()  # and its routes' names, which no model may be called

    def reserve(self, paths: Iterable[str], names: Iterable[str] = ()) -> None:
        """Keep these paths and route names (the app's own, read from its URL map) from every model loaded from now on."""
        self.reserved = frozenset(paths)
        self.reserved_names = frozenset(names)

    def load(self, same_routes: bool = False) -> None:
        """Load every model folder; the versions served until now that are not served any more read 0 in the metrics.

        The set may differ from the one served until now (a model added, removed or moved): an app's routes are made
        from its registry when the app is built, so the production server serves a new set by building a new app.
        Whatever fails raises ModelLoadError, one line naming the folder, and leaves the served set as it was.
        """
        with loading(self.models_dir):
            models, seconds = load_all(self.models_dir, self.reserved, self.reserved_names, self.settings)
            routes = {(model.name, model.endpoint) for model in models.values()}
            served = {(model.name, model.endpoint) for model in self.models.values()}
            if same_routes and routes != served:
                raise ModelLoadError(
                    f"{self.models_dir}: the models changed from {sorted(served)} to {sorted(routes)}, and this app's routes "
                    "are fixed; the production server serves a new set on SIGHUP by building a new app."
                )
            retired = {
                name: model.model.manifest
                for name, model in self.models.items()
                if name not in models or models[name].version != model.version
            }
            self.metrics.models_loaded({name: model.model.manifest for name, model in models.items()}, seconds, retired)
        self.models = models

    def reload(self) -> bool:
        """Load the models again into this app, whose routes are fixed: new files for the same models, or nothing.

        If anything fails, or the set of models changed, keep serving the old set and log one line saying why.
        """
        try:
            self.load(same_routes=True)
        except ModelLoadError as exc:
            log.error("reload refused, still serving %s: %s", self.versions(), exc)
            return False
        return True

    def versions(self) -> str:
        """The served versions, as the log names them: ``sentiment-..., ratings-...``."""
        return ", ".join(model.version for model in self.models.values())
