"""Snapshots on the server side: a submitted source directory arrives as a zip, is checked
whole (paths, file count, unpacked size) before anything is stored, and lands in the run's
`snapshot/` tree; a worker copies that tree into the run's working directory.

The SDK packs the zip (runs/sdk/submit.py) and checks the same size limit before uploading.
"""

import contextlib
import shutil
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from runs import limits, storage
from runs.errors import InvalidInput, TooLarge
from runs.models import Run, RunFile
from runs.services.files import StagedTree, run_files_place_tree, tree_staged

PREFIX = "snapshot/"


def snapshot_check(*, archive: BinaryIO) -> list[zipfile.ZipInfo]:
    """The zip's file entries, after checking them all; raises before anything is written."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise InvalidInput("snapshot: not a zip archive.", field="snapshot") from None
    entries = [info for info in zf.infolist() if not info.is_dir()]
    if len(entries) > limits.SNAPSHOT_MAX_FILES:
        raise TooLarge(
            f"snapshot: {len(entries)} files; the limit is {limits.SNAPSHOT_MAX_FILES}. "
            "Leave generated files out with a .runstudioignore file.",
            field="snapshot",
        )
    total = sum(info.file_size for info in entries)
    if total > limits.SNAPSHOT_MAX_BYTES:
        raise TooLarge(
            f"snapshot: {total / 1e6:.1f} MB unpacked; the limit is "
            f"{limits.SNAPSHOT_MAX_BYTES / 1e6:.0f} MB. Leave data and outputs out with a "
            ".runstudioignore file, or read them from storage inside the script.",
            field="snapshot",
        )
    files: set[str] = set()
    for info in entries:
        kind = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0
        if kind not in (0, stat.S_IFREG):
            what = "a symlink" if kind == stat.S_IFLNK else "a special file"
            raise InvalidInput(
                f"snapshot: {info.filename!r} is {what}; a snapshot holds regular files only "
                "(symlinks are never stored or followed).",
                field="snapshot",
            )
        path = storage.check_path(PREFIX + info.filename, field="snapshot")
        if path in files:
            raise InvalidInput(f"snapshot: {path!r} appears twice.", field="snapshot")
        files.add(path)
    folders = {path.rsplit("/", i)[0] for path in files for i in range(1, path.count("/"))}
    if clash := sorted(files & folders):
        raise InvalidInput(f"snapshot: {clash[0]!r} is both a file and a folder.", field="snapshot")
    return entries


@contextlib.contextmanager
def snapshot_staged(*, archive: BinaryIO) -> Iterator[StagedTree]:
    """Checks the zip, then unpacks every member aside (tree_staged), each checked
    against the size its entry declares and its CRC, before any run exists: call it outside
    the transaction that creates the run."""
    entries = snapshot_check(archive=archive)
    archive.seek(0)
    with zipfile.ZipFile(archive) as zf:

        def members() -> Iterator[tuple[str, BinaryIO, int]]:
            for info in entries:
                with zf.open(info) as member:
                    path = storage.check_path(PREFIX + info.filename, field="snapshot")
                    yield path[len(PREFIX) :], member, info.file_size

        try:
            with tree_staged(members()) as staged:
                yield staged
        except zipfile.BadZipFile as exc:
            raise InvalidInput(f"snapshot: the zip is damaged ({exc}).", field="snapshot") from None
        except InvalidInput as exc:  # a member shorter or longer than declared, or a bad CRC
            raise InvalidInput(f"snapshot: {exc.message}", field="snapshot") from None


def snapshot_place(*, run: Run, staged: StagedTree) -> list[str]:
    """The staged snapshot becomes the run's `snapshot/` tree: one rename and one insert."""
    run_files_place_tree(run=run, folder=PREFIX.rstrip("/"), staged=staged)
    return [path for path, _ in staged.files]


def snapshot_store(*, run: Run, archive: BinaryIO) -> list[str]:
    """Checks the zip and stores it as the run's `snapshot/` tree, whole or not at all."""
    with snapshot_staged(archive=archive) as staged:
        return snapshot_place(run=run, staged=staged)


def snapshot_unpack(*, run: Run, destination: Path) -> int:
    """Copies the run's `snapshot/` tree into `destination`; returns the number of files."""
    count = 0
    for record in RunFile.objects.filter(run=run, path__startswith=PREFIX).order_by("path"):
        relative = record.path[len(PREFIX) :]
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with (
            storage.run_file_open(run=run, path=record.path) as source,
            open(target, "xb") as out,  # never through a symlink already in the workdir
        ):
            shutil.copyfileobj(source, out, storage.CHUNK)
        count += 1
    return count
