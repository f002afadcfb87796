#!/bin/sh
# pexen: requires=build provides=package
# pexen: claims=dist-dir timeout=30
. ./common.sh
say "packing dist/app.tar.gz"
sleep 0.1
