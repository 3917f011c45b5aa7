#!/bin/sh
# Container probe for Meterline roles (docker compose healthchecks, Kubernetes exec probes).
#
#   probe.sh http [PATH]  GET http://127.0.0.1:$PORT$PATH (default /readyz); healthy on 2xx.
#                         For the ingest and api roles (and `start`), which serve HTTP.
#   probe.sh nats         healthy while this container holds an established TCP connection to the
#                         NATS port of NATS_URL (default 4222). For the processor and scheduler
#                         roles, which serve no HTTP (no /readyz, no /metrics): it shows the
#                         process is up and connected, not that it is making progress.
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
    # The port of the (first) server in NATS_URL: nats://[user:pass@]host[:port]
    port=$(printf '%s' "${NATS_URL:-}" | sed -E 's#^[a-z]+://##; s#^[^@/]*@##; s#[,/].*$##; s#^(\[[^]]*\]|[^:]*)##; s#^:##')
    hex=$(printf '%04X' "${port:-4222}")
    # /proc/net/tcp{,6}: "sl local_address rem_address st ..."; st 01 is ESTABLISHED.
    grep -qE "^ *[0-9]+: [0-9A-F]+:[0-9A-F]{4} [0-9A-F]+:${hex} 01 " /proc/net/tcp /proc/net/tcp6 2>/dev/null
    ;;
  *)
    echo "usage: probe.sh http [PATH] | probe.sh nats" >&2
    exit 2
    ;;
esac
