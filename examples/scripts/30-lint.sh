#!/bin/sh
# No header: runs as soon as a worker is free.
. ./common.sh
say "checking style"
sleep 0.05
