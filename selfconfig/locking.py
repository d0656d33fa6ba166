"""One owner per run folder: an exclusive lock that a run holds for its whole life.

Two processes writing into one run folder (a double-click, a re-submitted cluster job) would
write checkpoints, logs and validation over each other's. Every run (training, pre-training, a
grid cell, a prediction into an output folder) therefore takes ``<folder>/.lock`` first; a second
process refuses in one line that names the holder (pid, host, since when), or waits for it.

How it works: ``flock(2)`` on the lock file. The kernel releases the lock when the holder's last
file descriptor closes, so a process that dies (``kill -9``, out of memory, a lost node) never
leaves a held lock behind; what it leaves is the lock file with its holder line, which the next
owner recognises and reports as taken over. On a clean release the file is removed (while still
locked; a waiter that then gets the lock on the removed file notices and tries again).
Forked children (data-loader workers) close their inherited copy, so an orphaned worker never
keeps a dead run's folder locked.

Where the file system has no ``flock`` (some FUSE or cluster file systems answer ENOLCK or
EOPNOTSUPP), the lock falls back to a file created exclusively (``O_EXCL``), whose holder is
taken to be dead only when it ran on this host and its pid is gone. documentation/reliability.md
says how far either works on shared file systems.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator

from selfconfig.errors import SelfconfigError

try:  # POSIX; elsewhere only the exclusive-file fallback exists
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
#: errors by which a file system says that it does not do flock (the fallback takes over)
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_POLL_SECONDS = 1.0
#: the exclusive-file fallback: a lock file without a readable holder line older than this is stale
_UNWRITTEN_STALE_SECONDS = 60.0


class RunFolderBusyError(SelfconfigError):
    """Another process holds the run folder's lock."""


@dataclass
class Holder:
    """Who holds (or held) a lock: written into the lock file by its owner."""

    pid: int
    host: str
    since: str
    command: str = ""

    def describe(self) -> str:
        what = f": {self.command}" if self.command else ""
        return f"pid {self.pid} on {self.host}, since {self.since}{what}"

    @classmethod
    def me(cls) -> Holder:
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
        return cls(os.getpid(), socket.gethostname(), datetime.now().astimezone().isoformat(timespec="seconds"),
                   command[:200])

    def to_bytes(self) -> bytes:
        return (json.dumps({"pid": self.pid, "host": self.host, "since": self.since, "command": self.command})
                + "\n").encode()

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        try:
            d = json.loads(data.decode("utf-8"))
            return cls(int(d["pid"]), str(d["host"]), str(d["since"]), str(d.get("command", "")))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None


@dataclass
class _Held:
    path: Path
    fd: int | None  # flock: the open lock file; fallback: None
    count: int = 1
    created: tuple[Path, ...] = ()  # folders the lock made (deepest first): removed again if left empty


_held: dict[str, _Held] = {}
_registry_lock = threading.Lock()


def _forget_in_child() -> None:
    """A forked child (a data-loader worker) must not keep its parent's folders locked."""
    for h in _held.values():
        if h.fd is not None:
            try:
                os.close(h.fd)
            except OSError:
                pass
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def read_holder(folder: Path) -> Holder | None:
    """The holder line of ``folder``'s lock file (the current owner, or one that died), if any."""
    try:
        return Holder.parse((Path(folder) / LOCK_NAME).read_bytes())
    except OSError:
        return None


def _busy(folder: Path, holder: Holder | None, what: str) -> RunFolderBusyError:
    who = holder.describe() if holder else "another process"
    return RunFolderBusyError(f"{folder} is in use by {who}; two processes must not {what} into one folder: wait "
                              f"for it to finish, or run again with --wait to start when it does")


def _write_holder(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, Holder.me().to_bytes(), 0)


def _read_fd(fd: int) -> bytes:
    try:
        return os.pread(fd, 4096, 0)
    except OSError:
        return b""


