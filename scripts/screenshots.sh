#!/usr/bin/env bash
# Real screenshots of the TUI as a terminal draws it: the binary runs in an
# xterm on a virtual X server (Xvfb), keys are typed with xdotool, and the
# xterm window is captured with ImageMagick's `import`. Nothing is mocked:
# it is a live run of CONFIG in a throwaway sessions folder.
#
#   scripts/screenshots.sh                 # writes screenshots/tui-*.png
#   CONFIG=configs/synthetic.toml OUT=/tmp/shots scripts/screenshots.sh
#
# Writes, into OUT (default screenshots/):
#   tui-overview.png         160x48, all four panes, as the TUI opens
#   tui-curves.png           curves pane focused, log scale, some smoothing
#   tui-contributions.png    contributions pane focused, next loss's transform
#   tui-hyperparameters.png  hyperparameters pane, the editor open on aid.iterations
#   tui-help.png             the help overlay (?)
#   tui-detach.png           the quit dialog (q): detach, or stop the run
#   tui-sessions.png         the sessions view (r) with two more sessions
#   tui-sessions-overlay.png two of them marked and overlaid (Space, o)
#   tui-80x24.png            the same run at 80x24: one pane and a tab bar
#
# Needs Xvfb, xterm, xdotool, ImageMagick and the DejaVu fonts, e.g.
#   apt-get install -y xvfb xterm xdotool imagemagick fonts-dejavu-core
# Uses target/release/meltr-tui when it exists, else target/debug/meltr-tui
# (build one first). The default config's video-text workload pretrains its
# foundation model on first use (about a minute, cached afterwards); the
# script waits for that and then until training is well underway.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${CONFIG:-configs/default.toml}
OUT=${OUT:-screenshots}
FONT=${FONT:-DejaVu Sans Mono}
FONT_SIZE=${FONT_SIZE:-11}
# Capture once the run has done this fraction of train.steps (or ended).
UNDERWAY=${UNDERWAY:-0.3}
# Longest wait for the run to get there, seconds (pretraining included).
TIMEOUT=${TIMEOUT:-900}

BIN=target/release/meltr-tui
[ -x "$BIN" ] || BIN=target/debug/meltr-tui
if [ ! -x "$BIN" ]; then
    echo "no meltr-tui binary: run cargo build (or make build) first" >&2
    exit 1
fi
for tool in Xvfb xterm xdotool import; do
    if ! command -v "$tool" >/dev/null; then
        echo "$tool is missing: apt-get install -y xvfb xterm xdotool imagemagick fonts-dejavu-core" >&2
        exit 1
    fi
done
if ! fc-list : family | grep -i -F "$FONT" >/dev/null; then
    echo "font '$FONT' not found: apt-get install -y fonts-dejavu-core (or set FONT)" >&2
    exit 1
fi
mkdir -p "$OUT"

