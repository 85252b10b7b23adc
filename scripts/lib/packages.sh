# Sourced by scripts/test, .ci/run and scripts/e2e: make sure the tools a step needs are
# on the machine. On Debian as root, what is missing is installed with apt-get (and the
# services those packages start are stopped: our scripts run their own, on ports of
# their own); otherwise the one command to run is printed and the script exits.
#
#   need_tools TOOL=PACKAGE...     e.g. need_tools amtool=prometheus-alertmanager
#
# A TOOL is a command looked up on PATH; `/PATH`, a file that must exist; or `fn:NAME`,
# a shell function that succeeds when the package's part is there.

# Services Debian's prometheus packages start on install, which nothing of ours wants
# running (the drill runs its own, on ports of its own).
PROMETHEUS_SERVICES=(prometheus prometheus-alertmanager prometheus-node-exporter)

need_tools() {
  local missing=() pair tool package
  for pair in "$@"; do
    tool=${pair%%=*}
    package=${pair#*=}
    if [[ $tool == /* ]]; then
      [ -e "$tool" ] && continue
    elif [[ $tool == fn:* ]]; then
      "${tool#fn:}" && continue
    else
      command -v "$tool" >/dev/null 2>&1 && continue
    fi
    [[ " ${missing[*]} " == *" $package "* ]] || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0

  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "${0##*/}: missing ${missing[*]}. Install them, then run this again:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "${0##*/}: installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; } \
    || { echo "${0##*/}: apt-get could not install ${missing[*]}" >&2
         [[ " ${missing[*]} " == *" kubectl "* ]] \
           && echo "  kubectl is not in Debian: add the Kubernetes apt repository (https://kubernetes.io/docs/tasks/tools/install-kubectl-linux/)" >&2
         exit 1; }
  # What was just installed started its services: our scripts run their own.
  local services=()
  [[ " ${missing[*]} " == *" prometheus"* ]] && services+=("${PROMETHEUS_SERVICES[@]}")
  [[ " ${missing[*]} " == *" postgresql "* ]] && services+=(postgresql)
  stop_services "${services[@]}"
}

# Stops (and keeps disabled) the named services, when root.
stop_services() {
  [ "$(id -u)" = 0 ] || return 0
  local service
  for service in "$@"; do
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now "$service" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$service" ]; then
      "/etc/init.d/$service" stop >/dev/null 2>&1 || true
    fi
  done
}

# python3 can make a venv with pip in it (Debian splits that into python3-venv).
have_python_venv() {
  command -v python3 >/dev/null 2>&1 && python3 -c 'import ensurepip, venv' >/dev/null 2>&1
}
