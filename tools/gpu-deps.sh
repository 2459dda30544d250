#!/bin/sh
# tools/gpu-deps.sh [DIR]: download, here (a Debian machine with a package
# registry), the Debian packages ftk's build needs on a GPU machine that has
# a compiler, nvcc and cuBLAS but neither network nor our -dev libraries:
# the headers and libraries of the build without MPI and without check (the
# unit tests' library), their runtime libraries, and pkgconf.  Into DIR
# (default gpu-deps/, ignored by git); tools/gpu-check.sh unpacks them into
# a private root there.  Nothing is installed.  Prints the count and size.
#
# They are this machine's Debian release's (bookworm: glibc 2.36), so the
# GPU machine needs glibc 2.36 or later for the libraries it takes from
# them; where its own system has a library (pkg-config finds it), the build
# uses the system's.
set -e
dir=${1:-gpu-deps}
# the -dev packages of the Makefile's DEB_PKGS that the programs link, and
# what they need at run time (libcurl's own dependencies included: a bare
# image may lack them); not libc, libgcc, libstdc++ or zlib
PKGS="libcjson-dev libcjson1 libzstd-dev libzstd1 libxxhash-dev libxxhash0
libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2 libssl-dev libssl3
libcurl4-openssl-dev libcurl4 libnghttp2-14 librtmp1 libssh2-1 libpsl5 libbrotli1
libldap-2.5-0 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libkeyutils1
libcom-err2 libsasl2-2 libidn2-0 libunistring2 libgnutls30 libhogweed6 libnettle8
libtasn1-6 libp11-kit0 libffi8 libgmp10
libopenblas-dev libopenblas-pthread-dev libopenblas0 libopenblas0-pthread libgfortran5
libquadmath0 libgomp1 libmicrohttpd-dev libmicrohttpd12 libncurses-dev libncurses6
libncursesw6 libtinfo6 libstemmer-dev libstemmer0d pkgconf pkgconf-bin libpkgconf3"
mkdir -p "$dir"
cd "$dir"
# shellcheck disable=SC2086
apt-get download $PKGS >/dev/null
n=$(ls ./*.deb | wc -l)
kb=$(du -sk . | cut -f1)
echo "gpu-deps: $n packages, $((kb / 1024)) MiB in $dir"
