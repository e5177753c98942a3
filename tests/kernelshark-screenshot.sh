#!/usr/bin/env bash
# Opens a trace.dat in KernelShark on a virtual display and saves a screenshot of it: how
# docs/kernelshark-timeline.png is made, and a check that KernelShark reads a file trace-reader
# wrote (each buffer is a stream of its own).
#
#   bash tests/kernelshark-screenshot.sh FILE.dat OUT.png
#
# Needs: kernelshark, xvfb, xdotool, imagemagick (Debian packages of those names).
set -euo pipefail
file=${1:?usage: $0 FILE.dat OUT.png}
out=${2:?usage: $0 FILE.dat OUT.png}
display=:$((90 + RANDOM % 9))
Xvfb "$display" -screen 0 1600x1000x24 >/dev/null 2>&1 &
xvfb=$!
trap 'kill $shark $xvfb 2>/dev/null || true' EXIT
export DISPLAY=$display
sleep 1
kernelshark "$file" >/dev/null 2>&1 &
shark=$!
sleep 6
# Running as root, KernelShark first asks whether to go on: yes.
xdotool key Return || true
sleep 2
window=$(xdotool search --onlyvisible --class kernelshark | head -1)
xdotool windowmove "$window" 0 0 windowsize "$window" 1600 1000
sleep 2
import -window root "$out"
echo "saved $out"
