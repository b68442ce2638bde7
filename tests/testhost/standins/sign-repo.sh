#!/bin/bash
# Makes a signed copy of a flat stand-in repository, so tests exercise the
# signed-by path the real Docker and NVIDIA repositories take: SRC's .debs
# and Packages are copied to DEST, a throwaway ed25519 key signs DEST's
# Release into InRelease, and the key's ASCII-armored public half is written
# to DEST/key.asc. Needs gpg.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: sign-repo.sh SRC DEST" >&2; exit 2; }
src=$1 dest=$2
command -v gpg >/dev/null || { echo "sign-repo.sh: missing prerequisite gpg (apt-get install gpg)" >&2; exit 1; }
GNUPGHOME=$(mktemp -d)
export GNUPGHOME
trap 'gpgconf --kill all >/dev/null 2>&1 || true; rm -rf "$GNUPGHOME"' EXIT

mkdir -p "$dest"
cp "$src"/*.deb "$src/Packages" "$dest/"
gpg --batch --quiet --passphrase '' --quick-gen-key 'image-provision stand-in repository <tests@image-provision.invalid>' ed25519 sign never 2>/dev/null
gpg --batch --armor --export >"$dest/key.asc"
{
    echo "Origin: image-provision-standin"
    echo "Label: image-provision-standin"
    echo "Date: $(LC_ALL=C date -Ru)"
    echo "SHA256:"
    echo " $(sha256sum "$dest/Packages" | cut -d' ' -f1) $(stat -c %s "$dest/Packages") Packages"
} >"$dest/Release"
gpg --batch --yes --clearsign --output "$dest/InRelease" "$dest/Release"
