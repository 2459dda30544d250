#!/bin/sh
# Install the build under test (its O and SAN: FTK_BUILD is O/build or
# O/build-san) with make install and the given variables (PREFIX=...,
# DESTDIR=...), for CLI cases that check what make install writes.  Cases run
# side by side, and make install regenerates files in the build tree (the
# completion scripts), so installs take a lock on the build.  Output goes to
# stdout and stderr; the exit status is make's.
O=$(dirname "$FTK_BUILD")
exec env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS flock "$FTK_BUILD/.install.lock" \
	make -s -C "$SRC" O="$O" SAN="$SAN" NVCC= "$@" install