tmp=$(mktemp -d)
xvfb_pid=""
xterm_pid=""
cleanup() {
    # Closing the xterm ends the TUI; the run lives in a detached runner,
    # which SIGTERM stops cleanly.
    if [ -n "$xterm_pid" ] && kill -0 "$xterm_pid" 2>/dev/null; then
        kill "$xterm_pid" 2>/dev/null || true
    fi
    tui_pid=$(sed -nE 's/.*"pid": *([0-9]+).*/\1/p' "$tmp"/sessions/*/session.json 2>/dev/null | head -n1)
    [ -n "$tui_pid" ] && kill -TERM "$tui_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        [ -n "$tui_pid" ] && kill -0 "$tui_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -n "$xvfb_pid" ]; then
        kill "$xvfb_pid" 2>/dev/null || true
        wait "$xvfb_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# A virtual screen; Xvfb picks a free display number and tells us.
Xvfb -displayfd 3 -screen 0 1920x1200x24 -nolisten tcp 3>"$tmp/display" 2>"$tmp/xvfb.log" &
xvfb_pid=$!
for _ in $(seq 1 100); do
    [ -s "$tmp/display" ] && break
    sleep 0.1
done
[ -s "$tmp/display" ] || { echo "Xvfb did not start:" >&2; cat "$tmp/xvfb.log" >&2; exit 1; }
export DISPLAY=":$(head -n1 "$tmp/display")"
export LANG=C.UTF-8 LC_ALL=C.UTF-8

# The TUI in a 160x48 xterm: dark background, the 16 standard colours.
# stderr (pretraining progress, errors before the TUI opens) goes to a file.
xterm -name meltrshot -fa "$FONT" -fs "$FONT_SIZE" -geometry 160x48+0+0 \
    -bg '#111418' -fg '#d8dadc' -bw 0 -b 6 +sb -u8 \
    -xrm 'XTerm*allowTitleOps: false' \
    -e sh -c 'exec "$0" --sessions-dir "$1" new -c "$2" 2>"$3"' \
    "$BIN" "$tmp/sessions" "$CONFIG" "$tmp/stderr.log" &
xterm_pid=$!
wid=$(xdotool search --sync --classname meltrshot | head -n1)
# No window manager: the keyboard follows the pointer; put it on the xterm.
xdotool mousemove --sync 40 40
xdotool windowfocus --sync "$wid" 2>/dev/null || true

# Wait until the run is well underway (or over).
deadline=$((SECONDS + TIMEOUT))
step=0
steps=0
while :; do
    if ! kill -0 "$xterm_pid" 2>/dev/null; then
        echo "the TUI exited early:" >&2
        cat "$tmp/stderr.log" >&2
        exit 1
    fi
    session=$(ls -d "$tmp"/sessions/*/ 2>/dev/null | head -n1 || true)
    if [ -n "$session" ] && [ -f "$session/metrics.jsonl" ]; then
        steps=$(sed -nE 's/.*"steps": *([0-9]+).*/\1/p' "$session/session.json")
        step=$({ grep '"kind":"train"' "$session/metrics.jsonl" || true; } | tail -n1 |
            sed -nE 's/^\{"step":([0-9]+).*/\1/p')
        status=$(sed -nE 's/.*"status": *"([a-z]+)".*/\1/p' "$session/session.json")
        if [ -n "$step" ] && [ -n "$steps" ] &&
            { [ "$status" != running ] || awk -v s="$step" -v n="$steps" -v f="$UNDERWAY" 'BEGIN { exit !(s >= n * f) }'; }; then
            break
        fi
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "timed out after ${TIMEOUT}s waiting for the run (step ${step:-0}/${steps:-?})" >&2
        tail -n 20 "$tmp/stderr.log" >&2
        exit 1
    fi
    sleep 1
done
echo "run at step $step/$steps; capturing"

keys() { xdotool key --delay 120 "$@"; sleep 1; }
shot() {
    sleep 0.5
    import -window "$wid" "$OUT/$1"
    echo "wrote $OUT/$1"
}

shot tui-overview.png
keys 1 l s s s
shot tui-curves.png
keys 2 t
shot tui-contributions.png
keys 3 Home Down Return
shot tui-hyperparameters.png
keys Escape question
shot tui-help.png
keys Escape q
shot tui-detach.png
keys n 1 l
# The sessions view (r), with two short synthetic runs beside this one, and
# their training losses overlaid (Space marks, o overlays).
for seed in 0 1; do
    "$BIN" --sessions-dir "$tmp/sessions" run --headless -c configs/synthetic.toml --steps 60 \
        --set workload.seed=$seed -n "synthetic-seed$seed" >/dev/null 2>&1
done
keys r
shot tui-sessions.png
keys Down space space o
shot tui-sessions-overlay.png
keys Escape Escape 1
xdotool windowsize --usehints --sync "$wid" 80 24 2>/dev/null || xdotool windowsize --usehints "$wid" 80 24
sleep 1
shot tui-80x24.png
