#!/bin/sh
# Render the adapter's EMQX configuration, then run the given command (the image's own entrypoint).
#
# EMQX's HOCON does not read environment variables (emqx/hocon#301), so the four ADAPTER_* placeholders
# in these files are replaced here, when the container starts:
#   ${ADAPTER_BASE_URL}         where EMQX reaches the adapter (default http://api:8000)
#   ${ADAPTER_INGEST_TOKEN}     the shared secret EMQX sends as "Authorization: Bearer ..."
#   ${ADAPTER_EMQX_API_KEY}     the REST API key the adapter uses, and its secret
#   ${ADAPTER_EMQX_API_SECRET}
# and each `ssl.enable` of auth.hocon is set to true when ADAPTER_BASE_URL is https (authentication and
# authorization then call the adapter over TLS; the HTTP connector of bridge.hocon turns TLS on by itself
# for an https URL).
# Output: $DEST/emqx.conf (node, bridge, rules, auth) and $DEST/adapter_api_key.conf (mode 600).
set -eu

SRC=${ADAPTER_EMQX_CONFIG_SRC:-$(cd "$(dirname "$0")" && pwd)}
DEST=${ADAPTER_EMQX_CONFIG_DEST:-/opt/emqx/etc}
ADAPTER_BASE_URL=${ADAPTER_BASE_URL:-http://api:8000}

fail() {
    echo "render.sh: $*" >&2
    exit 2
}

# Values go into quoted HOCON strings and a sed replacement: a safe alphabet keeps both intact.
check_secret() {
    case "$2" in
        "") fail "$1 is required" ;;
        *[!A-Za-z0-9._~+/=-]*) fail "$1 may contain only letters, digits and . _ ~ + / = -" ;;
    esac
}

check_url() {
    case "$2" in
        http://?* | https://?*) ;;
        *) fail "$1 must be an http(s) URL, not '$2'" ;;
    esac
    case "$2" in
        *[!A-Za-z0-9._~+/=:-]*) fail "$1 may contain only letters, digits and . _ ~ + / = : -" ;;
    esac
}

check_url ADAPTER_BASE_URL "$ADAPTER_BASE_URL"
case "$ADAPTER_BASE_URL" in
    https://*) TLS=true ;;
    *) TLS=false ;;
esac
check_secret ADAPTER_INGEST_TOKEN "${ADAPTER_INGEST_TOKEN:-}"
check_secret ADAPTER_EMQX_API_KEY "${ADAPTER_EMQX_API_KEY:-}"
check_secret ADAPTER_EMQX_API_SECRET "${ADAPTER_EMQX_API_SECRET:-}"

render() {
    sed -e "s|\${ADAPTER_BASE_URL}|${ADAPTER_BASE_URL%/}|g" \
        -e "s|\${ADAPTER_INGEST_TOKEN}|${ADAPTER_INGEST_TOKEN}|g" \
        -e "s|\${ADAPTER_EMQX_API_KEY}|${ADAPTER_EMQX_API_KEY}|g" \
        -e "s|\${ADAPTER_EMQX_API_SECRET}|${ADAPTER_EMQX_API_SECRET}|g" \
        -e "s|ssl { enable = false }|ssl { enable = ${TLS} }|" \
        "$SRC/$1"
}

(
    umask 077  # the files hold secrets; the subshell keeps EMQX's own umask as it was
    for part in node.hocon bridge.hocon rules.hocon auth.hocon; do
        render "$part"
        echo
    done > "$DEST/emqx.conf.new"
    mv "$DEST/emqx.conf.new" "$DEST/emqx.conf"
    render api_key.conf > "$DEST/adapter_api_key.conf"
)
echo "render.sh: wrote $DEST/emqx.conf and $DEST/adapter_api_key.conf for $ADAPTER_BASE_URL" >&2

if [ "$#" -gt 0 ]; then
    exec "$@"
fi
