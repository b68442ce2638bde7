#!/bin/bash
# Holds the NVIDIA driver (apt-mark hold): the metapackage and every
# installed NVIDIA package it pulls in (driver_packages, from
# driver-packages.sh put in front of this script), so that neither
# unattended-upgrades nor a person's `apt-get upgrade` replaces the driver's
# libraries under the loaded kernel module (nvidia-smi then fails with
# "Driver/library version mismatch" until a reboot).
# `image-provision update --upgrade-driver` lifts the hold, upgrades (or
# moves to the configured branch), holds again and reboots.
# Inputs: DRIVER (the metapackage, e.g. nvidia-driver-580-server).
set -euo pipefail
mapfile -t installed < <(driver_packages "$DRIVER")
apt-mark hold "${installed[@]}"
