import configparser
import os
import subprocess
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
