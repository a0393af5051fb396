"""What tfvision writes: atomic replacement, provable ownership, and its own temporaries.

The rule: tfvision deletes or replaces only what it can prove it wrote.
- A folder artifact (an export, a prepared dataset) holds MARKER, a JSON file naming its kind and
  every file tfvision put there. It is replaced only by an artifact of the same kind, only when
  asked (`--force`), and only while it holds nothing but those files.
- A temporary folder is named `.<target>.tfvision-tmp-<pid>-<token>` and holds TEMP_MARKER with
  that token. Stale ones are removed only for the target being written, only with a matching
  marker, and only once their process is gone: a look-alike name is never enough.
- A temporary file `.<name>.tfvision-tmp-<pid>-<token><suffix>` is removed by the process that
  made it; stale ones are removed only inside a folder tfvision owns (a run directory).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tfvision_cli.errors import UsageError
from tfvision_cli.text import first_few

MARKER = ".tfvision-artifact.json"
TEMP_MARKER = ".tfvision-temp"
_TEMP = re.compile(r"^\.(?P<name>.+)\.tfvision-tmp-(?P<pid>\d{1,10})-(?P<token>[0-9a-f]{16})")


def temp_name(name: str, suffix: str = "") -> str:
    """A temporary name beside `name` that only this process uses."""
    return f".{temp_stem(name)}.tfvision-tmp-{os.getpid()}-{secrets.token_hex(8)}{suffix}"


# A file name may take 255 bytes; the temporary spelling adds up to 48 to the target's.
_MAX_STEM_BYTES = 255 - 48


def temp_stem(name: str) -> str:
    """The target's name as its temporaries spell it: the name itself, or for a name too long
    to take the temporary spelling (a legal 240-byte file name), its first bytes and a hash of
    the whole, so the temporary is still a legal name and still tells whose it is."""
    raw = os.fsencode(name)
    if len(raw) <= _MAX_STEM_BYTES:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:16]
    head = raw[: _MAX_STEM_BYTES - 17].decode("utf-8", "ignore")
    return f"{head}~{digest}"


@contextmanager
def atomic_file(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary path beside path; renamed onto path if the block succeeds.

    suffix: an ending some writers insist on (".keras", ".png", ".weights.h5").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(temp_name(path.name, suffix))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary name in the same folder, fsync, rename."""
    with atomic_file(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def create_text(path: Path, text: str) -> bool:
    """Write path whole, only if it does not exist yet: False when another writer was first.

    The text goes to a temporary name and is then hard-linked to path, which fails if path
    exists, so two processes creating one file never both win and a reader never sees half.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(temp_name(path.name))
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: exclusive create, then write
            with open(path, "x") as f:
                f.write(text)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def is_temporary(name: str) -> bool:
    """Whether a name is tfvision's temporary spelling (not proof: see the module's rule)."""
    return _TEMP.match(name) is not None


def write_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def process_alive(pid: int) -> bool:
    """Whether a process with this PID runs (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _stale(match: re.Match) -> bool:
    pid = int(match.group("pid"))
    return pid != os.getpid() and not process_alive(pid)


@contextmanager
def temp_dir(parent: Path, name: str) -> Iterator[Path]:
    """A new, marked temporary folder in parent for the target `name`, removed when the block
    ends. Its name is chosen before it is made and it is made inside the `try`, so an interrupt
    at any instant (SIGTERM just after mkdir) leaves nothing behind."""
    tmp = Path(parent) / temp_name(name)
    try:
        tmp.mkdir()
        (tmp / TEMP_MARKER).write_text(_TEMP.match(tmp.name).group("token"))
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temp_dirs(parent: Path, name: str) -> None:
    """Remove the temporary folders for target `name` that a killed tfvision left in parent."""
    parent = Path(parent)
    if not parent.is_dir():
        return
    for p in parent.iterdir():
        m = _TEMP.fullmatch(p.name)
        if not m or m.group("name") != temp_stem(name) or p.is_symlink() or not p.is_dir():
            continue
        try:
            mine = (p / TEMP_MARKER).read_text() == m.group("token")
        except OSError:
            mine = False
        if mine and _stale(m):
            shutil.rmtree(p, ignore_errors=True)


def remove_stale_temp_files(owned_folder: Path) -> None:
    """Remove temporary files a killed tfvision left in a folder it owns (a run directory)."""
    folder = Path(owned_folder)
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        m = _TEMP.match(p.name)
        if m and (p.is_file() or p.is_symlink()) and _stale(m):
            p.unlink(missing_ok=True)


def read_marker(folder: Path) -> dict | None:
    """The ownership marker of a folder tfvision wrote, or None."""
    try:
        marker = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or not isinstance(marker.get("files"), list):
        return None
    return marker if isinstance(marker.get("kind"), str) else None


def _files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if (p.is_file() or p.is_symlink()) and p.name not in (MARKER, TEMP_MARKER)
    )


