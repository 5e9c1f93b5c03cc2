#!/usr/bin/env bash
# Build MetaGUI for Linux from a checkout: a one-folder app (PyInstaller, CPU torch), a .tar.gz
# of it and a .deb that installs it under /opt/metagui.
#
#   installer/linux/build.sh                 # makes installer/build/venv (torch CPU + PyInstaller)
#   installer/linux/build.sh --python PY     # uses PY's environment instead (needs MetaGUI's
#                                            # dependencies and PyInstaller installed there)
#
# Output in installer/dist/: metagui/ (the app), metagui-VERSION-linux-ARCH.tar.gz,
# metagui_VERSION_ARCH.deb and build.log. Then run installer/linux/smoke.sh.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
py=""
while [ $# -gt 0 ]; do
    case "$1" in
        --python) py=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
work=installer/build
dist=installer/dist
mkdir -p "$work" "$dist"
exec > >(tee "$dist/build.log") 2>&1
start=$(date +%s)
stamp() { echo "[build $(( $(date +%s) - start ))s] $*"; }

if [ -z "$py" ]; then
    if [ ! -x "$work/venv/bin/python" ]; then
        stamp "build venv: $work/venv (CPU torch, MetaGUI's dependencies, PyInstaller)"
        python3 -m venv "$work/venv"
    fi
    # CPU torch: the PyTorch CPU index where no local wheel is configured (PIP_INDEX_URL etc. win)
    "$work/venv/bin/python" -m pip install -q --disable-pip-version-check \
        --extra-index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" . "pyinstaller>=6.10,<7"
    py="$work/venv/bin/python"
fi
if "$py" -c "import torch, sys; sys.exit(0 if torch.version.cuda is None else 1)"; then :; else
    echo "build.sh: $py has a CUDA torch; the app ships CPU torch (pip install torch --index-url https://download.pytorch.org/whl/cpu)" >&2
    exit 2
fi
version=$(PYTHONPATH="$root" "$py" -c "import metagui; print(metagui.__version__)")
arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
stamp "MetaGUI $version for $arch with $("$py" -c 'import torch, PyInstaller; print("torch", torch.__version__, "PyInstaller", PyInstaller.__version__)')"

stamp "icons"
QT_QPA_PLATFORM=offscreen "$py" installer/make_icons.py "$work/icons"

stamp "PyInstaller"
rm -rf "$dist/metagui"
"$py" -m PyInstaller --noconfirm --log-level WARN \
    --distpath "$dist" --workpath "$work/pyinstaller" installer/metagui.spec
app="$dist/metagui"
"$app/metagui" --version

stamp "tar.gz"
tarball="$dist/metagui-$version-linux-$(uname -m).tar.gz"
tar -C "$dist" -czf "$tarball" metagui

if ! command -v dpkg-deb >/dev/null; then
    stamp "no dpkg-deb here: skipped the .deb"
    exit 0
fi
stamp ".deb"
stage="$work/deb"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/opt" "$stage/usr/bin"
cp -a "$app" "$stage/opt/metagui"
ln -s ../../opt/metagui/metagui "$stage/usr/bin/metagui"
install -D -m 644 resources/metagui.desktop "$stage/usr/share/applications/metagui.desktop"
install -D -m 644 resources/io.github.metagui.MetaGUI.metainfo.xml \
    "$stage/usr/share/metainfo/io.github.metagui.MetaGUI.metainfo.xml"
install -D -m 644 resources/metagui-mime.xml "$stage/usr/share/mime/packages/io.github.metagui.MetaGUI.xml"
install -D -m 644 metagui/resources/app.svg "$stage/usr/share/icons/hicolor/scalable/apps/io.github.metagui.MetaGUI.svg"
for png in "$work"/icons/metagui-*.png; do
    size=$(basename "$png" .png); size=${size#metagui-}
    install -D -m 644 "$png" "$stage/usr/share/icons/hicolor/${size}x${size}/apps/io.github.metagui.MetaGUI.png"
done
installed_kb=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$installed_kb/" \
    installer/linux/deb/control > "$stage/DEBIAN/control"
install -m 755 installer/linux/deb/postinst "$stage/DEBIAN/postinst"
install -m 755 installer/linux/deb/postrm "$stage/DEBIAN/postrm"
deb="$dist/metagui_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb"
rm -rf "$stage"
stamp "done: $(du -sh "$app" | cut -f1) app folder"
ls -l "$tarball" "$deb"
