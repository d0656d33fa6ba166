"""Small helpers shared across the package (atomic writes, JSON)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def format_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def write_error(path: Path, exc: OSError, nbytes: int | None = None):
    """One-line :class:`~selfconfig.errors.WriteError` for an OS error while writing ``path``
    (numpy's "463050 requested and 219104 written" names neither the file nor the cause)."""
    from selfconfig.errors import WriteError

    need = f" ({format_bytes(nbytes)} to write)" if nbytes else ""
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC or code == errno.EDQUOT or "requested and" in str(exc):
        try:
            free = f"; {format_bytes(shutil.disk_usage(_existing_parent(path)).free)} free there"
        except OSError:
            free = ""
        return WriteError(f"disk full while writing {path}{need}{free}; free some space and run the command "
                          f"again (the file was not written)")
    reason = os.strerror(code) if code else (str(exc) or type(exc).__name__)
    return WriteError(f"cannot write {path}{need}: {reason}; check that the folder exists and is writable "
                      f"(the file was not written)")


def _existing_parent(path: Path) -> Path:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_free_space(folder: Path, nbytes: int, what: str) -> None:
    """Refuse (one line, nothing written) when ``folder``'s file system has less than ``nbytes`` free."""
    from selfconfig.errors import DiskSpaceError

    try:
        free = shutil.disk_usage(_existing_parent(Path(folder))).free
    except OSError:
        return  # cannot tell: the writes themselves will report a full disk
    if nbytes > free:
        raise DiskSpaceError(f"not enough free space in {folder} for {what}: about {format_bytes(nbytes)} needed, "
                             f"{format_bytes(free)} free; free some space or point the output elsewhere "
                             f"(nothing was written)")


@contextmanager
def atomic_path(path: Path, nbytes: int | None = None) -> Iterator[Path]:
    """Yield a temporary name next to ``path`` (same ending, so format-sniffing writers work);
    on success it is renamed to ``path``, on any failure removed. An OSError becomes a one-line
    WriteError naming ``path``. A reader never sees a half-written file under ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(path, e, nbytes) from None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".partial-", suffix="-" + path.name)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise write_error(path, e, nbytes) from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader never sees a half-written file."""
    with atomic_path(path, len(data)) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savefig(fig, path: Path, dpi: int = 100) -> None:
    """Save a matplotlib figure as PNG atomically, with the usual file permissions."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(Path(path), json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")
