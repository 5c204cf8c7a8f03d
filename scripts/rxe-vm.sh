#!/bin/bash
# rxe-vm.sh [--timeout SECONDS] [--smp N] [--mem MiB] [--] CMD [ARGS...]
#
# Run CMD where a real RDMA stack exists: in a QEMU guest that boots
# Debian's own kernel with soft-RoCE (rdma_rxe) up, and chroots into this
# machine's /.
#
# Why: the kernels of our machines have no loadable modules, so rdma_rxe
# cannot be loaded on them, and KVM is not usable; so the guest runs under
# TCG (emulated: a correctness lane, never a performance one). In it the
# tests meet the real libibverbs, librdmacm, the rxe provider and the
# kernel's QP/CM state machines.
#
# What the guest sees: this machine's / read-only over 9p; the caller's
# working directory writable over the same path (a CMake build tree, where
# ctest writes its logs); fresh tmpfs on /tmp, /var/tmp, /run and /dev/shm.
# rxe0 sits on dummy0, which has 10.200.0.1/24; the guest has no network
# device, so nothing leaves it.
#
# CMD runs as root in the caller's working directory with ulimit -l
# unlimited, the caller's exported PX_* and CK_* variables, PX_RDMA_ADDR=
# 10.200.0.1, PX_RXE=1, and PATH/LD_LIBRARY_PATH extended to reach the
# unpacked perftest, ibverbs-utils and rdmacm-utils (ib_send_lat, rping...).
# Its stdout and stderr come back as this script's (through two serial
# ports; in the guest they are pipes, or terminals where ours are); the
# kernel console goes to a log that is shown only on failure.
#
# Exit status: CMD's; 124 when the guest did not finish within --timeout
# (default 900 s, boot included); 125 when the guest or rxe did not come up;
# 2 on a usage error.
#
# Needs root and Debian 12. What it needs is fetched with apt-get download
# into $PX_RXE_CACHE (default /var/cache/plexus-rxe) and unpacked there,
# never installed; the rxe provider and libibverbs/librdmacm, which the
# guest takes from this machine's /, are apt-get installed when missing.
# The guest's /init is rxe-vm-init.sh, next to this script. PX_RXE_KEEP=1
# keeps the run's directory (the console log, the job) for a post-mortem;
# PX_RXE_APPEND adds to the guest kernel's command line (e.g. loglevel=7).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${PX_RXE_CACHE:-/var/cache/plexus-rxe}
stamp=$cache/.stamp-rxe-vm-1
timeout_s=900
smp=2
mem=2048
rdma_addr=10.200.0.1
run=
guest_pid=
cat_pids=()

HOST_PKGS="ibverbs-providers libibverbs1 librdmacm1 iproute2"
KERNEL_PKGS="busybox-static" # plus the kernel linux-image-amd64 depends on
QEMU_PKGS="qemu-system-x86 qemu-system-common qemu-system-data seabios libcapstone4 libfdt1
    libpmem1 libndctl6 libdaxctl1 libslirp0 libvdeplug2 liburing2 libfuse3-3 libaio1"
TOOL_PKGS="perftest ibverbs-utils rdmacm-utils libibumad3 libpci3"
# What the guest loads (their dependencies first, from modules.dep):
# virtio + 9p to reach the host's files, then soft-RoCE with rdma_cm, and
# dummy for the interface rxe sits on. rxe asks the crypto API for "crc32"
# at run time, which nothing can modprobe here: crc32_generic goes first.
GUEST_MODS="virtio_pci 9pnet_virtio 9p crc32_generic rdma_rxe ib_uverbs rdma_ucm dummy"

say() { echo "rxe-vm: $*" >&2; }
die() { say "$*"; exit "${2:-125}"; }

usage() {
    sed -n '2p' "${BASH_SOURCE[0]}" | sed 's/^# /usage: /' >&2
    exit 2
}

# --- options ---------------------------------------------------------------

