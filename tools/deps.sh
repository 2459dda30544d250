#!/bin/sh
# Install the Debian/Ubuntu packages ftk needs, only those that are missing.
# Usage: tools/deps.sh [--quiet] PKG...
# On a system without apt-get it prints what to install and fails.
quiet=0
if [ "$1" = "--quiet" ]; then quiet=1; shift; fi
missing=""
if command -v dpkg-query >/dev/null 2>&1; then
	for p in "$@"; do
		st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
		case "$st" in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
	done
else
	missing=" $*"
fi
if [ -z "$missing" ]; then
	[ $quiet = 1 ] || echo "deps: all packages present"
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: this is not a Debian/Ubuntu system; install the equivalents of:$missing" >&2
	echo "deps: (a C11 compiler, pkg-config, cJSON, zstd, xxHash, PCRE2, utf8proc, libcurl," >&2
	echo "deps:  check, OpenBLAS, libmicrohttpd, ncursesw, OpenMPI, jq, tmux, python3)" >&2
	exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then sudo=sudo; else
		echo "deps: need root to install:$missing" >&2; exit 1
	fi
fi
echo "deps: installing:$missing" >&2
$sudo apt-get update -qq >&2 || exit 1
# A name this release does not know (libclang-rt-dev: clang's sanitizer and
# libFuzzer runtimes, split from clang in Debian 12, inside it elsewhere) is
# skipped with a note rather than failing the rest.
known=""
for p in $missing; do
	if apt-cache show "$p" >/dev/null 2>&1; then known="$known $p"; else
		echo "deps: no package '$p' in this release's lists; skipped" >&2
	fi
done
missing=$known
[ -n "$missing" ] || exit 0
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >&2 || exit 1
