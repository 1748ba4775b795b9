#!/usr/bin/env bash
# Builds the workspace on a clean Debian 12 (bookworm) root file system, to catch what a fresh
# machine lacks and an already-provisioned one (CI, a developer's box) hides — e.g. a package
# that install-deps.sh forgets.
#
# What it does (as root; on this machine there is no systemd, and that is fine):
#  1. Once: `debootstrap --variant=minbase --include=ca-certificates bookworm` from the mirror
#     the host's apt uses, packed into target/fresh-check/base-*.tar.gz (re-used by later runs,
#     nothing downloaded again; --refresh-base rebuilds it). ca-certificates is the one addition
#     to minbase: any machine on which rustup was installed (over https) has it.
#  2. Every run: a FRESH root target/fresh-check/root unpacked from that tarball, with the host's
#     debian.sources (same mirror, bookworm + updates + security, like a real install),
#     /etc/resolv.conf, a policy-rc.d that forbids starting services (exit 101), and the project
#     copied to /root/cirrus (tracked and untracked-but-not-ignored files as they are in the
#     working tree — no .git, no target/; --head: the committed HEAD only, via git archive).
#  3. Only the Rust toolchain comes from the host: `rustup show home` mounted read-only at
#     /opt/rustup, and the rustup proxies of ~/.cargo/bin (cargo, rustc, ...; not any other tool
#     installed there) through a read-only mount. CARGO_HOME=/root/.cargo is inside the root, so
#     the crates.io registry is downloaded fresh (--host-registry: copy the host's instead).
#  4. /proc, /sys (read-only), a private /dev (tmpfs with null, zero, random, tty, ...; its own
#     devpts) and a tmpfs /dev/shm mounted for the chroot — never the host's /dev; then,
#     inside, as on a fresh machine: `hack/install-deps.sh`, then `cargo build --workspace
#     --locked` (--all-targets: also tests, benches, examples), then `target/debug/cirrus --help`.
#  5. Whatever happens (failure, Ctrl-C, kill): the processes it started (its process groups, and
#     anything still running inside the root) are stopped by PID, every mount under
#     target/fresh-check is unmounted and `findmnt` checked, and the root is deleted (--keep:
#     kept for inspection; the next run deletes it). Ends with a PASS/FAIL line and the elapsed
#     time; exits non-zero on failure. Two runs at once are refused (flock).
#
# If the host trusts extra CAs (/usr/local/share/ca-certificates/*.crt, e.g. a TLS-intercepting
# egress proxy), they are added to the root's trust store and pip is pointed at it (PIP_CERT),
# since crates.io and PyPI are otherwise unreachable from the root; that changes nothing that
# install-deps.sh is responsible for. http(s)_proxy/no_proxy are passed through when set.
#
# Debug options (the result line then says the check was not the full one):
#   --without PKG   remove PKG from the packages=(...) list of the root's COPY of install-deps.sh
#                   (e.g. --without libprotobuf-dev reproduces the descriptor.proto failure)
#   --with PKG      add PKG to that list (to try a fix before proposing it)
#   -p, --package P build only that workspace package (repeatable) instead of --workspace
#   --host-nextest  copy the host's cargo-nextest into the root (skips install-deps.sh's ~10 min
#                   `cargo install cargo-nextest`)
#
# usage: hack/fresh-check.sh [--keep] [--all-targets] [--head] [--host-registry]
#                            [--refresh-base] [--mirror URL] [debug options]
#        env: CIRRUS_FRESH_DIR (default target/fresh-check)
# Run it in the background with a log; it takes about an hour on 2 busy cores (most of it
# install-deps.sh's `cargo install cargo-nextest` and the build):
#   hack/fresh-check.sh >target/fresh-check.log 2>&1; tail -1 target/fresh-check.log
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

