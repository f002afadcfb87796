#!/bin/sh
# pexen: requires=package provides=deployed claims=port-8080
# Fails on purpose: the smoke test that requires "deployed" is skipped.
. ./common.sh
say "starting the staging server"
for step in config assets templates routes database cache queue mailer \
            scheduler metrics logging auth sessions uploads search i18n \
            health admin api websocket; do
    say "loaded $step"
done
say "error: port 8080 is already in use" >&2
exit 3
