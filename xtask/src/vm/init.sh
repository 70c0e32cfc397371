#!/bin/busybox sh
# /init of the oxpmd test VM (built by `cargo xtask vm setup`, see docs/testvm.md).
# Loads the VFIO and 9p modules, mounts the host's root read-only, prepares hugepages and runs the command
# the host wrote to $RUN/cmd.sh in a chroot, then reports its exit status on the command channel (ttyS1) and powers off.
/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin /host /tmp
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

# The kernel logs to the first serial port (console=ttyS0); init and the command write to the second,
# which carries nothing else, so no kernel message can land inside a marker or a line of output.
if [ -c /dev/ttyS1 ]; then
    exec >/dev/ttyS1 2>&1
else
    echo "oxpmd-vm: init: no /dev/ttyS1 (the command channel); output stays on the kernel console"
fi

RUN=
RESULTS=
WORKSPACE=
NONCE=none
RELEASE=
MSIZE=
for word in $(cat /proc/cmdline); do
    case "$word" in
    oxpmd.run=*) RUN="${word#oxpmd.run=}" ;;
    oxpmd.results=*) RESULTS="${word#oxpmd.results=}" ;;
    oxpmd.workspace=*) WORKSPACE="${word#oxpmd.workspace=}" ;;
    oxpmd.nonce=*) NONCE="${word#oxpmd.nonce=}" ;;
    oxpmd.release=*) RELEASE="$(echo "${word#oxpmd.release=}" | tr , ' ')" ;;
    oxpmd.msize=*) MSIZE=",msize=${word#oxpmd.msize=}" ;;
    esac
done

finish() {
    echo "oxpmd-vm:$NONCE:exit=$1"
    sync
    poweroff -f
    echo o > /proc/sysrq-trigger
    sleep 10
}

die() {
    echo "oxpmd-vm: init: $*"
    finish 125
}

# load_module NAME [PARAM...]: insmod NAME's dependencies (order computed at setup), then NAME.
load_module() {
    name="$1"
    shift
    [ -f "/etc/oxpmd/modules/$name" ] || die "module $name is not in the initramfs"
    for dep in $(cat "/etc/oxpmd/modules/$name"); do
        [ -d "/sys/module/$dep" ] && continue
        if [ "$dep" = "$name" ]; then
            insmod "/lib/modules/$dep.ko" "$@" || die "insmod $dep $* failed"
        else
            insmod "/lib/modules/$dep.ko" || die "insmod $dep (for $name) failed"
        fi
    done
}

while read -r name params; do
    [ -n "$name" ] && load_module "$name" $params
done < /etc/oxpmd/boot-modules

mount -t 9p -o "trans=virtio,version=9p2000.L,ro,cache=loose$MSIZE" host /host \
    || die "cannot mount the host root share"
[ -n "$RUN" ] || die "no oxpmd.run= on the kernel command line"

mount -t proc proc /host/proc || die "mount /proc"
mount -t sysfs sysfs /host/sys || die "mount /sys"
mount -t devtmpfs devtmpfs /host/dev || die "mount /dev"
mkdir -p /host/dev/pts /host/dev/shm /host/dev/hugepages
mount -t devpts devpts /host/dev/pts
mount -t tmpfs -o mode=1777 shm /host/dev/shm
mount -t tmpfs -o mode=1777 tmp /host/tmp || die "mount /tmp"
mount -t tmpfs -o mode=755 run /host/run || die "mount /run"
[ -L /host/var/run ] || mount -t tmpfs -o mode=755 varrun /host/var/run
mount -t hugetlbfs hugetlbfs /host/dev/hugepages || die "mount hugetlbfs"
echo 256 > /proc/sys/vm/nr_hugepages

# The workspace (read-only), at its host path: a tmpfs above (/tmp, /run) may hide it otherwise.
if [ -n "$WORKSPACE" ]; then
    mkdir -p "/host$WORKSPACE" 2>/dev/null
    mount -t 9p -o "trans=virtio,version=9p2000.L,ro,cache=loose$MSIZE" workspace "/host$WORKSPACE" \
        || die "cannot mount the workspace share"
fi

# The writable shares, mounted at their host paths inside the chroot (created if a tmpfs hides them).
mkdir -p "/host$RUN" 2>/dev/null
mount -t 9p -o "trans=virtio,version=9p2000.L$MSIZE" run "/host$RUN" || die "cannot mount the run share"
if [ -n "$RESULTS" ]; then
    mkdir -p "/host$RESULTS" 2>/dev/null
    mount -t 9p -o "trans=virtio,version=9p2000.L$MSIZE" results "/host$RESULTS" \
        || die "cannot mount the results share"
fi

# Kernel modules for on-demand use from the chroot: $OXPMD_VM_MODPROBE NAME [PARAM...].
mkdir -p /host/run/oxpmd-vm
cp -a /lib/modules /etc/oxpmd /bin/busybox /host/run/oxpmd-vm/
cat > /host/run/oxpmd-vm/modprobe <<'EOF'
#!/run/oxpmd-vm/busybox sh
# Loads a guest kernel module and its dependencies (oxpmd test VM).
set -e
[ -n "$1" ] || { echo "usage: $0 MODULE [PARAM...]" >&2; exit 2; }
name="$(echo "$1" | /run/oxpmd-vm/busybox tr - _)"
shift
list="/run/oxpmd-vm/oxpmd/modules/$name"
[ -f "$list" ] || { echo "$0: module $name is not in the test VM initramfs" >&2; exit 1; }
for dep in $(/run/oxpmd-vm/busybox cat "$list"); do
    [ -d "/sys/module/$dep" ] && continue
    if [ "$dep" = "$name" ]; then
        /run/oxpmd-vm/busybox insmod "/run/oxpmd-vm/modules/$dep.ko" "$@"
    else
        /run/oxpmd-vm/busybox insmod "/run/oxpmd-vm/modules/$dep.ko"
    fi
done
EOF
chmod 755 /host/run/oxpmd-vm/modprobe

# Ports a built-in driver (virtio-pci) took at boot are released: every test port starts unbound.
for bdf in $RELEASE; do
    if [ -e "/sys/bus/pci/devices/$bdf/driver" ]; then
        echo "$bdf" > "/sys/bus/pci/devices/$bdf/driver/unbind" || die "cannot unbind $bdf"
    fi
done

ulimit -l unlimited || die "cannot raise RLIMIT_MEMLOCK"
ulimit -n 65536

[ -f "/host$RUN/cmd.sh" ] || die "no $RUN/cmd.sh in the run directory"
echo "oxpmd-vm:$NONCE:start"
chroot /host /usr/bin/env -i /bin/sh "$RUN/cmd.sh" < /dev/null
rc=$?
dmesg > "/host$RUN/dmesg.txt" 2>/dev/null
finish "$rc"
