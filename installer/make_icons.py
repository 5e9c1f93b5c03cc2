"""Render MetaGUI's icon (metagui/resources/app.svg) into the files installers need:
PNGs in the hicolor theme sizes, a Windows .ico and a macOS .icns.

    python installer/make_icons.py OUT_DIR

Qt's SVG renderer draws the PNGs (the app's own icon, so no second source of truth);
Pillow packs them into .ico and .icns.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
ROOT = Path(__file__).resolve().parents[1]


def render(out: Path) -> list[Path]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841 (Qt needs one)
    renderer = QSvgRenderer(str(ROOT / "metagui/resources/app.svg"))
    if not renderer.isValid():
        raise SystemExit("make_icons: cannot read metagui/resources/app.svg")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        path = out / f"metagui-{size}.png"
        if not image.save(str(path)):
            raise SystemExit(f"make_icons: cannot write {path}")
        paths.append(path)
    return paths


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "installer/build/icons")
    render(out)
    from PIL import Image

    big = Image.open(out / "metagui-512.png").convert("RGBA")
    big.save(out / "metagui.ico", sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)])
    big.save(out / "metagui.icns")
    print(f"icons in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
