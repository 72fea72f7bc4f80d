#!/bin/sh
# The runner image's entrypoint. Model code runs as the unprivileged `model` user (cog_server.py
# switches to it); here, while still root, keep that user off the credential endpoints: the ECS
# task role's (169.254.170.2) and the instance metadata service (169.254.169.254; the launch
# template's hop limit of 1 already stops containers there). Needs NET_ADMIN (the GPU task
# definitions add it); on Fargate, which refuses NET_ADMIN, the user switch alone keeps the task
# role's credentials URI (in the runner's environment) unreadable.
if [ "$(id -u)" = 0 ] && id model >/dev/null 2>&1 && command -v iptables >/dev/null 2>&1; then
  for ip in 169.254.170.2 169.254.169.254; do
    iptables -I OUTPUT -d "$ip" -m owner --uid-owner model -j REJECT 2>/dev/null \
      || echo "cogplane: could not block $ip for model code (no NET_ADMIN here)" >&2
  done
fi
exec "$@"
