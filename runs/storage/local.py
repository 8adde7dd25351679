"""The filesystem backend, opened without following symlinks.

Every open walks the path from the storage root one component at a time with O_NOFOLLOW
(through `dir_fd`), and only what lstat and fstat call a regular file is read: a symlink,
folder, fifo or device planted in the tree reads as missing, never as what it points to.
"""

import contextlib
import errno
import os
import posixpath
import stat
from typing import BinaryIO

from django.core.files.storage import default_storage


class NotARegularFile(FileNotFoundError):
    """A symlink, folder or special file stands where a run file should be: never followed
    or read (a FileNotFoundError, so every reader treats it as missing)."""


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def storage_root() -> str | None:
    """The storage's folder, or None for a backend without local paths (object storage)."""
    try:
        return default_storage.path("")
    except NotImplementedError:
        return None


def open_dir(root: str, parts: list[str], *, create: bool = False) -> int:
    """A descriptor of root/parts…, each part opened with O_NOFOLLOW under the previous one,
    so no symlink anywhere below the root is followed (the root itself is the admin's).
    Raises NotADirectoryError/OSError(ELOOP) when a part is a file or a symlink."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            child = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(root: str, name: str) -> BinaryIO:
    *parts, last = name.split("/")
    try:
        dir_fd = open_dir(root, parts)
    except (NotADirectoryError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise NotARegularFile(errno.ENOENT, "a symlink or file stands in the path", name) from exc
    try:
        # lstat first: opening a fifo or a device could block or act; O_NOFOLLOW and the
        # fstat below close the window between the two.
        if not stat.S_ISREG(os.stat(last, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            raise NotARegularFile(errno.ENOENT, "not a regular file", name)
        try:
            fd = os.open(
                last, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
            )
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise NotARegularFile(errno.ENOENT, "not a regular file", name) from exc
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotARegularFile(errno.ENOENT, "not a regular file", name)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def local_open_regular(*, root: str, path: str) -> BinaryIO:
    """`root/path` on the local disk for reading, through no symlink below `root` and only if
    it is a regular file (FileNotFoundError otherwise): for the worker reading what a script
    left in its working folder, which may hold links to the server's own files."""
    return open_regular(root, path)


def open_stored(name: str) -> BinaryIO:
    """A stored file for reading; FileNotFoundError when it is missing, a symlink, a folder
    or a special file."""
    root = storage_root()
    if root is None:  # object storage has no symlinks
        return default_storage.open(name, "rb")
    return open_regular(root, name)


def is_regular(root: str, name: str, folders: dict[str, bool]) -> bool:
    """Whether `name` is a regular file reached through real folders; `folders` caches the
    verdict per folder across one listing."""
    folder, last = posixpath.split(name)
    if folder not in folders:
        try:
            fd = open_dir(root, folder.split("/"))
        except OSError:
            folders[folder] = False
        else:
            os.close(fd)
            folders[folder] = True
    if not folders[folder]:
        return False
    try:
        return stat.S_ISREG(os.lstat(os.path.join(root, folder, last)).st_mode)
    except OSError:
        return False
