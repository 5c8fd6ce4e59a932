"""One writer per run directory: an exclusive ``flock`` on ``DIR/.lock``.

The lock belongs to an open file, so the operating system releases it when the
process ends, however it ends (SIGKILL included): a killed run never leaves a stale
lock behind. Readers (``inspect``, ``report``, ``compare``) never take it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from grownet.errors import UserError

LOCK_NAME = ".lock"


class DirLock:
    """The writer's lock of one directory (see the module docstring).

    Parameters
    ----------
    folder
        The directory to lock; it must exist.
    """

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, what: str = "run directory") -> DirLock:
        """Take the lock without waiting.

        Raises
        ------
        UserError
            Another process (or another writer in this one) holds it; the message names
            its process id. Nothing is written in that case.
        """
        if self._fd is not None:
            return self
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                os.close(fd)
                raise self.busy_error(what, holder) from None
            if self._same_file(fd):
                break
            os.close(fd)  # the file was removed (a failed run's discard) and made anew
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        return self

    def _open(self) -> int:
        try:
            # O_RDWR without O_TRUNC: a refused writer must not touch the holder's pid
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise UserError(f"cannot lock {self.path.parent} ({err.strerror or err}); "
                            "choose a writable location") from None

    def _same_file(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)

    def unlink(self) -> None:
        """Remove the lock file while holding it (a writer that opened it meanwhile
        sees that it is gone, and locks the next one)."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)

    def holder(self) -> str | None:
        """Who holds the lock now: their process id (``"?"`` when unknown), or ``None``
        when nobody does. Creates nothing: a probe of an existing lock file."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            return pid if pid.isdigit() else "?"
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def busy_error(self, what: str, pid: str | None) -> UserError:
        who = f"process {pid}" if pid and pid.isdigit() else "another process"
        return UserError(f"{what} {self.path.parent} is being written by {who}; wait "
                         "until it ends, or choose another --out")

    def release(self) -> None:
        """Give the lock up (also done by the OS when the process ends)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __del__(self) -> None:  # a forgotten writer must not block this process forever
        self.release()