need_number() {
    [[ $2 =~ ^[1-9][0-9]*$ ]] || { say "$1 wants a positive number, not '$2'"; usage; }
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
        --timeout | --smp | --mem)
            [ $# -ge 2 ] || usage
            need_number "$1" "$2"
            case $1 in
            --timeout) timeout_s=$2 ;;
            --smp) smp=$2 ;;
            --mem) mem=$2 ;;
            esac
            shift 2
            ;;
        --) shift; break ;;
        -h | --help) usage ;;
        -*) say "unknown option $1"; usage ;;
        *) break ;;
        esac
    done
    [ $# -gt 0 ] || usage
    cmd=("$@")
}

# --- packages ----------------------------------------------------------------

apt_quiet() { DEBIAN_FRONTEND=noninteractive apt-get -qq "$@"; }

ensure_host_pkgs() {
    local p missing=()
    for p in $HOST_PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing on this machine: ${missing[*]}"
    apt_quiet update
    apt_quiet install -y --no-install-recommends "${missing[@]}" >/dev/null
}

# the versioned kernel package linux-image-amd64 stands for
kernel_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}

# unpack_pkgs DIR PKG... — apt-get download PKGs and unpack them into DIR
unpack_pkgs() {
    local dir=$1 deb
    shift
    rm -rf "$dir" "$cache/debs"
    mkdir -p "$dir" "$cache/debs"
    if ! (cd "$cache/debs" && apt-get download -qq "$@" 2>/dev/null); then
        apt_quiet update # stale lists name versions the archive dropped
        (cd "$cache/debs" && apt-get download -qq "$@" 2>/dev/null) ||
            die "apt-get download $* failed"
    fi
    for deb in "$cache"/debs/*.deb; do dpkg-deb -x "$deb" "$dir"; done
    rm -rf "$cache/debs"
}

ensure_cache() {
    [ -f "$stamp" ] && return 0
    say "fetching the guest's kernel, QEMU and tools into $cache (once)"
    local kpkg
    kpkg=$(kernel_pkg)
    if [ -z "$kpkg" ]; then
        apt_quiet update
        kpkg=$(kernel_pkg)
    fi
    [ -n "$kpkg" ] || die "cannot tell which kernel linux-image-amd64 depends on"
    # shellcheck disable=SC2086 # lists of package names
    {
        unpack_pkgs "$cache/kernel" "$kpkg" $KERNEL_PKGS
        unpack_pkgs "$cache/qemu" $QEMU_PKGS
        unpack_pkgs "$cache/tools" $TOOL_PKGS
    }
    local kver
    kver=$(kernel_version)
    # the package leaves modules.dep to its postinst; busybox makes it
    "$cache/kernel/bin/busybox" depmod -b "$cache/kernel" "$kver" ||
        die "depmod for $kver failed"
    echo "$kpkg" >"$stamp"
}

kernel_version() {
    local v
    v=$(find "$cache/kernel/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n1)
    [ -n "$v" ] || die "no modules in the kernel package"
    echo "$v"
}

# --- initramfs -----------------------------------------------------------------

# mod_path NAME — a module's path in modules.dep ("" when built in)
mod_path() {
    local name=${1//-/_}
    awk -F: -v n="$name" '{
        b = $1; sub(/.*\//, "", b); sub(/\.ko(\.[a-z]+)?$/, "", b); gsub(/-/, "_", b)
        if (b == n) { print $1; exit }
    }' "$moddir/modules.dep"
}

# add_mod PATH — append PATH to $load_order after its dependencies
add_mod() {
    local path=$1 dep deps
    case " $load_order " in *" $path "*) return 0 ;; esac
    read -ra deps < <(awk -F: -v p="$path" '$1 == p { print $2; exit }' "$moddir/modules.dep")
    for dep in "${deps[@]}"; do
        add_mod "$dep"
    done
    load_order="$load_order $path"
}

resolve_mods() {
    local m path
    load_order=
    for m in $GUEST_MODS; do
        path=$(mod_path "$m")
        if [ -z "$path" ]; then
            grep -q "/${m//-/_}\.ko" "$moddir/modules.builtin" ||
                die "module $m is neither in modules.dep nor built in"
            continue
        fi
        add_mod "$path"
    done
}

# copy_mod PATH DEST — a module, decompressed (busybox insmod wants .ko)
copy_mod() {
    case $1 in
    *.xz) xz -dc "$moddir/$1" >"$2" ;;
    *.zst) zstd -qdc "$moddir/$1" >"$2" ;;
    *.gz) gzip -dc "$moddir/$1" >"$2" ;;
    *) cp "$moddir/$1" "$2" ;;
    esac
}

build_initrd() {
    local out=$1 stage path name
    stage=$(mktemp -d)
    mkdir -p "$stage"/{bin,dev,proc,sys,px,keep,newroot,mods}
    cp "$cache/kernel/bin/busybox" "$stage/bin/busybox"
    cp "$here/rxe-vm-init.sh" "$stage/init"
    chmod 755 "$stage/init"
    mknod "$stage/dev/console" c 5 1
    mknod "$stage/dev/null" c 1 3
    resolve_mods
    for path in $load_order; do
        name=${path##*/}
        name=${name%%.ko*}.ko
        copy_mod "$path" "$stage/mods/$name"
        echo "mods/$name" >>"$stage/modules.load"
    done
    (cd "$stage" && find . | "$cache/kernel/bin/busybox" cpio -o -H newc 2>/dev/null) >"$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$stage"
}

