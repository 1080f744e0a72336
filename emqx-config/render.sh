#!/bin/sh
# Render the adapter's EMQX configuration, then run the given command (the image's own entrypoint).
#
# EMQX's HOCON does not read environment variables (emqx/hocon#301), so the ADAPTER_* placeholders in these
# files are replaced here, when the container starts:
#   ${ADAPTER_BASE_URL}         where EMQX reaches the adapter (default http://api:8000)
#   ${ADAPTER_INGEST_TOKEN}     the shared secret EMQX sends as "Authorization: Bearer ..."
#   ${ADAPTER_EMQX_API_KEY}     the REST API key the adapter uses, and its secret
#   ${ADAPTER_EMQX_API_SECRET}
#   "${ADAPTER_SSL}"            the `ssl` object of the connector, the authenticator and the authorization
#                               source (emqx_config.ssl_config): { enable = false } for an http URL; for an
#                               https one, verify_peer against ADAPTER_CA_FILE (a CA certificate file inside
#                               this container), or verify_none when ADAPTER_TLS_VERIFY=false. EMQX's own
#                               default is verify_none, which would hand the token to anyone who answers.
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

check_path() {
    case "$2" in
        /?*) ;;
        *) fail "$1 must be an absolute path, not '$2'" ;;
    esac
    case "$2" in
        *[!A-Za-z0-9._/-]*) fail "$1 may contain only letters, digits and . _ / -" ;;
    esac
}

# The ssl object for ADAPTER_BASE_URL (the same as emqx_config.ssl_config in the adapter)
ssl_object() {
    case "$ADAPTER_BASE_URL" in
        https://*) ;;
        *) echo '{ enable = false }'; return ;;
    esac
    case "${ADAPTER_TLS_VERIFY:-true}" in
        false)
            echo '{ enable = true, verify = "verify_none" }' ;;
        true)
            [ -n "${ADAPTER_CA_FILE:-}" ] || fail "ADAPTER_BASE_URL is https: set ADAPTER_CA_FILE (the CA that" \
                "signed the adapter's certificate, a path inside the EMQX container) or ADAPTER_TLS_VERIFY=false"
            check_path ADAPTER_CA_FILE "$ADAPTER_CA_FILE"
            echo "{ enable = true, verify = \"verify_peer\", cacertfile = \"$ADAPTER_CA_FILE\" }" ;;
        *) fail "ADAPTER_TLS_VERIFY must be true or false, not '$ADAPTER_TLS_VERIFY'" ;;
    esac
}

check_url ADAPTER_BASE_URL "$ADAPTER_BASE_URL"
SSL=$(ssl_object) || exit 2
check_secret ADAPTER_INGEST_TOKEN "${ADAPTER_INGEST_TOKEN:-}"
check_secret ADAPTER_EMQX_API_KEY "${ADAPTER_EMQX_API_KEY:-}"
check_secret ADAPTER_EMQX_API_SECRET "${ADAPTER_EMQX_API_SECRET:-}"

render() {
    sed -e "s|\${ADAPTER_BASE_URL}|${ADAPTER_BASE_URL%/}|g" \
        -e "s|\${ADAPTER_INGEST_TOKEN}|${ADAPTER_INGEST_TOKEN}|g" \
        -e "s|\${ADAPTER_EMQX_API_KEY}|${ADAPTER_EMQX_API_KEY}|g" \
        -e "s|\${ADAPTER_EMQX_API_SECRET}|${ADAPTER_EMQX_API_SECRET}|g" \
        -e "s|\"\${ADAPTER_SSL}\"|${SSL}|g" \
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
