#!/bin/sh
# In the test VM: TX rate of one AF_XDP queue on a kernel-driven interface, oxpmd xdp_rate against
# DPDK net_af_xdp txonly, both counted at the link peer's rx_packets, two runs each.
# Args: MODEL (igb|virtio) MODE (copy|zc|auto: the xdp: port's bind mode; DPDK picks its own).
# Run from the workspace after `cargo build --release --example xdp_rate`:
#   cargo xtask vm run --topology virtio -- sh docs/scripts/xdp_vm_rate.sh igb copy
# (docs/af_xdp.md).
set -e
model=$1
M=$OXPMD_VM_MODPROBE
X=$PWD/target/release/examples/xdp_rate
$M igb
if [ "$model" = virtio ]; then
  $M virtio_net
  dev=$OXPMD_PORT3; peer=$OXPMD_PORT2
  [ -e /sys/bus/pci/devices/$dev/driver ] || echo $dev > /sys/bus/pci/drivers/virtio-pci/bind
else
  dev=$OXPMD_PORT0; peer=$OXPMD_PORT1
fi
sleep 2
i0=$(ls /sys/bus/pci/devices/$dev/net 2>/dev/null || ls /sys/bus/pci/devices/$dev/virtio*/net)
i1=$(ls /sys/bus/pci/devices/$peer/net)
ip link set $i0 up; ip link set $i1 up; ip link set $i1 promisc on
for t in 1 2 3 4 5 6 7 8 9 10; do [ "$(cat /sys/class/net/$i1/carrier 2>/dev/null)" = 1 ] && break; sleep 1; done
echo "interfaces: $i0 ($(basename $(readlink /sys/class/net/$i0/device/driver 2>/dev/null || readlink /sys/bus/pci/devices/$dev/driver))) -> $i1"
rx() { cat /sys/class/net/$i1/statistics/rx_packets; }
for run in 1 2; do
  echo "== run $run: oxpmd: $X $i0 $i1 5 mode=$2"
  $X $i0 $i1 5 mode=$2 2>&1 | tail -3
  echo "== run $run: DPDK: dpdk-testpmd -l 0-1 --no-pci --in-memory --vdev net_af_xdp0,iface=$i0,start_queue=0,queue_count=1 -- --forward-mode=txonly --nb-cores=1 (peer rx_packets over 5 s from 1 s after its first statistics)"
  dpdk-testpmd -l 0-1 --no-pci --in-memory --vdev net_af_xdp0,iface=$i0,start_queue=0,queue_count=1 -- --forward-mode=txonly --nb-cores=1 --stats-period 5 > /tmp/tp.log 2>&1 &
  tp=$!
  for t in $(seq 1 60); do grep -q "Port statistics" /tmp/tp.log && break; sleep 1; done
  sleep 1; a=$(rx); sleep 5; b=$(rx)
  kill -INT $tp; wait $tp || true
  grep -i "xdp\|copy\|zero" /tmp/tp.log | head -5
  echo "DPDK net_af_xdp: $(( (b - a) / 5 )) frames/s at the peer"
done