def check_replaceable(target: Path, kind: str, force: bool, flag: str = "--force") -> None:
    """Refuse (exit 2) unless target is absent, an empty folder, or (with force) a tfvision
    artifact of this kind that holds only the files tfvision wrote."""
    target = Path(target)
    if target.is_symlink():
        raise UsageError(f"{target} is a symbolic link; give the real folder")
    if not target.exists():
        return
    if not target.is_dir():
        raise UsageError(f"{target} is a file, not a folder for a {kind}")
    if not any(target.iterdir()):
        return
    marker = read_marker(target)
    if marker is None:
        raise UsageError(
            f"{target} already exists and was not written by tfvision; refusing to replace it",
            hint="choose another --out",
        )
    if marker["kind"] != kind:
        raise UsageError(f"{target} holds a tfvision {marker['kind']}, not a {kind}")
    extra = sorted(set(_files(target)) - set(marker["files"]))
    if extra:
        shown = first_few(extra, 3)
        raise UsageError(
            f"{target} holds files tfvision did not write ({shown}); refusing to replace it"
        )
    if not force:
        raise UsageError(f"{target} already holds a {kind}", hint=f"{flag} replaces it")


@contextmanager
def atomic_dir(target: Path, kind: str, force: bool = False, flag: str = "--force"):
    """Yields a marked temporary folder beside target; when the block succeeds it becomes
    target (marked as a tfvision `kind`), replacing what `check_replaceable` allows."""
    target = Path(target)
    check_replaceable(target, kind, force, flag)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(target.parent, target.name)
    with temp_dir(target.parent, target.name) as tmp:
        yield tmp
        (tmp / TEMP_MARKER).unlink()
        write_json(tmp / MARKER, {"kind": kind, "files": _files(tmp)})
        check_replaceable(target, kind, force, flag)  # nothing was added there meanwhile
        _swap(tmp, target)


def _swap(new: Path, target: Path) -> None:
    """Move new into place at target; a replaced target becomes a marked temporary first, so a
    kill between the renames leaves nothing that a later run cannot recognise and remove."""
    if target.exists() and any(target.iterdir()):
        old = target.parent / temp_name(target.name)
        try:
            (target / TEMP_MARKER).write_text(_TEMP.match(old.name).group("token"))
            os.rename(target, old)
            os.rename(new, target)
        except BaseException:  # interrupted (Ctrl-C, SIGTERM) before the new one is in place
            if old.exists() and not target.exists():
                os.rename(old, target)
            (target / TEMP_MARKER).unlink(missing_ok=True)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        if target.exists():
            target.rmdir()
        os.rename(new, target)


def metadata_path(artifact: Path) -> Path:
    """m.onnx -> m.onnx.json: the metadata of an export written as one file. One per artifact,
    so m.onnx and m.tflite in one folder never share (or overwrite) each other's."""
    artifact = Path(artifact)
    return artifact.with_name(f"{artifact.name}.json")


