# Shared by the benchmark scripts: `source scripts/lib.sh`.

# install_if_missing PATH PACKAGE: installs the Debian PACKAGE that provides PATH, when run as root; otherwise
# says how and fails.
install_if_missing() {
  local path=$1 package=$2
  [[ -x $path ]] && return 0
  if [[ $(id -u) -eq 0 ]]; then
    echo "$path is missing: installing $package" >&2
    apt-get install -y -q "$package" >&2 || { apt-get update -q >&2 && apt-get install -y -q "$package" >&2; }
  else
    echo "$path is missing: sudo apt-get install -y $package" >&2
    exit 1
  fi
}
