"""``python -m tests.server_whose_loads_fail``: the production server, where loading a folder that holds a file named
``raise-on-load`` raises a plain RuntimeError: a fault that gets past every check of the folder, as a bug would.
"""

from pathlib import Path
from unittest import mock

from lib import server
from model import NLPModel

MARKER = "raise-on-load"
load = NLPModel.load


def load_or_fail(directory: str | Path) -> NLPModel:
    """Load as usual, unless the folder holds the marker."""
    if (Path(directory) / MARKER).exists():
        raise RuntimeError("the model's code failed while loading it")
    return load(directory)


if __name__ == "__main__":
    with mock.patch.object(NLPModel, "load", load_or_fail):
        server.main()