def read_metadata(artifact: Path) -> dict:
    """tfvision's metadata of an exported file: m.onnx.json beside it; else a metadata.json (an
    export folder) or an older m.metadata.json, only where it names this artifact. {} if none."""
    artifact = Path(artifact)
    own = _read_json_dict(metadata_path(artifact))
    if own:
        return own
    for candidate in (
        artifact.parent / "metadata.json",
        artifact.with_name(f"{artifact.stem}.metadata.json"),
    ):
        meta = _read_json_dict(candidate)
        if meta.get("artifact") == artifact.name:
            return meta
    return {}


def is_tfvision_metadata(meta: dict, artifact: Path) -> bool:
    """True when meta is the metadata tfvision wrote for artifact (a file of that name)."""
    return (
        "tfvision_version" in meta
        and "format" in meta
        and meta.get("artifact") == Path(artifact).name
    )


def _read_json_dict(path: Path) -> dict:
    try:
        if path.stat().st_size > 1 << 20:
            return {}
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


PNG_SOFTWARE = "tfvision"  # the PNG tag that proves a picture is tfvision's


def is_tfvision_png(path: Path) -> bool:
    """True for a PNG file (not a link) whose Software tag says tfvision wrote it; only PNG is
    read, whatever the file's name."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with Image.open(path, formats=["PNG"]) as im:
            return im.format == "PNG" and str(im.info.get("Software", "")) == PNG_SOFTWARE
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return False


_TEMP_EXACT = re.compile(
    r"\.(?P<name>.+)\.tfvision-tmp-(?P<pid>\d{1,10})-(?P<token>[0-9a-f]{16})(?P<suffix>(\.[a-z0-9]+)*)"
)


def is_own_temporary(path: Path, names: frozenset[str] | set[str]) -> bool:
    """True when path is provably a temporary tfvision made for one of `names`: its whole name
    is tfvision's spelling for one of them, and a folder also holds the marker with its token.
    A look-alike (`.thesis.tfvision-tmp-1-<hex>-DRAFTS`) is never one."""
    path = Path(path)
    m = _TEMP_EXACT.fullmatch(path.name)
    if m is None or m.group("name") not in {temp_stem(n) for n in names} or path.is_symlink():
        return False
    if path.is_dir():
        try:
            return (path / TEMP_MARKER).read_text() == m.group("token")
        except OSError:
            return False
    return path.is_file()


def export_folder_is_ours(folder: Path) -> bool:
    """True for a folder tfvision exported that holds nothing but the files it recorded."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return False
    marker = read_marker(folder)
    if marker is None or marker["kind"] != "export":
        return False
    return set(_files(folder)) <= set(marker["files"])


def check_new_names(folder: Path, names: list[str], kind: str) -> None:
    """Before a command writes `names` into folder: refuse (exit 2, nothing written) if any of
    them exists and tfvision cannot prove it wrote it (recorded in the folder's marker of this
    kind, or a PNG carrying its tag). Every name is checked before the first is written."""
    folder = Path(folder)
    if folder.is_symlink():
        raise UsageError(f"{folder} is a symbolic link; give the real folder")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file, not a folder")
    marker = read_marker(folder) if folder.is_dir() else None
    recorded = set(marker["files"]) if marker and marker["kind"] == kind else set()
    taken = [
        n
        for n in names
        if (folder / n).exists() or (folder / n).is_symlink()
        if not ((n in recorded and (folder / n).is_file()) or is_tfvision_png(folder / n))
    ]
    if taken:
        raise UsageError(
            f"{folder} already holds {first_few(taken, 3)}, which tfvision did not "
            "write; refusing to replace it (nothing was written)",
            hint="choose another --out",
        )


def record_files(folder: Path, names: list[str], kind: str) -> None:
    """Add names to the folder's marker of this kind: files tfvision may replace later."""
    marker = read_marker(folder)
    recorded = set(marker["files"]) if marker and marker["kind"] == kind else set()
    write_json(Path(folder) / MARKER, {"kind": kind, "files": sorted(recorded | set(names))})
