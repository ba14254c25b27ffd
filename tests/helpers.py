"""Helpers shared by the tests: reading answers, and tampering with model folders the way an attacker would."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
from flask.testing import FlaskClient

from model import content_version


def served_labels(client: FlaskClient, name: str) -> list[str]:
    """The labels a served model answers with, as its manifest gives them."""
    return list(client.application.extensions["models"].models[name].labels)


def assert_prediction(body: dict, labels: list[str]) -> None:
    """A prediction answer: one of the labels, every label's probability, confidence that of the prediction."""
    assert body["prediction"] in labels
    assert list(body["probabilities"]) == labels
    assert body["confidence"] == body["probabilities"][body["prediction"]] == max(body["probabilities"].values())
    assert abs(sum(body["probabilities"].values()) - 1) < 0.01


def rewrite_manifest(folder: Path, **changes: object) -> None:
    """Change manifest fields the way an attacker would: digests and version kept consistent."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(changes)
    if isinstance(manifest.get("files"), dict) and isinstance(manifest.get("labels"), list):
        manifest["version"] = content_version(manifest["name"], manifest["labels"], manifest["files"])
    (folder / "manifest.json").write_text(json.dumps(manifest))


def plant(folder: Path, filename: str, payload: bytes) -> None:
    """Replace an artifact and update the manifest to match it, as a careful attacker would."""
    (folder / filename).write_bytes(payload)
    manifest = json.loads((folder / "manifest.json").read_text())
    rewrite_manifest(folder, files={**manifest["files"], filename: hashlib.sha256(payload).hexdigest()})


class Reduce:
    """A pickle whose loading calls ``function(*args)``."""

    def __init__(self, function: object, *args: object) -> None:
        self.call = (function, args)

    def __reduce__(self) -> tuple:
        return self.call


def gadgets(marker: Path) -> dict[str, bytes]:
    """Pickles that each create ``marker`` when unpickled, in the shapes attackers use."""
    command = f"touch {marker}"
    object_array = io.BytesIO()
    np.save(object_array, np.array([Reduce(os.system, command)], dtype=object), allow_pickle=True)
    return {
        "os.system": pickle.dumps(Reduce(os.system, command)),
        "Path.touch": pickle.dumps(Reduce(Path.touch, marker)),
        "eval": pickle.dumps(Reduce(eval, f"__import__('os').system({command!r})")),
        "subprocess": pickle.dumps(Reduce(subprocess.call, ["touch", str(marker)])),
        # os reached through a NumPy module, then getattr: the hole in the old allow-list unpickler.
        "numpy-module-os": (b"cbuiltins\ngetattr\n(cnumpy.lib._datasource\nos\nVsystem\ntR(V" + command.encode() + b"\ntR."),
        "object-npy": object_array.getvalue(),
    }
