"""The sha256 of a file, the one digest the project records and names caches by."""
from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of the file's bytes (read in chunks, never whole into memory)."""
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()
