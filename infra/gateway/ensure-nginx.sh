#!/usr/bin/env bash
# Install Debian's nginx, the ModSecurity v3 connector and the OWASP Core Rule Set for the
# gateway when they are missing and we may install (root + apt-get). Called by
# `make gateway` and `make test`; the gateway tests skip with a reason where this could not.
set -euo pipefail
have() {
  command -v nginx >/dev/null 2>&1 \
    && [ -e /usr/lib/nginx/modules/ngx_http_modsecurity_module.so ] \
    && [ -d /usr/share/modsecurity-crs/rules ]
}
if have; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing Debian nginx + ModSecurity v3 + OWASP CRS for the gateway"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Install without starting a system-wide nginx on port 80 (policy-rc.d refuses starts).
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d.gateway
  chmod +x /usr/sbin/policy-rc.d.gateway
  had_policy=0
  [ -e /usr/sbin/policy-rc.d ] && had_policy=1
  [ "$had_policy" = 1 ] || cp /usr/sbin/policy-rc.d.gateway /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends \
    nginx libnginx-mod-http-modsecurity modsecurity-crs openssl >/dev/null
  [ "$had_policy" = 1 ] || rm -f /usr/sbin/policy-rc.d
  rm -f /usr/sbin/policy-rc.d.gateway
else
  echo "==> nginx/ModSecurity/CRS not found and cannot be installed here (need root + apt-get);" \
    "the gateway tests will skip and say so" >&2
fi
