"""Make ``ansible_collections.gpuserve.vllm`` importable in the unit and integration tests.

Works from the standard layout (.../ansible_collections/gpuserve/vllm, found through $PWD or the
working directory even when that path is a symlink) and, failing that, from a plain checkout
through a temporary ansible_collections/gpuserve/vllm symlink to it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

COLLECTION_ROOT = Path(__file__).resolve().parents[1]


def _collections_parent() -> Path:
    for candidate in (os.environ.get("PWD", ""), os.getcwd(), str(Path(__file__).absolute())):
        parts = Path(candidate).parts
        if "ansible_collections" in parts:
            index = len(parts) - 1 - parts[::-1].index("ansible_collections")
            if len(parts) > index + 2 and (Path(*parts[:index + 3]) / "galaxy.yml").exists():
                return Path(*parts[:index])
    scratch = Path(tempfile.mkdtemp(prefix="gpuserve-vllm-tests-"))
    (scratch / "ansible_collections" / "gpuserve").mkdir(parents=True)
    (scratch / "ansible_collections" / "gpuserve" / "vllm").symlink_to(COLLECTION_ROOT)
    return scratch


_PARENT = str(_collections_parent())
if _PARENT not in sys.path:
    sys.path.insert(0, _PARENT)
