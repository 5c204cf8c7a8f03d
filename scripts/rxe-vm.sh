#!/bin/bash
# rxe-vm.sh [--timeout S] [--smp N] [--mem MiB] [--] CMD [ARGS...]
#
# Run CMD where a real RDMA stack exists: inside a QEMU guest (TCG: KVM is
# not usable here) that boots Debian's own kernel, loads soft-RoCE
# (rdma_rxe) over a dummy interface at 10.200.0.1, and chroots into this
# machine's / (shared read-only over 9p). Our machines' kernels have no
# loadable modules, so rdma_rxe cannot run on them directly; in the guest
# the real libibverbs, librdmacm and kernel QP state machine are what the
# tests meet. The guest has no network device: nothing can leave it.
#
# CMD runs as root in the caller's working directory, which is shared
# writable (a CMake build tree, where ctest writes its logs); everything
# else of / is read-only, /tmp and /dev/shm are fresh tmpfs. Exported PX_*
# and CK_* variables are carried in; PX_RDMA_ADDR=10.200.0.1 and PX_RXE=1
# are set. The exit status is CMD's; 124 when --timeout (default 900 s)
# passed; 125 when the guest or rxe did not come up.
#
# What it needs is fetched with apt-get download into $PX_RXE_CACHE
# (default /var/cache/plexus-rxe) and unpacked there, never installed.
# Emulated: a correctness lane, never a performance one.
set -euo pipefail

timeout_s=900
smp=2
mem=2048
while [ $# -gt 0 ]; do
    case $1 in
    --timeout) timeout_s=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --) shift; break ;;
    -*) echo "rxe-vm.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: rxe-vm.sh [--timeout S] [--smp N] [--mem MiB] [--] CMD..." >&2; exit 2; }

