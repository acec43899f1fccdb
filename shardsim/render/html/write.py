"""Writing a report file: checked before any work (``check_destination``), then written atomically (a temporary
file in the same folder, renamed over the destination with ``os.replace``), so a reader never sees half a report and
a failed write leaves the old file as it was. Every failure is one ``ShardsimError`` line (exit code 2)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from shardsim.errors import ShardsimError


def check_destination(path: str | os.PathLike) -> Path:
    """The report's path, refused in one line when it cannot be written: an empty name, a folder, a folder that
    does not exist, or one this user may not write to."""
    text = str(path)
    if not text.strip():
        raise ShardsimError("--html needs a file name, e.g. --html report.html")
    target = Path(text).expanduser()
    try:
        is_dir, folder_ok = target.is_dir(), target.parent.is_dir()
        writable = os.access(target.parent, os.W_OK | os.X_OK) and (not target.exists() or os.access(target, os.W_OK))
    except (OSError, ValueError) as exc:  # a name the OS refuses (too long, a NUL byte)
        raise ShardsimError(f"cannot write the report to {text[:80]!r}: {getattr(exc, 'strerror', None) or exc}") from None
    if is_dir:
        raise ShardsimError(f"cannot write the report to {text!r}: it is a folder; give a file name")
    if not folder_ok:
        raise ShardsimError(f"cannot write the report to {text!r}: the folder {str(target.parent)!r} does not exist")
    if not writable:
        raise ShardsimError(f"cannot write the report to {text!r}: permission denied")
    return target


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder and ``os.replace``; the file
    gets the mode a new file would (0666 less the umask)."""
    target = check_destination(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise ShardsimError(f"cannot write the report to {str(path)!r}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return target
