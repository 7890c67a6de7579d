# Shell pieces shared by the bench scripts (sourced by throughput.sh, callgrind_requests.sh and
# curl_floor.sh): the bench request, and the wait for a server's port.

# The end of every bench scenario, after its `http:` keys: the default headers and one flow of
# GET / with a templated header and an expect, so that each bench runs the full machinery.
bench_request_yaml() {
  cat <<'YAML'
  headers:
    User-Agent: stampede-bench
flows:
  - name: root
    steps:
      - get: /
        name: root
        headers:
          X-Req: "{{vu}}-{{iteration}}"
        expect: {status: 200}
YAML
}

# Waits up to 10 s for a server listening on 127.0.0.1:PORT.
wait_for_port() { # PORT
  local i
  for ((i = 0; i < 100; i++)); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null &&
      return 0
    sleep 0.1
  done
  return 1
}