cache=${PX_RXE_CACHE:-/var/cache/plexus-rxe}
case $cache in
/tmp | /tmp/*)
    echo "rxe-vm.sh: PX_RXE_CACHE=$cache: not under /tmp (the guest's /tmp is its own)" >&2
    exit 2
    ;;
esac
root=$cache/root
here=$(cd "$(dirname "$0")" && pwd)

# Packages unpacked into $root: the kernel with rxe, QEMU and its
# libraries missing on a plain Debian 12, busybox for the initramfs, and
# the reference tools (perftest, rping) for runs by hand.
guest_pkgs() {
    local kernel
    kernel=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$kernel" ] || { echo "rxe-vm.sh: cannot tell which kernel linux-image-amd64 is" >&2; return 1; }
    echo "$kernel" qemu-system-x86 qemu-system-common qemu-system-data seabios busybox-static \
        libcapstone4 libfdt1 libpmem1 libndctl6 libdaxctl1 libslirp0 libvdeplug2 liburing2 \
        libfuse3-3 libaio1 perftest ibverbs-utils rdmacm-utils libibumad3 libpci3
}

host_pkgs() {
    # The guest runs this machine's binaries: they need the rxe provider.
    local need=() p
    for p in ibverbs-providers libibverbs1 librdmacm1 iproute2; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
    done
    if [ ${#need[@]} -gt 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
}

fetch() {
    [ -f "$cache/.unpacked" ] && return 0
    echo "== rxe-vm: fetching the guest's packages into $cache" >&2
    mkdir -p "$cache/debs" "$root"
    local pkgs
    pkgs=$(guest_pkgs 2>/dev/null) || { apt-get update -qq; pkgs=$(guest_pkgs); }
    # shellcheck disable=SC2086 # a list of package names
    (cd "$cache/debs" && { apt-get download -qq $pkgs 2>/dev/null ||
        { apt-get update -qq && apt-get download -qq $pkgs; }; })
    local d
    for d in "$cache"/debs/*.deb; do dpkg-deb -x "$d" "$root"; done
    touch "$cache/.unpacked"
}

# The modules the guest loads, in order: virtio and 9p to reach the
# host's files, then soft-RoCE and rdma_cm (crc32_generic first: rxe
# fails without it), and dummy for the interface rxe sits on.
MODS_9P="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci 9pnet \
9pnet_virtio netfs fscache 9p"
MODS_RXE="crc32_generic udp_tunnel ip6_udp_tunnel ib_core ib_uverbs rdma_rxe configfs iw_cm \
ib_cm rdma_cm rdma_ucm dummy"

initramfs() {
    local img=$cache/initramfs.gz
    [ -f "$img" ] && [ "$img" -nt "$here/rxe-vm.sh" ] && [ "$img" -nt "$here/rxe-vm-init.sh" ] &&
        { echo "$img"; return 0; }
    local dir
    dir=$(mktemp -d)
    mkdir -p "$dir/bin" "$dir/mods" "$dir/proc" "$dir/sys" "$dir/dev" "$dir/host"
    cp "$root/bin/busybox" "$dir/bin/busybox"
    local kdir m f
    kdir=$(find "$root/lib/modules" -mindepth 2 -maxdepth 2 -name kernel | head -n1)
    for m in $MODS_9P $MODS_RXE; do
        f=$(find "$kdir" -name "$m.ko*" | head -n1)
        [ -n "$f" ] || { echo "rxe-vm.sh: module $m not in the kernel package" >&2; return 1; }
        case $f in
        *.xz) xz -dc "$f" >"$dir/mods/$m.ko" ;;
        *.zst) zstd -qdc "$f" >"$dir/mods/$m.ko" ;;
        *) cp "$f" "$dir/mods/$m.ko" ;;
        esac
    done
    echo "$MODS_9P" >"$dir/mods/9p.list"
    echo "$MODS_RXE" >"$dir/mods/rxe.list"
    cp "$here/rxe-vm-init.sh" "$dir/init"
    chmod +x "$dir/init"
    (cd "$dir" && find . | "$root/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1) >"$img.tmp"
    mv "$img.tmp" "$img"
    rm -rf "$dir"
    echo "$img"
}

# The command, with its environment, as a script the guest runs.
write_job() {
    local job=$1 v
    shift
    {
        echo "cd $(printf %q "$PWD") || exit 125"
        while IFS= read -r v; do
            printf 'export %s=%q\n' "$v" "${!v}"
        done < <(compgen -e | grep -E '^(PX_|CK_)' || true)
        echo "export PX_RDMA_ADDR=10.200.0.1 PX_RXE=1"
        echo "export PATH=$(printf %q "$PATH:$root/usr/bin:$root/usr/sbin")"
        # perftest's libraries (libibumad, libpci), after the host's own
        echo "export LD_LIBRARY_PATH=$(printf %q "${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu")"
        echo "ulimit -l unlimited"
        printf 'exec'
        printf ' %q' "$@"
        echo
    } >"$job"
}

run_guest() {
    local img=$1 job=$2 status=$3
    local kernel
    kernel=$(find "$root/boot" -name 'vmlinuz-*' | head -n1)
    local lib="$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu"
    rm -f "$status"
    set +e
    LD_LIBRARY_PATH=$lib timeout --foreground -k 5 "$timeout_s" \
        "$root/usr/bin/qemu-system-x86_64" -L "$root/usr/share/seabios" -L "$root/usr/share/qemu" \
        -accel tcg,thread=multi -cpu max -m "$mem" -smp "$smp" \
        -nographic -nic none -no-reboot -kernel "$kernel" -initrd "$img" \
        -append "console=ttyS0 panic=-1 quiet loglevel=1 pxjob=$job pxstatus=$status pxrw=$PWD" \
        -virtfs "local,path=/,mount_tag=host0,security_model=none,readonly=on,multidevs=remap" \
        -virtfs "local,path=$PWD,mount_tag=rw0,security_model=none,multidevs=remap" \
        </dev/null | tr -d '\r'
    local rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "rxe-vm.sh: the guest ran past ${timeout_s} s" >&2
        return 124
    fi
    if [ ! -s "$status" ]; then
        echo "rxe-vm.sh: the guest ended without a result (qemu exit $rc)" >&2
        return 125
    fi
    return "$(cat "$status")"
}

main() {
    [ "$(id -u)" = 0 ] || { echo "rxe-vm.sh: run as root (it fetches packages)" >&2; exit 2; }
    host_pkgs
    mkdir -p "$cache"
    exec 9>"$cache/.lock"
    flock 9
    fetch
    local img
    img=$(initramfs)
    flock -u 9
    local job=$PWD/.px-rxe-job.$$ status=$PWD/.px-rxe-status.$$
    write_job "$job" "$@"
    local rc=0
    run_guest "$img" "$job" "$status" || rc=$?
    rm -f "$job" "$status"
    exit "$rc"
}

main "$@"
