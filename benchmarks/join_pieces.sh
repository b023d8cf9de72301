#!/usr/bin/env bash
# Join a folder that reached a box without index access in pieces, one piece per call:
#   bash benchmarks/join_pieces.sh PIECES_DIR DEST_DIR
# PIECES_DIR holds piece.NN (plain `split -b` output of one uncompressed tar, in name order) and
# SHA256 (the tar's sha256, first word). The tar is checked against it before anything is
# unpacked into DEST_DIR; a missing or damaged piece is one line and exit 1. The pieces are
# removed once unpacked.
# Made on the build box: tar -C SRC -cf all.tar . && sha256sum all.tar >SHA256 &&
#   split -b 55000000 -d -a 2 all.tar piece.
set -u
pieces=$1 dest=$2
tar=$(mktemp "${TMPDIR:-/tmp}/pieces.XXXXXX.tar") || exit 1
trap 'rm -f "$tar"' EXIT
cat "$pieces"/piece.* >"$tar" || exit 1
want=$(cut -d' ' -f1 "$pieces/SHA256")
have=$(sha256sum "$tar" | cut -d' ' -f1)
[ "$want" = "$have" ] || { echo "$pieces: tar sha256 $have != $want: a piece is missing or damaged"; exit 1; }
mkdir -p "$dest" && tar -C "$dest" -xf "$tar" && rm -f "$pieces"/piece.*
