#!/usr/bin/env bash
# Install the system libraries napari/Qt need (Xvfb, Mesa GL, xcb) when they are missing.
# As root they are installed with apt-get; otherwise the missing ones are listed.
set -euo pipefail
PKGS="xvfb xauth libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 \
libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 \
libxcb-cursor0 libdbus-1-3 libfontconfig1"
command -v dpkg-query >/dev/null 2>&1 || { echo "sysdeps: not a Debian-like system; install Xvfb and Mesa GL yourself" >&2; exit 0; }
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "sysdeps: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  echo "sysdeps: missing system packages:$missing" >&2
  echo "sysdeps: install them with: sudo apt-get install$missing" >&2
fi
