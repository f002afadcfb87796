#!/bin/sh
# pexen: requires=deployed uses=port-8080
. ./common.sh
say "GET http://localhost:8080/health"
