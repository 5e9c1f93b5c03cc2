"""What every hostile-input case checks: the exit code, one readable line and no traceback on
stderr, and that no file it was not asked to write changed (sha256 before and after).

Special files (FIFOs, devices, links) are recorded by what they are, never opened."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from metagui.cli import main


class TookTooLong(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail instead of hanging: a blocking open() of a FIFO is interrupted by the alarm."""

    def expire(*_):
        raise TookTooLong(f"the command did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: sha256 of regular files, what the others are (unopened)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[str(p)] = f"link -> {os.readlink(p)}"
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                out[str(p)] = h.hexdigest()
            else:
                out[str(p)] = f"mode {stat.S_IFMT(st.st_mode):o}"
    return out


def cli(argv: list[str], capsys, seconds: float = 60) -> tuple[int, str, str]:
    """Run ``metagui ARGV`` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    with deadline(seconds):
        rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def refused(rc: int, err: str, match: str) -> str:
    """A non-zero exit with exactly one ``metagui: error:`` line (besides problem summaries)
    that contains ``match`` (case-insensitive); no traceback."""
    assert "Traceback" not in err, err
    assert rc != 0, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("metagui: ") or "error:" in line]
    errors = [line for line in err.strip().splitlines() if line.startswith("metagui: error:")]
    assert len(errors) == 1 and lines == errors, err
    assert match.lower() in errors[0].lower(), (match, errors[0])
    return errors[0]


def problem_line(err: str) -> str:
    """The one-line problem summary on stderr (there must be exactly one)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if "problem" in line and line.startswith("metagui: ")]
    assert len(lines) == 1, err
    return lines[0]


# --- tiny files ------------------------------------------------------------------------------
def png(seed: int, size: int = 12) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's
    header: checked before a single pixel is decoded)."""
    data = bytearray(png(0, 4))
    ihdr = data.index(b"IHDR")
    struct.pack_into(">II", data, ihdr + 4, width, height)
    struct.pack_into(">I", data, ihdr + 17, zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


def image_folder(root: Path, classes: int = 4, per_class: int = 3) -> Path:
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / f"c{c}" / f"{i}.png").write_bytes(png(100 * c + i))
    return root


def image_zip(path: Path, extra: dict[str, bytes] | None = None, classes: int = 4, per_class: int = 3,
              compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for c in range(classes):
            for i in range(per_class):
                zf.writestr(f"c{c}/{i}.png", png(100 * c + i))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def patch_central_entry(path: Path, member: str, **fields: int) -> None:
    """Forge fields of ``member``'s central-directory entry (``usize``, ``csize``, ``method``,
    ``flags``), and the same in its local header, as a hostile tool would."""
    raw = bytearray(path.read_bytes())
    offsets = {"flags": 8, "method": 10, "csize": 20, "usize": 24}
    local = {"flags": 6, "method": 8, "csize": 18, "usize": 22}
    name = member.encode()
    i = 0
    while True:
        i = raw.index(b"PK\x01\x02", i)
        n = struct.unpack_from("<H", raw, i + 28)[0]
        if raw[i + 46 : i + 46 + n] == name:
            break
        i += 4
    header = struct.unpack_from("<I", raw, i + 42)[0]
    for key, value in fields.items():
        fmt = "<H" if key in ("flags", "method") else "<I"
        struct.pack_into(fmt, raw, i + offsets[key], value)
        struct.pack_into(fmt, raw, header + local[key], value)
    path.write_bytes(bytes(raw))


def flip_member_byte(path: Path, member: str, at: int = 20) -> None:
    """Damage ``member``'s data (its CRC no longer matches)."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + at] ^= 0xFF
    path.write_bytes(bytes(raw))


def cli_outside_capsys(argv: list[str]) -> tuple[int, str, str]:
    """``cli`` for module-scoped fixtures (no capsys there)."""
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), deadline(300):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()
