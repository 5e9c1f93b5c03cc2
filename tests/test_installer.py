import configparser
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_desktop_entry_installs_with_its_icon_and_metainfo(tmp_path):
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path)}
    out = subprocess.run(["sh", str(ROOT / "installer/linux/install-desktop-entry.sh")], env=env,
                         capture_output=True, text=True, check=True)
    assert str(tmp_path) in out.stdout
    entry = configparser.ConfigParser(interpolation=None)
    entry.read(tmp_path / "applications/metagui.desktop")
    section = entry["Desktop Entry"]
    assert section["Exec"].split()[0] == "metagui" and section["Type"] == "Application"
    icon = tmp_path / f"icons/hicolor/scalable/apps/{section['Icon']}.svg"
    assert icon.is_file() and b"<svg" in icon.read_bytes()[:400]
    meta = ET.parse(tmp_path / "metainfo/io.github.metagui.MetaGUI.metainfo.xml").getroot()
    assert meta.findtext("launchable") == "metagui.desktop"


def test_icons_for_the_installers_are_rendered_from_the_app_icon(tmp_path):
    from PIL import Image

    out = subprocess.run([sys.executable, str(ROOT / "installer/make_icons.py"), str(tmp_path)], capture_output=True,
                         text=True, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr
    for size in (16, 22, 24, 32, 48, 64, 128, 256, 512):
        with Image.open(tmp_path / f"metagui-{size}.png") as png:
            assert png.size == (size, size) and png.mode == "RGBA"
            corner, centre = png.getpixel((0, 0)), png.getpixel((size // 2, size // 4))
            assert corner[3] == 0 and centre[3] == 255  # rounded square on a transparent background
    with Image.open(tmp_path / "metagui.ico") as ico:
        assert (256, 256) in ico.info["sizes"] and (16, 16) in ico.info["sizes"]
    with Image.open(tmp_path / "metagui.icns") as icns:
        assert icns.format == "ICNS" and icns.size[0] >= 256


def test_the_desktop_entry_opens_metagui_bundles():
    entry = configparser.ConfigParser(interpolation=None)
    entry.read(ROOT / "resources/metagui.desktop")
    mime_types = entry["Desktop Entry"]["MimeType"].strip(";").split(";")
    mime = ET.parse(ROOT / "resources/metagui-mime.xml").getroot()
    ns = {"m": "http://www.freedesktop.org/standards/shared-mime-info"}
    declared = mime.find("m:mime-type", ns)
    assert declared.get("type") in mime_types and declared.find("m:glob", ns).get("pattern") == "*.metagui"
    assert "%F" in entry["Desktop Entry"]["Exec"] or "%f" in entry["Desktop Entry"]["Exec"]
