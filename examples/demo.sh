#!/usr/bin/env bash
# `make demo`: the main job on the shipped sample inputs, embedded defaults, outputs under out/.
set -euo pipefail
cd "$(dirname "$0")/.."
CSG=.venv/bin/csg
mkdir -p out
$CSG pose extract --image examples/images/moore_anyone-3.png -o out/moore_anyone-3.ref.json --overwrite
$CSG run --ref examples/images/moore_anyone-3.png --audio examples/audio/whisper_jfk.flac \
  -o out/demo.mp4 --overwrite
$CSG pose draw out/demo.pose.json -o out/demo.skeleton.mp4 --audio examples/audio/whisper_jfk.flac --overwrite
echo "demo outputs: out/demo.mp4 (video with audio), out/demo.pose.json (editable skeleton), out/demo.skeleton.mp4"