KEEP=0 ALL_TARGETS=0 HEAD_ONLY=0 HOST_REGISTRY=0 REFRESH_BASE=0 HOST_NEXTEST=0 MIRROR="" MIRROR_GIVEN=0
WITHOUT=() WITH=() PACKAGES=()
while (($#)); do
  case "$1" in
    --keep) KEEP=1 ;;
    --all-targets) ALL_TARGETS=1 ;;
    --head) HEAD_ONLY=1 ;;
    --host-registry) HOST_REGISTRY=1 ;;
    --host-nextest) HOST_NEXTEST=1 ;;
    --refresh-base) REFRESH_BASE=1 ;;
    --mirror) MIRROR=${2:?--mirror needs a URL}; MIRROR_GIVEN=1; shift ;;
    --without) WITHOUT+=("${2:?--without needs a package}"); shift ;;
    --with) WITH+=("${2:?--with needs a package}"); shift ;;
    -p|--package) PACKAGES+=("${2:?--package needs a name}"); shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "fresh-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

[ "$(id -u)" = 0 ] || { echo "fresh-check: must run as root (debootstrap, chroot, mount)" >&2; exit 2; }
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${CIRRUS_FRESH_DIR:-$REPO/target/fresh-check}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
# findmnt escapes blanks in mount points; keep the paths simple so the checks below are exact.
[[ "$WORK" =~ ^/[A-Za-z0-9._/+-]+$ ]] || { echo "fresh-check: unusual characters in $WORK" >&2; exit 2; }
ROOT=$WORK/root
SRC_IN_ROOT=/root/cirrus