def _acquire_flock(folder: Path, path: Path, wait: bool, what: str) -> int | None:
    """-> the open, locked file descriptor; None when this file system does not do flock."""
    announced = False
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:  # the holder we waited for removed the folder it had made, empty
            folder.mkdir(parents=True, exist_ok=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in _NO_FLOCK:
                os.close(fd)
                return None
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            holder = Holder.parse(_read_fd(fd))
            if not wait:
                os.close(fd)
                raise _busy(folder, holder, what) from None
            if not announced:
                log.info("%s is in use by %s; waiting for it to finish", folder,
                         holder.describe() if holder else "another process")
                announced = True
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # blocks until the holder ends
            except BaseException:
                os.close(fd)
                raise
        try:  # the file may have been removed (a clean release) while this process waited on it
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        previous = Holder.parse(_read_fd(fd))
        _write_holder(fd)
        if previous is not None and previous.pid != os.getpid():
            log.warning("%s: taking over the lock of %s, which ended without releasing it (killed?)", folder,
                        previous.describe())
        return fd


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _acquire_exclusive_file(folder: Path, path: Path, wait: bool, what: str) -> None:
    """The fallback where flock is not available: the lock is the existence of the file."""
    announced = False
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileNotFoundError:  # the holder we waited for removed the folder it had made, empty
            folder.mkdir(parents=True, exist_ok=True)
            continue
        except FileExistsError:
            try:
                data, age = path.read_bytes(), time.time() - path.stat().st_mtime
            except FileNotFoundError:
                continue  # released meanwhile
            holder = Holder.parse(data)
            stale = (holder is None and age > _UNWRITTEN_STALE_SECONDS) or (
                holder is not None and holder.host == socket.gethostname() and not _pid_alive(holder.pid))
            if stale:
                log.warning("%s: taking over the lock of %s, which ended without releasing it (killed?)", folder,
                            holder.describe() if holder else "a process that never wrote its name")
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
                continue
            if not wait:
                raise _busy(folder, holder, what) from None
            if not announced:
                log.info("%s is in use by %s; waiting for it to finish", folder,
                         holder.describe() if holder else "another process")
                announced = True
            time.sleep(_POLL_SECONDS)
            continue
        try:
            _write_holder(fd)
        finally:
            os.close(fd)
        return


@contextmanager
def run_folder_lock(folder: str | os.PathLike, wait: bool = False, what: str = "write") -> Iterator[Path]:
    """Hold ``folder``'s lock for the ``with`` block (the folder is created if needed, and removed
    again at the end if the run left it empty).

    ``wait=False``: a held lock raises :class:`RunFolderBusyError` (one line naming the holder);
    ``wait=True``: block until the holder ends. The same process may nest the lock on one folder
    (a grid cell around its training run). ``what`` completes the refusal: "two processes must
    not <what> into one folder".
    """
    folder = Path(folder)
    key = os.path.realpath(folder)
    with _registry_lock:
        held = _held.get(key)
        if held is not None:
            held.count += 1
    if held is not None:
        try:
            yield folder
        finally:
            with _registry_lock:
                held.count -= 1
        return
    created = _make_folders(folder)
    path = folder / LOCK_NAME
    try:
        fd = _acquire_flock(folder, path, wait, what) if fcntl is not None else None
        if fd is None:
            _acquire_exclusive_file(folder, path, wait, what)
    except BaseException:
        _remove_if_empty(created)
        raise
    held = _Held(path, fd, created=created)
    with _registry_lock:
        _held[key] = held
    try:
        yield folder
    finally:
        with _registry_lock:
            _held.pop(key, None)
        try:
            path.unlink()  # while still locked: the next owner sees no holder line, i.e. a clean release
        except FileNotFoundError:
            pass
        if fd is not None:
            os.close(fd)
        _remove_if_empty(created)


def _make_folders(folder: Path) -> tuple[Path, ...]:
    """Create ``folder`` and its missing parents; the ones made here, deepest first."""
    missing = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    return tuple(missing)


def _remove_if_empty(created: tuple[Path, ...]) -> None:
    """A run refused (or a prediction that wrote nothing) leaves no folder the lock made."""
    for p in created:
        try:
            p.rmdir()
        except OSError:
            return  # not empty (the run wrote into it), or gone


def clear_locked_folder(folder: str | os.PathLike) -> None:
    """Remove everything in ``folder`` but its lock file (``--overwrite`` of a run whose lock this
    process holds: removing the whole folder would drop the lock under a waiting process)."""
    import shutil

    for p in Path(folder).iterdir():
        if p.name == LOCK_NAME:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
