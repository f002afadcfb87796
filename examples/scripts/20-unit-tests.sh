#!/bin/sh
# pexen: requires=build
. ./common.sh
say "running 12 unit tests"
sleep 0.1
say "12 passed"
