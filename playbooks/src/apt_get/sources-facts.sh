# shellcheck shell=bash
# The apt repositories image-provision added (apt-source.sh beside this
# file): the `deb` line of each /etc/apt/sources.list.d/image-provision-NAME.list
# as source.NAME (playbooks/src/apt). Runs as the SSH user.
for f in /etc/apt/sources.list.d/image-provision-*.list; do
    [ -e "$f" ] || continue
    name=${f##*/image-provision-}
    kv "source.${name%.list}" "$(grep -m1 '^deb ' "$f" || true)"
done