T0=$SECONDS
elapsed() { local s=$((SECONDS - T0)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }
say() { printf '[fresh-check %s] %s\n' "$(elapsed)" "$*"; }
die() { say "ERROR: $*" >&2; exit 1; }

# What kind of check this is, for the result line: debug options make it not the full check.
NOTES=() MODES=()
((${#WITHOUT[@]})) && NOTES+=("without: ${WITHOUT[*]}")
((${#WITH[@]})) && NOTES+=("with: ${WITH[*]}")
((${#PACKAGES[@]})) && NOTES+=("only -p ${PACKAGES[*]}")
((HOST_NEXTEST)) && NOTES+=("host cargo-nextest")
((HOST_REGISTRY)) && MODES+=("host cargo registry")
((HEAD_ONLY)) && MODES+=("HEAD only")
((ALL_TARGETS)) && MODES+=("all targets")

# One run at a time (the lock dies with this process).
exec 9>"$WORK/lock"
flock -n 9 || die "another fresh-check is running (lock $WORK/lock)"

# ---------------------------------------------------------------------------------------------
# Cleanup: processes, mounts, root. Runs on every exit.
CHILD=""
STEP="setup"
mounts_under() { findmnt -rn -o TARGET | awk -v d="$1/" 'index($0 "/", d) == 1' | sort -r; }
procs_in() { # PIDs whose root directory is DIR or below (processes running in that chroot)
  local p r
  for p in /proc/[0-9]*; do
    r=$(readlink "$p/root" 2>/dev/null) || continue
    case "$r" in "$1" | "$1"/*) echo "${p#/proc/}" ;; esac
  done
}
stop_procs() {
  local d pids i
  if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
    say "stopping process group $CHILD"
    kill -TERM -- "-$CHILD" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$CHILD" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$CHILD" 2>/dev/null || true
  fi
  for d in "$ROOT" "$WORK"/debootstrap.*; do
    [ -d "$d" ] || continue
    pids=$(procs_in "$d" | tr '\n' ' ')
    [ -n "${pids// /}" ] || continue
    say "stopping processes left in $d: $pids"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for i in $(seq 50); do [ -n "$(procs_in "$d")" ] || break; sleep 0.1; done
    pids=$(procs_in "$d" | tr '\n' ' ')
    # shellcheck disable=SC2086
    [ -z "${pids// /}" ] || kill -KILL $pids 2>/dev/null || true
  done
}
unmount_all() { # every mount under $WORK, deepest first; returns non-zero if any is left
  local m
  while read -r m; do
    [ -n "$m" ] || continue
    umount "$m" 2>/dev/null || { sleep 1; umount "$m" 2>/dev/null; } || umount -l "$m" || true
  done < <(mounts_under "$WORK")
  [ -z "$(mounts_under "$WORK")" ]
}
remove_tree() { # rm -rf, but never through a mount point
  [ -e "$1" ] || return 0
  [ -z "$(mounts_under "$1")" ] || { say "NOT removing $1: mounts remain under it"; return 1; }
  rm -rf --one-file-system "$1"
}
on_exit() {
  local rc=$? left
  trap - EXIT INT TERM HUP
  # Only the main shell cleans up (never a subshell that happens to exit).
  [ "$BASHPID" = "$$" ] || exit "$rc"
  set +e
  stop_procs
  if unmount_all; then
    say "mounts under $WORK: none left (findmnt)"
  else
    left=$(mounts_under "$WORK" | tr '\n' ' ')
    say "ERROR: mounts still present under $WORK: $left"
    ((rc)) || rc=1
  fi
  for d in "$WORK"/debootstrap.*; do [ -e "$d" ] && remove_tree "$d"; done
  if [ -d "$ROOT" ]; then
    if ((KEEP)); then
      say "root kept for inspection: $ROOT (enter: chroot $ROOT /bin/bash; mount /proc etc. yourself;"
      say "  the next run deletes it)"
    else
      remove_tree "$ROOT" && say "root removed"
    fi
  fi
  local kind="full check"
  ((${#NOTES[@]})) && kind="NOT the full check: $(IFS=';'; echo "${NOTES[*]}")"
  ((${#MODES[@]})) && kind="$kind; $(IFS=';'; echo "${MODES[*]}")"
  if ((rc == 0)); then
    echo "fresh-check: PASS in $(elapsed) ($kind)"
  elif ((rc == 130)); then
    echo "fresh-check: FAIL (interrupted) at step '$STEP' in $(elapsed) ($kind)"
  else
    echo "fresh-check: FAIL at step '$STEP' (exit $rc) in $(elapsed) ($kind)"
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'say "interrupted"; exit 130' INT TERM HUP

# Runs a command in its own process group (so an interruption can stop all of it, by its id),
# and waits for it interruptibly. The child execs at once (no bash subshell that could run the
# EXIT trap itself), and does not inherit the lock's descriptor: a process left behind by a
# SIGKILLed run must not keep the lock, so that the next run can clean up after it.
run() {
  (trap - EXIT INT TERM HUP; exec setsid "$@" </dev/null 9>&-) &
  CHILD=$!
  local rc=0
  wait "$CHILD" || rc=$?
  CHILD=""
  return "$rc"
}

# ---------------------------------------------------------------------------------------------
STEP="leftovers"
# A run that was SIGKILLed (no trap) may have left mounts, processes or a root behind.
stop_procs
left=$(mounts_under "$WORK" | tr '\n' ' ')
[ -z "$left" ] || say "unmounting leftovers: $left"
unmount_all || die "cannot unmount leftovers under $WORK: $(mounts_under "$WORK" | tr '\n' ' ')"
for d in "$WORK"/debootstrap.* "$ROOT"; do
  [ -e "$d" ] && { say "removing leftover $d"; remove_tree "$d" || die "cannot remove $d"; }
done

# The host's toolchain.
STEP="toolchain"
command -v rustup >/dev/null || die "rustup not found: the toolchain is brought in from the host's rustup"
RUSTUP_DIR=$(readlink -f "$(rustup show home)")
CARGO_BIN=$(dirname "$(readlink -f "$(command -v cargo)")") # the rustup binary's directory
[ -x "$CARGO_BIN/rustup" ] || CARGO_BIN=$(readlink -f "${CARGO_HOME:-$HOME/.cargo}/bin")
[ -x "$CARGO_BIN/rustup" ] || die "cannot find the rustup proxies (cargo is $(command -v cargo))"
[ -d "$RUSTUP_DIR/toolchains" ] || die "no toolchains in $RUSTUP_DIR"
proxies=()
for f in "$CARGO_BIN"/*; do
  n=$(basename "$f")
  if [ "$n" = rustup ] || [ "$(readlink -f "$f")" = "$(readlink -f "$CARGO_BIN/rustup")" ]; then
    proxies+=("$n")
  else
    say "not exposing $f to the root (not a rustup proxy)"
  fi
done
say "toolchain: $(rustc --version) from $RUSTUP_DIR (read-only), proxies from $CARGO_BIN: ${proxies[*]}"

# The mirror the host's apt uses for bookworm (as hack/install-libvirt.sh finds it).
STEP="mirror"
if [ -z "$MIRROR" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
  MIRROR=$(awk '/^URIs:/{u=$2} /^Suites:/{ for (i=2;i<=NF;i++) if ($i=="bookworm") {print u; exit} }' \
    /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$MIRROR" ] && [ -f /etc/apt/sources.list ]; then
  MIRROR=$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list)
fi
[ -n "$MIRROR" ] || die "no bookworm mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list (use --mirror)"
say "mirror: $MIRROR"

# ---------------------------------------------------------------------------------------------
# 1. The cached base.
STEP="debootstrap"
INCLUDE=ca-certificates
key=$(printf '%s|%s|%s' "$MIRROR" minbase "$INCLUDE" | sha1sum | cut -c1-10)
BASE=$WORK/base-bookworm-minbase-$key.tar.gz
if ((REFRESH_BASE)) && [ -e "$BASE" ]; then say "--refresh-base: dropping $BASE"; rm -f "$BASE" "$BASE.info"; fi
if [ -s "$BASE" ]; then
  say "base: cached $BASE ($(du -h "$BASE" | cut -f1), $(sed -n 's/^created: //p' "$BASE.info" 2>/dev/null))"
else
  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap on the host"
    run env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q install --no-install-recommends debootstrap
  fi
  tmp=$WORK/debootstrap.$$
  say "base: debootstrap --variant=minbase --include=$INCLUDE bookworm $tmp $MIRROR"
  run debootstrap --variant=minbase --include="$INCLUDE" bookworm "$tmp" "$MIRROR"
  rm -f "$tmp"/var/cache/apt/archives/*.deb
  say "base: packing into $BASE"
  run tar -C "$tmp" --numeric-owner -czf "$BASE.part" .
  printf 'created: %s\nmirror: %s\nvariant: minbase\ninclude: %s\ndebootstrap: %s\n' \
    "$(date -u +%FT%TZ)" "$MIRROR" "$INCLUDE" "$(dpkg-query -W -f='${Version}' debootstrap)" >"$BASE.info"
  mv -f "$BASE.part" "$BASE"
  remove_tree "$tmp"
  say "base: ready ($(du -h "$BASE" | cut -f1))"
fi

# ---------------------------------------------------------------------------------------------
# 2. A fresh root.
STEP="root"
mkdir "$ROOT"
run tar -C "$ROOT" --numeric-owner -xpzf "$BASE"
say "root: fresh copy of the base in $ROOT ($(chroot "$ROOT" dpkg-query -W | wc -l) packages)"
# apt sources as on an installed Debian 12 (bookworm, -updates, -security): the host's
# debian.sources or its sources.list's bookworm lines (same mirrors), else (--mirror) generated.
rm -f "$ROOT/etc/apt/sources.list"
if ((MIRROR_GIVEN == 0)) && [ -f /etc/apt/sources.list.d/debian.sources ]; then
  cp /etc/apt/sources.list.d/debian.sources "$ROOT/etc/apt/sources.list.d/debian.sources"
elif ((MIRROR_GIVEN == 0)) && grep -Eq '^deb .* bookworm ' /etc/apt/sources.list 2>/dev/null; then
  grep -E '^deb .* bookworm(-updates|-security|/updates)? ' /etc/apt/sources.list >"$ROOT/etc/apt/sources.list"
else
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$MIRROR" "$MIRROR" >"$ROOT/etc/apt/sources.list"
fi
say "root: apt sources: $(cd "$ROOT/etc/apt" && ls sources.list sources.list.d/* 2>/dev/null | tr '\n' ' ')"
rm -f "$ROOT/etc/resolv.conf"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
[ -s "$ROOT/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
# Debian's way to keep package scripts from starting services in a chroot (invoke-rc.d(8)).
printf '#!/bin/sh\n# fresh-check: no services in this chroot\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
ENV=(HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb LANG=C.UTF-8
  PATH=/root/.cargo/bin:/opt/rust-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  RUSTUP_HOME=/opt/rustup CARGO_HOME=/root/.cargo RUSTUP_AUTO_INSTALL=0
  CARGO_TERM_COLOR=never CARGO_TERM_PROGRESS_WHEN=never)
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  [ -n "${!v:-}" ] && ENV+=("$v=${!v}")
done
shopt -s nullglob
cas=(/usr/local/share/ca-certificates/*.crt)
shopt -u nullglob
if ((${#cas[@]})); then
  say "network: adding the host's extra CAs to the root's trust store: ${cas[*]##*/}"
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  cp "${cas[@]}" "$ROOT/usr/local/share/ca-certificates/"
  # (its "rehash: warning: skipping ca-certificates.crt" is normal: that file is the bundle)
  chroot "$ROOT" update-ca-certificates 2>&1 >/dev/null | { grep -v '^rehash: warning: skipping ca-certificates.crt' || true; } >&2
  ENV+=(PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
fi

# The project, without .git and target/.
STEP="copy project"
mkdir -p "$ROOT$SRC_IN_ROOT"
if ((HEAD_ONLY)); then
  say "project: git archive HEAD ($(git -C "$REPO" rev-parse --short HEAD)) -> $SRC_IN_ROOT"
  git -C "$REPO" archive --format=tar HEAD | tar -C "$ROOT$SRC_IN_ROOT" -xf -
else
  dirty=$(git -C "$REPO" status --porcelain | wc -l)
  say "project: working tree of $REPO (HEAD $(git -C "$REPO" rev-parse --short HEAD), $dirty changed/untracked paths) -> $SRC_IN_ROOT"
  (cd "$REPO" && git ls-files -z -c -o --exclude-standard -- . ':!:.cirrus' ':!:target' |
    while IFS= read -r -d '' f; do [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf -) | tar -C "$ROOT$SRC_IN_ROOT" -xf -
fi
say "project: $(find "$ROOT$SRC_IN_ROOT" -type f | wc -l) files"

# Debug edits of the root's copy of install-deps.sh (the real one is not touched).
STEP="debug edits"
deps=$ROOT$SRC_IN_ROOT/hack/install-deps.sh
for p in "${WITHOUT[@]}"; do
  q=$(printf '%s' "$p" | sed 's/[][\.*^$+?(){}|/]/\\&/g') # as a regular expression
  grep -Eq "^packages=\((.* )?$q( |\))" "$deps" || die "--without $p: not in the packages=(...) list of hack/install-deps.sh"
  sed -E -i "/^packages=\(/{s/([( ])$q( |\))/\1\2/; s/\( /(/; s/  +/ /g}" "$deps"
done
for p in "${WITH[@]}"; do
  sed -E -i "s/^packages=\(/packages=($p /" "$deps"
done
if ((${#WITHOUT[@]} + ${#WITH[@]})); then
  say "install-deps.sh in the root differs from the project's:"
  diff -u "$REPO/hack/install-deps.sh" "$deps" | sed 's/^/    /' || true
fi
if ((HOST_NEXTEST)); then
  nt=$(command -v cargo-nextest) || die "--host-nextest: no cargo-nextest on the host"
  cp "$nt" "$ROOT/usr/local/bin/cargo-nextest"
  say "copied the host's $nt into the root (install-deps.sh will not build it)"
fi
mkdir -p "$ROOT/root/.cargo"
if ((HOST_REGISTRY)); then
  hreg=${CARGO_HOME:-$HOME/.cargo}/registry
  [ -d "$hreg" ] || die "--host-registry: no $hreg"
  say "copying the host's cargo registry ($hreg, $(du -sh "$hreg" | cut -f1)) into the root"
  cp -a "$hreg" "$ROOT/root/.cargo/registry"
fi

# ---------------------------------------------------------------------------------------------
# 3./4. Mounts. Each made private so that nothing propagates back to the host.
STEP="mounts"
mnt() { # mount ARGS... TARGET, then make it private
  mount "$@"
  mount --make-private "${@: -1}"
}
mkdir -p "$ROOT"/{proc,sys,dev,opt/rustup,opt/host-cargo-bin,opt/rust-bin}
mnt -t proc proc "$ROOT/proc"
mnt --bind /sys "$ROOT/sys"
mount -o remount,bind,ro "$ROOT/sys"
# A /dev of its own, never the host's: package scripts in the root change device nodes (Debian's
# qemu-system-common runs `chgrp kvm /dev/kvm` with the root's kvm gid), and through a bind mount
# that would change the host's /dev/kvm — which then makes the host's libvirtd re-probe QEMU on
# every call. Only the nodes a build needs, and a private devpts instance.
mnt -t tmpfs -o mode=0755,nosuid tmpfs "$ROOT/dev"
while read -r name major minor; do
  mknod -m 0666 "$ROOT/dev/$name" c "$major" "$minor"
done <<'NODES'
null 1 3
zero 1 5
full 1 7
random 1 8
urandom 1 9
tty 5 0
NODES
mkdir -p "$ROOT/dev/pts" "$ROOT/dev/shm"
mnt -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$ROOT/dev/pts"
ln -s pts/ptmx "$ROOT/dev/ptmx"
ln -s /proc/self/fd "$ROOT/dev/fd"
ln -s /proc/self/fd/0 "$ROOT/dev/stdin"
ln -s /proc/self/fd/1 "$ROOT/dev/stdout"
ln -s /proc/self/fd/2 "$ROOT/dev/stderr"
mnt -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$ROOT/dev/shm"
for pair in "$RUSTUP_DIR:/opt/rustup" "$CARGO_BIN:/opt/host-cargo-bin"; do
  mnt --bind "${pair%%:*}" "$ROOT${pair#*:}"
  mount -o remount,bind,ro "$ROOT${pair#*:}"
  findmnt -rn -o OPTIONS "$ROOT${pair#*:}" | grep -Eq '(^|,)ro(,|$)' || die "$ROOT${pair#*:} is not read-only"
done
for n in "${proxies[@]}"; do ln -s "/opt/host-cargo-bin/$n" "$ROOT/opt/rust-bin/$n"; done
say "mounts:"
findmnt -rn -o TARGET,SOURCE,FSTYPE,OPTIONS | awk -v d="$ROOT/" 'index($1 "/", d) == 1 {print "    " $0}'

in_root() { # in_root 'shell command': runs it in the root with a clean environment, in /root/cirrus
  run chroot "$ROOT" /usr/bin/env -i "${ENV[@]}" /bin/bash -c "cd $SRC_IN_ROOT && $1"
}

STEP="toolchain in root"
in_root 'cargo --version && rustc --version'
in_root 'for t in protoc cc gcc pkg-config python3 cargo-nextest; do printf "    %-14s %s\n" "$t" "$(command -v $t || echo -)"; done' |
  sed '1i\    before install-deps.sh, in the root:' || true

# ---------------------------------------------------------------------------------------------
# 5. What a fresh machine does.
STEP="hack/install-deps.sh"
n0=$(chroot "$ROOT" dpkg-query -W | wc -l)
say "running hack/install-deps.sh in the root"
in_root 'hack/install-deps.sh'
say "install-deps.sh done: $(($(chroot "$ROOT" dpkg-query -W | wc -l) - n0)) packages added"

STEP="cargo build"
build=(cargo build --locked)
if ((${#PACKAGES[@]})); then
  for p in "${PACKAGES[@]}"; do build+=(-p "$p"); done
else
  build+=(--workspace)
fi
((ALL_TARGETS)) && build+=(--all-targets)
say "running ${build[*]} in the root"
in_root "${build[*]}"
say "build done"

if ((${#PACKAGES[@]} == 0)); then
  STEP="run cirrus"
  in_root 'target/debug/cirrus --help >/dev/null && echo "    target/debug/cirrus runs (its shared libraries are all present)"'
fi
STEP="done"
