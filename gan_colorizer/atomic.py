"""Writes that leave either the whole new file or the old one, the cleanup of what a killed write left, and the
folder lock that keeps two processes (two trainings of one run, two evaluations into one --out) apart."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
from pathlib import Path

from gan_colorizer.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, the folder simply is not locked
    fcntl = None

log = logging.getLogger("gan_colorizer")
PART_SUFFIX = ".part"
_PART = re.compile(r"^\..+\.(\d+)(?:-\d+)?\.part$")  # .NAME.PID-THREAD.part: the writer's process id


def part_path(path: Path) -> Path:
    """The hidden sibling a write goes to first, named by process and thread so that concurrent writers never share
    one (and a leftover names the process that left it)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}{PART_SUFFIX}")


@contextlib.contextmanager
def replacing(path, fsync: bool = False):
    """Yields a temporary path beside `path` to write; when the block ends it is renamed over `path` (fsynced first
    with fsync=True), and on any failure or interrupt it is removed: readers see the old file or the new, whole.
    The first such write of a process into a folder also removes what killed writes left there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_once(path.parent)
    tmp = part_path(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path, data: str | bytes, fsync: bool = False) -> Path:
    """Text (UTF-8) or bytes into `path` through a temporary sibling (see replacing)."""
    with replacing(path, fsync) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        return True
    return True


def remove_stale_parts(folder, recursive: bool = False) -> int:
    """Delete the temporary files (.NAME.PID-THREAD.part) of writes whose process is gone (killed mid-write); those
    of a running process (another writer into the same folder) stay. Returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for parent, _, names in os.walk(folder) if recursive else [(folder, None, os.listdir(folder))]:
        for name in names:  # os.walk follows no symlinked folder: a link loop cannot trap it
            match = _PART.match(name)
            path = Path(parent) / name
            if match and int(match.group(1)) != os.getpid() and not _running(int(match.group(1))) and path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
    return removed


_cleaned: set[Path] = set()
_cleaned_lock = threading.Lock()


def _clean_once(folder: Path) -> None:
    """The first write of this process into a folder removes what killed writes left there (one listing per
    folder, not per file)."""
    with _cleaned_lock:
        if folder in _cleaned:
            return
        _cleaned.add(folder)
    removed = remove_stale_parts(folder)
    if removed:
        log.info("note: removed %d temporary file(s) of writes that were cut short in %s", removed, folder)


class FolderLock:
    """An exclusive lock on `folder` (its `.lock` file): a second process is refused with `busy`, a one-line
    message in which {holder} names the process that holds it.

    flock is released by the kernel when the process dies, even by SIGKILL, so a stale lock never blocks anyone.
    `release()` deletes .lock before unlocking; a process that opened the old file meanwhile sees that the path no
    longer leads to it and locks the new one, so two processes never both hold the folder.
    """

    def __init__(self, folder, busy: str):
        self.folder, self.file = Path(folder), None
        if fcntl is None:
            return
        self.path = self.folder / ".lock"
        for _ in range(100):
            self.folder.mkdir(parents=True, exist_ok=True)
            try:
                f = open(self.path, "a+")
            except FileNotFoundError:  # the folder was removed by a holder giving up: make it again
                continue
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                f.close()
                raise UserError(busy.replace("{holder}", holder)) from None
            except OSError as e:  # a file system without locks: go on unlocked rather than not at all
                log.info("note: cannot lock %s (%s); make sure no other process writes there", self.path,
                         e.strerror or e)
                f.close()
                return
            if self._still_at_path(f):
                self.file = f
                break
            f.close()
        else:
            raise UserError(f"{self.folder}: cannot lock it ({self.path} keeps being replaced)")
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        self.file.flush()

    def _still_at_path(self, f) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            return False

    @property
    def held(self) -> bool:
        return self.file is not None

    def release(self) -> None:
        """Delete .lock and unlock (idempotent)."""
        if self.file is not None:
            self.path.unlink(missing_ok=True)
            self.file.close()  # closing the descriptor drops the lock
            self.file = None

    def __del__(self):
        with contextlib.suppress(Exception):  # at interpreter exit the kernel drops the lock anyway
            self.release()