# the initramfs for this kernel and these scripts, built when missing
ensure_initrd() {
    local kver key
    kver=$(kernel_version)
    moddir=$cache/kernel/lib/modules/$kver
    key=$( (echo "$kver $GUEST_MODS"; cat "$here/rxe-vm-init.sh" "${BASH_SOURCE[0]}") |
        sha256sum | cut -c1-16)
    initrd=$cache/initrd-$key.cpio
    [ -f "$initrd" ] && return 0
    rm -f "$cache"/initrd-*.cpio
    build_initrd "$initrd"
}

# --- the run -------------------------------------------------------------------

# the job: CMD with its environment, as a script the guest's bash runs
write_job() {
    local v t=$cache/tools
    {
        echo "# written by rxe-vm.sh"
        while IFS= read -r v; do
            printf 'export %s=%q\n' "$v" "${!v}"
        done < <(compgen -e | grep -E '^(PX|CK)_' || true)
        printf 'export PX_RDMA_ADDR=%q PX_RXE=1\n' "$rdma_addr"
        printf 'export PATH=%q\n' "$PATH:$t/usr/bin:$t/usr/sbin"
        printf 'export LD_LIBRARY_PATH=%q\n' \
            "${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$t/usr/lib/x86_64-linux-gnu:$t/lib/x86_64-linux-gnu"
        printf 'export HOME=%q USER=root LOGNAME=root\n' "${HOME:-/root}"
        echo 'ulimit -l unlimited'
        printf 'cd -- %q || { echo "rxe-vm: no %q in the guest" >&2; exit 125; }\n' "$PWD" "$PWD"
        printf 'exec'
        printf ' %q' "${cmd[@]}"
        echo
    } >"$run/share/cmd.sh"
    printf '%s\n' "$PWD" >"$run/share/cwd"
    printf '%s\n' "$cache/tools" >"$run/share/keep"
    # a terminal here, a terminal there (line-buffered); a pipe otherwise
    if [ -t 1 ]; then touch "$run/share/tty1"; fi
    if [ -t 2 ]; then touch "$run/share/tty2"; fi
}

# stream the guest's ttyS1/ttyS2 (FIFOs QEMU writes) to our stdout/stderr
start_streams() {
    mkfifo "$run/out" "$run/err"
    cat "$run/out" &
    cat_pids+=($!)
    cat "$run/err" >&2 &
    cat_pids+=($!)
}

# a path inside a QEMU option list, where a comma is written twice
qpath() { echo "${1//,/,,}"; }

