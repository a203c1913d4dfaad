#!/usr/bin/env bash
# Rebuild a gathered training set from the shared face data, exactly as the shipped runs were made.
#
#   train/gather_recipe.sh DATA_ROOT OUT [CONTEXT] [CROP_MODE] [CROP_SIZE]
#
# DATA_ROOT is the shared data folder (../shared/data next to a checkout); OUT must not exist yet.
# Defaults: context 1.5, crop mode shift, crop size 80 (what the shipped minifasnet runs on; it was also trained
# on the 2.7 and 1.0 sets through --extra-data). The LivenessNet/MobileNetV3 set is: CONTEXT=2.7 CROP_MODE=pad
# CROP_SIZE=128.
# Every source except the smoke-test ones (jomariya, silentface_samples) is gathered; CelebA-Spoof and
# MSU-MFSD are never part of training. Crop sources (already face crops) go through the detector like
# full frames, so that the context is cut around BlazeFace's box in both cases; images without a face are
# counted and skipped (the table printed per source says how many).
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 DATA_ROOT OUT [CONTEXT] [CROP_MODE] [CROP_SIZE]" >&2
    exit 2
fi
DATA_ROOT=$1
OUT=$2
CONTEXT=${3:-1.5}
CROP_MODE=${4:-shift}
CROP_SIZE=${5:-80}
SOURCES="nuaa replayattack dtruong_fas gc535_fas
selfrec_aksultanmukhanbet selfrec_alexcamargoweb selfrec_trickyf0x selfrec_krzysiek354
selfrec_vishalkrishnablaze selfrec_wolf-huo selfrec_lestari15 selfrec_shubhamlala selfrec_manikantha-m
selfrec_tamletan selfrec_jtboing selfrec_shivamyadav09"

if [ -e "$OUT/index.csv" ]; then
    echo "$0: error: $OUT/index.csv exists; choose a new OUT" >&2
    exit 2
fi
for source in $SOURCES; do
    if [ ! -d "$DATA_ROOT/$source" ]; then
        echo "$0: error: $DATA_ROOT/$source not found" >&2
        exit 2
    fi
done
for source in $SOURCES; do
    liveness-gather --input "$DATA_ROOT/$source" --out "$OUT" --source "$source" --context "$CONTEXT" \
        --crop-mode "$CROP_MODE" --crop-size "$CROP_SIZE" --append
done
