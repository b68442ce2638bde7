# shellcheck shell=bash
# The apt repositories image-provision added (apt-source.sh beside this
# file): the `deb` line of each /etc/apt/sources.list.d/image-provision-NAME.list
# as source.NAME (playbooks/src/apt). Runs as the SSH user.
for f in /etc/apt/sources.list.d/image-provision-*.list; do
    [ -e "$f" ] || continue
    name=${f##*/image-provision-}
    # Its first `deb ` line, read in bash (no grep start).
    source_deb=''
    if facts_read "$f"; then
        source_text=$'\n'$facts_file$'\n'
        if [[ $source_text == *$'\n'"deb "* ]]; then
            source_deb=${source_text#*$'\n'"deb "}
            source_deb="deb ${source_deb%%$'\n'*}"
        fi
    fi
    kv "source.${name%.list}" "$source_deb"
done
