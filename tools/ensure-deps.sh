#!/bin/sh
# Installs the Debian packages named on the command line that are missing.
# As root it runs apt-get; otherwise it prints the one command to run and fails.
missing=""
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "peernet: missing packages:$missing" >&2
	echo "run: sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "peernet: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q $missing >/tmp/peernet-apt.log 2>&1; then
	apt-get update -q >>/tmp/peernet-apt.log 2>&1
	apt-get install -y -q $missing >>/tmp/peernet-apt.log 2>&1 || {
		echo "peernet: apt-get install failed; see /tmp/peernet-apt.log" >&2; tail -5 /tmp/peernet-apt.log >&2; exit 1; }
fi
