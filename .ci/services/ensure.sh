#!/usr/bin/env bash
# Make sure every service the integration tests talk to is up on 127.0.0.1,
# starting the ones that are down. Bounded waits; exits non-zero if one stays down.
set -u

port_open() { (echo > "/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }

wait_port() { # name port seconds
  local name=$1 port=$2 limit=$3 waited=0
  until port_open "$port"; do
    if [ "$waited" -ge "$limit" ]; then
      echo "!! $name did not come up on 127.0.0.1:$port within ${limit}s" >&2
      return 1
    fi
    sleep 1; waited=$((waited + 1))
  done
  echo "ok $name on 127.0.0.1:$port"
}

ensure() { # name port seconds start-command...
  local name=$1 port=$2 limit=$3; shift 3
  if ! port_open "$port"; then
    echo ".. starting $name"
    "$@" >/dev/null 2>&1 || echo "!! starting $name returned $?" >&2
  fi
  wait_port "$name" "$port" "$limit"
}

status=0
ensure postgresql 5432 60 bash -c 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start' || status=1
ensure rabbitmq 5672 120 rabbitmq-server -detached || status=1
ensure redis 6379 30 redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || status=1
ensure nats 4222 30 start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || status=1
ensure mariadb 3306 60 start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || status=1
exit $status
