"""Reading files the user points us at: only regular files, never more than a stated number
of bytes, in whatever text encoding their tools wrote.

A path can name anything: a FIFO or a device (opening one for reading can block forever, or
never reach its end), a broken link, a file far larger than a dataset item. Every reader of
user files (tables, images, zip members, configs, episodes and predict files) goes through
here, so each of those becomes one readable ``DataError`` naming the file, never a hang.
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
import zipfile
import zlib
from pathlib import Path

from metagui.core.errors import DataError

MIB = 1 << 20
MAX_ITEM_BYTES = 64 * MIB  # one image file or zip member; a config, episodes or predict file
MAX_TABLE_BYTES = 256 * MIB  # one training table (CSV / TSV / JSON Lines)

FALLBACK_ENCODINGS = ("cp1252", "latin-1")

_NONBLOCK = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a special file"


def _size(n: int) -> str:
    return f"{n / MIB:.0f} MB" if n >= MIB else f"{n} bytes"


def check_regular(path: str | os.PathLike[str], what: str = "file") -> os.stat_result:
    """The file's ``stat`` if ``path`` is a regular file (links followed), else a ``DataError``
    that says what it is instead. Nothing is opened."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise DataError(f"{what} {p} is a broken link (it points to {os.readlink(p)})") from None
        raise DataError(f"{what} not found: {p}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {what} {p}: {_reason(exc)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{what} {p} is {_kind(st.st_mode)}, not a regular file")
    return st


def read_bytes(path: str | os.PathLike[str], limit: int = MAX_ITEM_BYTES, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes. Opened without blocking (a FIFO
    swapped in after the check cannot hang us) and checked again once open."""
    p = Path(path)
    st = check_regular(p, what)
    if st.st_size > limit:
        raise DataError(f"{what} {p} is {_size(st.st_size)}, more than the {_size(limit)} a {what} may have")
    try:
        fd = os.open(p, os.O_RDONLY | _NONBLOCK)
    except OSError as exc:
        raise DataError(f"cannot read {what} {p}: {_reason(exc)}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DataError(f"{what} {p} changed into {_kind(os.fstat(fd).st_mode)} while being opened")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise DataError(f"cannot read {what} {p}: {_reason(exc)}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise DataError(f"{what} {p} is more than the {_size(limit)} a {what} may have")
    return data


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, display: str, limit: int = MAX_ITEM_BYTES) -> bytes:
    """One zip member's bytes, at most ``limit`` of them whatever its header claims; a damaged
    member (bad CRC, forged size, unsupported compression, encryption) is a ``DataError``."""
    if info.file_size > limit:
        raise DataError(f"{display} is {_size(info.file_size)}, more than the {_size(limit)} an item may have")
    if info.flag_bits & 0x1:
        raise DataError(f"{display} is encrypted; it cannot be read")
    try:
        with zf.open(info) as f:
            data = f.read(limit + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
            NotImplementedError, RuntimeError) as exc:
        raise DataError(f"{display} is damaged ({exc})") from None
    if len(data) > limit:
        raise DataError(f"{display} is more than the {_size(limit)} an item may have")
    if len(data) != info.file_size:
        raise DataError(f"{display} is damaged (its size does not match the zip's directory)")
    return data


def decode_text(raw: bytes, name: str, encoding: str = "") -> tuple[str, str]:
    """Text from bytes: ``encoding`` if given; else UTF-16 with a byte-order mark (Excel's
    "Unicode text"), UTF-8 (BOM optional), then cp1252 and latin-1. Returns the text and a
    note ("" for UTF-8 and UTF-16) that says which fallback was used, for the user to see."""
    if encoding:
        try:
            return raw.decode(encoding), ""
        except LookupError:
            raise DataError(f"unknown text encoding '{encoding}'") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"{name} is not valid {encoding} (byte {exc.start})") from None
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16"), ""
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode("utf-8-sig"), ""
    except UnicodeDecodeError:
        pass
    for enc in FALLBACK_ENCODINGS:
        try:
            text = raw.decode(enc)
        except UnicodeDecodeError:
            continue
        return text, f"{name} is not UTF-8; it was read as {enc}, check accented letters"
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


def read_text(path: str | os.PathLike[str], limit: int = MAX_ITEM_BYTES, what: str = "file",
              encoding: str = "", notes: list[str] | None = None) -> str:
    """A user's text file, read as :func:`decode_text` reads tables; the fallback note, if any,
    is appended to ``notes``."""
    p = Path(path)
    text, note = decode_text(read_bytes(p, limit, what), p.name, encoding)
    if note and notes is not None:
        notes.append(note)
    return text


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        if exc.errno == errno.EACCES or exc.errno == errno.EPERM:
            return "permission denied"
        return exc.strerror or str(exc)
    return str(exc)


def save_cache_json(path: Path, data: object, indent: int | None = 1) -> bool:
    """Write one of MetaGUI's own small JSON caches atomically (a temporary file, then a
    rename). False when the folder is not writable: losing a cache costs a recomputation."""
    import json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=indent), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        return False
    return True
