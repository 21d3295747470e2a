"""Writing a file atomically: the one helper the checkpoints and saved models use."""

from __future__ import annotations

import os
from typing import BinaryIO, Callable


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Calls ``write(f)`` on a temporary file beside ``path``, flushes it to disk and renames it
    over ``path`` (``os.replace``): a reader sees the old file or the new one, never a part.

    A symbolic link is written through (its target is replaced); an existing file keeps its
    permission bits, a new one gets the umask's; anything but a regular file is refused;
    the temporary file is removed if anything fails."""
    import secrets
    import stat

    if not isinstance(path, (str, os.PathLike)) or os.fspath(path) in ("", b""):
        raise ValueError(f"path must be a non-empty file path, got {path!r}")
    target = os.path.realpath(path)
    try:
        existing = os.stat(target)
    except FileNotFoundError:
        existing = None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        raise ValueError(
            f"path {os.fspath(path)!r} exists and is not a regular file; the file written "
            "replaces a regular file (or creates one), never a device, pipe or directory"
        )
    directory, base = os.path.split(target)
    tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, "wb") as f:
            if existing is not None:
                os.fchmod(f.fileno(), stat.S_IMODE(existing.st_mode))
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
