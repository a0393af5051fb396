"""Zip and tar archives of image folders, extracted safely into a temporary folder.

Nothing is ever written outside the target: a member with an absolute path, a `..` part, a link
or a device file makes the whole archive refused, before anything is extracted. An archive whose
contents would not fit on the disk is refused too (the zip-bomb case).
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from tfvision_cli.errors import DataError, UsageError

SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def is_archive(path: Path) -> bool:
    name = Path(path).name.lower()
    return Path(path).is_file() and name.endswith(SUFFIXES)


def archive_stem(path: Path) -> str:
    name = Path(path).name
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def _check_name(archive: Path, name: str) -> None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and p.parts[0].endswith(":")):
        raise DataError(f"{archive}: refusing member {name!r}, which points outside the folder")


# the compression methods Python's zipfile reads (not deflate64, 9, nor PPMd, ...)
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


def _check_zip(archive: Path, zf: zipfile.ZipFile) -> int:
    total = 0
    for info in zf.infolist():
        _check_name(archive, info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DataError(f"{archive}: refusing member {info.filename!r}, a symbolic link")
        if info.flag_bits & 0x1:
            raise UsageError(
                f"{archive}: member {info.filename!r} is encrypted; tfvision reads no "
                "password-protected archive (extract it yourself and give the folder)"
            )
        if info.compress_type not in _ZIP_METHODS:
            name = "deflate64" if info.compress_type == 9 else f"method {info.compress_type}"
            raise UsageError(
                f"{archive}: member {info.filename!r} is compressed with {name}, which Python "
                "cannot read; zip it again with deflate, or give the extracted folder"
            )
        total += info.file_size
    return total


def _check_tar(archive: Path, tf: tarfile.TarFile) -> int:
    total = 0
    for m in tf.getmembers():
        _check_name(archive, m.name)
        if not (m.isfile() or m.isdir()):
            raise DataError(f"{archive}: refusing member {m.name!r}: only files and folders")
        total += m.size
    return total


def extract(archive: Path, target: Path) -> None:
    """Extract archive into target (an existing, empty folder) after checking every member."""
    archive = Path(archive)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _check_space(archive, _check_zip(archive, zf), target)
                zf.extractall(target)  # noqa: S202  (every member checked above)
            return
        with tarfile.open(archive) as tf:
            _check_space(archive, _check_tar(archive, tf), target)
            # the "data" filter re-checks what _check_tar did, inside tarfile itself
            tf.extractall(target, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{archive} is not a readable archive: {e}") from None
    except OSError as e:
        raise DataError(f"cannot extract {archive}: {e.strerror or e}") from None


def _check_space(archive: Path, size: int, target: Path) -> None:
    free = shutil.disk_usage(target).free
    if size > free:
        raise DataError(
            f"{archive} expands to {size / 1e9:.1f} GB but {target} has {free / 1e9:.1f} GB free"
        )


def extract_tree(archive: Path, target: Path) -> Path:
    """Extract archive into target (an empty folder the caller owns and removes) and return the
    image tree's root: an archive holding one top-level folder (photos.zip -> photos/<class>/)
    yields that folder."""
    extract(archive, target)
    root = target
    entries = [e for e in root.iterdir() if not e.name.startswith((".", "__MACOSX"))]
    while len(entries) == 1 and entries[0].is_dir():
        sub = [e for e in entries[0].iterdir() if not e.name.startswith(".")]
        if not any(e.is_dir() for e in sub):
            break  # entries[0] is itself a class folder of a one-class archive
        root, entries = entries[0], sub
    return root
