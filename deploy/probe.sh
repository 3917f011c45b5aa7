#!/bin/sh
# Container probe for Meterline roles (docker compose healthchecks, Kubernetes exec probes).
#
#   probe.sh http [PATH]  GET http://127.0.0.1:$PORT$PATH (default /readyz); healthy on 2xx.
#                         Every long-running role serves HTTP on PORT: ingest and api (the API,
#                         /healthz, /readyz, /metrics), processor and scheduler (/healthz,
#                         /readyz, /metrics only). /readyz: dependencies (and, in a processor, its
#                         consume loops) are well; /healthz 503: a processor's consume loop died
#                         for good, restart the process.
#   probe.sh nats         healthy while this container holds an established TCP connection to the
#                         NATS port of any server in NATS_URL (a comma-separated list; default
#                         port 4222). Kept for processes whose HTTP port is not reachable; it shows
#                         the process is up and connected, not that it is making progress.
#                         deploy/ itself probes every role over HTTP.
set -eu

case "${1:-}" in
  http)
    path="${2:-/readyz}"
    exec node -e '
      fetch(`http://127.0.0.1:${process.env.PORT || 8080}${process.argv[1]}`, { signal: AbortSignal.timeout(3000) })
        .then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1));
    ' "$path"
    ;;
  nats)
    # The ports of the servers in NATS_URL: [nats://][user:pass@]host[:port][,...]
    pattern=""
    for url in $(printf '%s' "${NATS_URL:-}" | tr ',' ' '); do
      port=$(printf '%s' "$url" | sed -E 's#^[a-z]+://##; s#^[^@/]*@##; s#/.*$##; s#^(\[[^]]*\]|[^:]*)##; s#^:##')
      pattern="${pattern:+$pattern|}$(printf '%04X' "${port:-4222}")"
    done
    # /proc/net/tcp{,6}: "sl local_address rem_address st ..."; st 01 is ESTABLISHED.
    grep -qE "^ *[0-9]+: [0-9A-F]+:[0-9A-F]{4} [0-9A-F]+:(${pattern:-107E}) 01 " /proc/net/tcp /proc/net/tcp6 2>/dev/null
    ;;
  *)
    echo "usage: probe.sh http [PATH] | probe.sh nats" >&2
    exit 2
    ;;
esac
