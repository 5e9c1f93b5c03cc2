#!/usr/bin/env bash
# Smoke test of the frozen Linux app, from its .deb, without installing it:
#
#   installer/linux/smoke.sh [DEB] [OUT]      # defaults: installer/dist/metagui_*.deb, installer/dist/smoke
#
# dpkg -x the .deb into OUT/root, then with the packaged /usr/bin/metagui launcher: --version;
# `tour` offscreen (every screenshot, no error); `train` on the built-in intents (short); the
# per-user store lands where a pip install puts it; `export` + `predict` on that run
# (installer/smoke_app.py); desktop-file-validate and appstreamcli validate on the packaged
# entry and metainfo; icons and the .metagui file type; then
# (under Xvfb, where xvfb-run exists) the time from launch to first window, cold (the app's
# files evicted from the page cache, a new user) and warm, and a screenshot of the window.
# Logs: OUT/logs/*.log and OUT/app/logs/*.log; figures: OUT/smoke.json. Exit status 0 when every check passed.
set -uo pipefail  # no -e: every check runs and reports; the exit status counts failures

root=$(cd "$(dirname "$0")/../.." && pwd)
deb=${1:-$(ls -t "$root"/installer/dist/metagui_*.deb 2>/dev/null | head -1)}
out=${2:-$root/installer/dist/smoke}
[ -n "$deb" ] && [ -f "$deb" ] || { echo "smoke: no .deb (build it: installer/linux/build.sh)" >&2; exit 2; }
deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")
rm -rf "$out"
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
logs=$out/logs
x=$out/root
# a user of its own: HOME and XDG folders inside OUT, nothing of the real user's is touched
export HOME=$out/home XDG_DATA_HOME= XDG_CONFIG_HOME= XDG_CACHE_HOME= METAGUI_DB= METAGUI_DATA_DIR=
unset XDG_DATA_HOME XDG_CONFIG_HOME XDG_CACHE_HOME METAGUI_DB METAGUI_DATA_DIR
mkdir -p "$HOME"
failures=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
step() {  # step NAME CMD...: run, log to logs/NAME.log, report
    local name=$1; shift
    local t0=$(date +%s.%N)
    if "$@" >"$logs/$name.log" 2>&1; then
        pass "$name ($(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')") s)"
    else
        fail "$name (exit $?; see $logs/$name.log)"; tail -5 "$logs/$name.log" | sed 's/^/     /'
        return 1
    fi
}

echo "smoke test of $deb"
dpkg -x "$deb" "$x" || { echo "smoke: dpkg -x failed" >&2; exit 2; }
bin=$x/usr/bin/metagui
[ -L "$bin" ] && [ -x "$(readlink -f "$bin")" ] && pass "launcher $(readlink "$bin")" || fail "no /usr/bin/metagui launcher into /opt/metagui"

# --version, tour, train, the per-user store, export, predict: as on Windows and macOS
python3 "$root/installer/smoke_app.py" --bin "$bin" --out "$out/app"
failures=$((failures + $?))

share=$x/usr/share
command -v desktop-file-validate >/dev/null && { step desktop-file-validate desktop-file-validate "$share/applications/metagui.desktop" || true; } \
    || fail "desktop-file-validate missing (apt install desktop-file-utils)"
command -v appstreamcli >/dev/null && { step appstreamcli appstreamcli validate --no-net "$share/metainfo/io.github.metagui.MetaGUI.metainfo.xml" || true; } \
    || fail "appstreamcli missing (apt install appstream)"
for size in 16 22 24 32 48 64 128 256 512; do
    [ -f "$share/icons/hicolor/${size}x${size}/apps/io.github.metagui.MetaGUI.png" ] || fail "icon ${size}x${size}"
done
[ -f "$share/icons/hicolor/scalable/apps/io.github.metagui.MetaGUI.svg" ] && [ -f "$share/mime/packages/io.github.metagui.MetaGUI.xml" ] \
    && pass "icons (9 sizes + scalable) and the .metagui file type" || fail "scalable icon or MIME type"

deb_bytes=$(stat -c %s "$deb")
unpacked_bytes=$(du -sb "$x" | cut -f1)
cold=null; warm=null; warm_runs=()
if command -v xvfb-run >/dev/null; then
    cat >"$out/first-window.sh" <<EOF
#!/usr/bin/env bash
# launch to first window, under this X server: prints seconds
t0=\$(date +%s.%N)
line=\$(METAGUI_FIRST_WINDOW_EXIT=1 "$bin" --db "$out/window.db" "\$@" | grep "^first window at ")
python3 -c "print(f'{\${line#first window at } - \$t0:.2f}')"
EOF
    chmod +x "$out/first-window.sh"
    rm -rf "$HOME/.local/share/metagui" "$HOME/.config"  # a first launch: no settings, no store
    # cold: the app's files out of the page cache (only these files; posix_fadvise DONTNEED)
    python3 - "$x/opt/metagui" <<'EOF'
import os, sys
for folder, _, files in os.walk(sys.argv[1]):
    for f in files:
        p = os.path.join(folder, f)
        if os.path.isfile(p) and not os.path.islink(p):
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
EOF
    if xvfb-run -a -s "-screen 0 1400x900x24" bash -c "
        $out/first-window.sh > $out/cold.txt
        for i in 1 2 3; do $out/first-window.sh >> $out/warm.txt; done
        METAGUI_FIRST_WINDOW_SHOT=$out/frozen-window.png $out/first-window.sh > /dev/null" >"$logs/first-window.log" 2>&1; then
        cold=$(cat "$out/cold.txt"); mapfile -t warm_runs <"$out/warm.txt"
        warm=$(printf '%s\n' "${warm_runs[@]}" | sort -n | sed -n 2p)  # median of 3
        pass "first window under Xvfb: cold ${cold} s, warm ${warm} s (median of ${warm_runs[*]}); screenshot $out/frozen-window.png"
    else
        fail "first window under Xvfb (see $logs/first-window.log)"
    fi
else
    echo "skip first-window timing: no xvfb-run"
fi

python3 - "$out/smoke.json" <<EOF
import json, sys
json.dump({"deb": "$deb", "deb_bytes": $deb_bytes, "unpacked_bytes": $unpacked_bytes,
           "first_window_cold_s": $cold, "first_window_warm_s": $warm,
           "failures": $failures}, open(sys.argv[1], "w"), indent=1)
EOF
echo "deb $(numfmt --to=si $deb_bytes)B, unpacked $(numfmt --to=si $unpacked_bytes)B; figures in $out/smoke.json"
if [ $failures -gt 0 ]; then echo "smoke: $failures check(s) failed"; exit 1; fi
echo "smoke: all checks passed"