start_guest() {
    local q=$cache/qemu kernel r cwd
    r=$(qpath "$run")
    cwd=$(qpath "$PWD")
    kernel=$(ls "$cache"/kernel/boot/vmlinuz-*)
    LD_LIBRARY_PATH=$q/usr/lib/x86_64-linux-gnu:$q/lib/x86_64-linux-gnu \
        QEMU_MODULE_DIR=$q/usr/lib/x86_64-linux-gnu/qemu \
        timeout -k 10 "$timeout_s" "$q/usr/bin/qemu-system-x86_64" \
        -L "$q/usr/share/qemu" -L "$q/usr/share/seabios" \
        -nodefaults -no-user-config -display none -monitor none \
        -accel tcg,thread=multi -cpu max -m "$mem" -smp "$smp" -nic none -no-reboot \
        -kernel "$kernel" -initrd "$initrd" \
        -append "console=ttyS0 panic=-1 loglevel=4 mitigations=off${PX_RXE_APPEND:+ $PX_RXE_APPEND}" \
        -serial "file:$r/console.log" -serial "file:$r/out" -serial "file:$r/err" \
        -virtfs "local,path=/,mount_tag=host0,security_model=none,readonly=on,multidevs=remap" \
        -virtfs "local,path=$cwd,mount_tag=pxcwd,security_model=none,multidevs=remap" \
        -virtfs "local,path=$r/share,mount_tag=pxrun,security_model=none" \
        </dev/null >"$run/qemu.log" 2>&1 &
    guest_pid=$!
}

console_tail() {
    say "--- the guest's console, last lines ---"
    tail -n 40 "$run/console.log" 2>/dev/null | tr -d '\r' >&2 || true
    if [ -s "$run/qemu.log" ]; then
        say "--- QEMU said ---"
        tail -n 20 "$run/qemu.log" >&2
    fi
}

# the guest's outcome as our exit status
outcome() {
    local qemu_rc=$1
    if [ -s "$run/share/error" ]; then
        say "the guest did not come up: $(cat "$run/share/error")"
        console_tail
        return 125
    fi
    if [ -s "$run/share/status" ]; then
        return "$(cat "$run/share/status")"
    fi
    if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
        say "the guest did not finish within $timeout_s s; QEMU killed"
        return 124
    fi
    say "the guest ended without a result (QEMU exit status $qemu_rc)"
    console_tail
    return 125
}

# shellcheck disable=SC2317 # trap handlers
cleanup() {
    [ -n "$guest_pid" ] && kill "$guest_pid" 2>/dev/null && wait "$guest_pid" 2>/dev/null
    local p
    for p in "${cat_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "$run" ] && [ -n "${PX_RXE_KEEP:-}" ]; then
        say "kept $run (console.log, qemu.log, share/)"
    elif [ -n "$run" ]; then
        rm -rf "$run"
    fi
    return 0
}

# shellcheck disable=SC2317
on_signal() {
    say "interrupted (SIG$1)"
    exit "$2"
}

run_in_guest() {
    run=$(mktemp -d "${TMPDIR:-/tmp}/rxe-vm.XXXXXX")
    mkdir "$run/share"
    trap cleanup EXIT
    trap 'on_signal INT 130' INT
    trap 'on_signal TERM 143' TERM
    trap 'on_signal HUP 129' HUP
    write_job
    start_streams
    start_guest
    local rc=0 status=0
    wait "$guest_pid" || rc=$?
    guest_pid=
    # a QEMU that died early never opened the FIFOs: let the readers go
    : <>"$run/out"
    : <>"$run/err"
    wait "${cat_pids[@]}" 2>/dev/null || true
    cat_pids=()
    outcome "$rc" || status=$?
    exit "$status"
}

main() {
    parse_args "$@"
    [ "$(id -u)" = 0 ] || die "run as root (it fetches packages and boots QEMU)" 2
    [ "$PWD" != / ] || die "run from a directory other than / (it is shared writable)" 2
    ensure_host_pkgs
    mkdir -p "$cache"
    exec 9>"$cache/.lock"
    flock 9
    ensure_cache
    ensure_initrd
    exec 9>&-
    run_in_guest
}

main "$@"
