#!/bin/sh
# pexen: provides=build priority=-1
. ./common.sh
say "compiling 3 modules"
sleep 0.1
say "build ok"
