#!/bin/bash
# Usage (after cargo build --release): examples/cluster-failover.sh
# Kills the metadata group's leader of a 3-node cluster and times until the
# other two agree on a new one (polling STATS every 50 ms). 5 rounds.
BIN=${SLUICE:-target/release/sluice}
BIN=$(realpath "$BIN")
cd $(mktemp -d /tmp/fo.XXXX)
P="1=127.0.0.1:17301,2=127.0.0.1:17302,3=127.0.0.1:17303"
start() { SLUICE_CLUSTER_SECRET=s $BIN serve --data-dir d$1 --addr 127.0.0.1:1740$1 --node-id $1 --cluster-addr 127.0.0.1:1730$1 --peers $P > l$1 2>&1 & echo $! > p$1; }
field() { $BIN stats -s 127.0.0.1:1740$1 2>/dev/null | awk -v k=$2 '$1==k{print $2}'; }
for i in 1 2 3; do start $i; done
sleep 3
for round in 1 2 3 4 5; do
  L=$(field 1 cluster_leader); T=$(field 1 cluster_term)
  kill -9 $(cat p$L); t0=$(date +%s.%N)
  others=$(for i in 1 2 3; do [ $i != $L ] && echo $i; done)
  while true; do
    a=$(for i in $others; do echo "$(field $i cluster_leader)/$(field $i cluster_term)"; done | sort -u)
    n=$(echo "$a" | wc -l); l=${a%%/*}
    if [ "$n" = 1 ] && [ "$l" != "$L" ] && [ "$l" != none ] && [ -n "$l" ]; then break; fi
    sleep 0.05
  done
  t1=$(date +%s.%N)
  echo "round $round: leader $L (term $T) killed; new leader $a after $(echo "$t1 - $t0" | bc) s"
  start $L; sleep 3
done
for i in 1 2 3; do kill $(cat p$i) 2>/dev/null; done
wait 2>/dev/null
