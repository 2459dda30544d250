# ftk: a fine-tuning toolkit in C.
#
#   make            build lib/libftk.a-style archives and every program into $(O)/bin
#   make cuda       the CUDA backend too (make builds it only where a GPU is visible)
#   make check      build and run every test (unit suites with check, CLI cases)
#   make check SAN=1   the same under AddressSanitizer + UBSan (in $(O)/san)
#   make demo       run the whole pipeline on the bundled samples
#   make deps       install the Debian/Ubuntu packages the build needs
#   make install PREFIX=/usr/local   (programs, man pages, bash and zsh completion)
#   make fuzz       build and run the libFuzzer targets (clang)
#
# Layout: every part of the pipeline is a folder.  In each folder, cmd_<verb>.c
# is a program (it exports cmd_<verb>) and every other .c goes into that part's
# static library.  Nothing needs to be listed here by hand: adding a file is
# enough.  O=DIR builds out of tree (objects, archives, bin/), which lets several
# builds of the same tree run at once.

O ?= .
SAN ?=
WERROR ?=
PREFIX ?= /usr/local

ifeq ($(SAN),1)
  B := $(O)/build-san
  BIN := $(O)/build-san/bin
  SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
  B := $(O)/build
  BIN := $(O)/bin
  SANFLAGS :=
endif

CC ?= cc
# `make check` and `make demo` build with every core unless told otherwise (-j wins).
NPROC ?= $(shell nproc 2>/dev/null || echo 2)
PAR = $(if $(filter -j%,$(MAKEFLAGS)),,-j$(NPROC))
OPT ?= -O2
PKGS := libcjson libzstd libpcre2-8 libutf8proc libcurl libxxhash libcrypto yaml-0.1
CFLAGS_PKG := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS_PKG := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
BLAS_LIBS := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
MHD_LIBS := $(shell pkg-config --libs libmicrohttpd 2>/dev/null || echo -lmicrohttpd)
CURSES_LIBS := $(shell pkg-config --libs ncursesw 2>/dev/null || echo -lncursesw)
STEMMER_LIBS := -lstemmer
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm)

WARN := -Wall -Wextra -Wno-unused-parameter -Wshadow=local -Wvla
ifeq ($(WERROR),1)
  WARN += -Werror
endif
CFLAGS ?= $(OPT) -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(SANFLAGS) -pthread \
  -I. -Ilib $(CFLAGS_PKG) $(BLAS_CFLAGS)
LDLIBS := $(LIBS_PKG) $(BLAS_LIBS) $(MHD_LIBS) $(CURSES_LIBS) $(STEMMER_LIBS) -lm -pthread -ldl

# Parts, in link order (a part may only use the ones after it).
PARTS := prep ledger review eval serve trainer judges model cli lib
LIBNAME_lib := libftk
libname = $(if $(LIBNAME_$(1)),$(LIBNAME_$(1)),libftk$(1))
archive = $(B)/$(1)/$(call libname,$(1)).a

SRC_all := $(foreach p,$(PARTS),$(wildcard $(p)/*.c))
CMD_SRC := $(foreach f,$(SRC_all),$(if $(filter cmd_%,$(notdir $(f))),$(f)))
VERBS := $(sort $(patsubst cmd_%,%,$(basename $(notdir $(CMD_SRC)))))
LIB_SRC = $(filter-out $(1)/cmd_%.c cli/ftk.c cli/verb_main.c,$(wildcard $(1)/*.c))
ARCHIVES := $(foreach p,$(PARTS),$(if $(call LIB_SRC,$(p)),$(call archive,$(p))))
CMD_OBJ := $(patsubst %.c,$(B)/%.o,$(CMD_SRC))

PROGRAMS := $(BIN)/ftk $(addprefix $(BIN)/ftk-,$(VERBS))

CUDA_LIB := $(B)/model/libftkcuda.so
# CUDA: built whenever nvcc is found (see model/).
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
# The CUDA backend is a shared object the programs dlopen for --device cuda
# (model/device.c), so no program links cudart and all run without a GPU.
# tests/unit/ops_shared.cu compiles ops.h and optim_ops.h as device code.
ifneq ($(NVCC),)
  # nvcc may be a wrapper script outside its toolkit (/usr/local/bin/nvcc
  # exec'ing /usr/local/cuda-13.0/bin/nvcc), so ask nvcc where its toolkit is
  # rather than cutting its path.
  ifeq ($(origin CUDA_HOME),undefined)
  CUDA_HOME := $(shell $(NVCC) --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | \
    sed -n 's|^\#\$$ TOP=\(.*\)/bin/\.\.$$|\1|p')
  endif
  NVCC_ARCH := -gencode arch=compute_80,code=sm_80 -gencode arch=compute_89,code=sm_89 \
    -gencode arch=compute_90,code=[sm_90,compute_90]
  NVCC_FLAGS := -O2 -std=c++17 -I. -Ilib $(NVCC_ARCH) -Werror all-warnings \
    -Xcompiler -fPIC,-Wall,-Wextra,-Wno-unused-parameter,-Werror
  CUDA_OBJS := $(CUDA_LIB) $(B)/tests/ops_shared_cu.o
else
  CUDA_OBJS :=
  $(info ftk: nvcc not found: the CUDA backend (libftkcuda.so) is left out; --device cuda will say so)
endif
# nvcc takes minutes for three architectures, so `make` (and `make demo`)
# build the backend only where it can run: CUDA=auto (the default) when a GPU
# is visible, CUDA=1 always (where nvcc is), CUDA=0 never.  `make cuda` builds
# it, and `make check` always does where nvcc is, so it keeps compiling.
CUDA ?= auto
ifeq ($(CUDA),auto)
  GPU_VISIBLE := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
  ALL_CUDA := $(if $(GPU_VISIBLE),$(CUDA_OBJS))
else ifeq ($(CUDA),1)
  ALL_CUDA := $(CUDA_OBJS)
else
  ALL_CUDA :=
endif
# OpenMPI for the data-parallel layer (trainer/dist.c); without it only one process.
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null)
MPI_LIBS := $(shell mpicc --showme:link 2>/dev/null)
ifneq ($(MPI_LIBS),)
  ALL_CFLAGS += -DFTK_HAVE_MPI $(MPI_CFLAGS)
  LDLIBS += $(MPI_LIBS)
endif

.PHONY: all cuda check check-run check-gpu check-gpu-full unit cli deps demo demo-run install fuzz clean
all: $(PROGRAMS) $(ALL_CUDA)
cuda: $(CUDA_OBJS)

$(CUDA_LIB): model/backend_cuda.cu model/backend.h model/ops.h \
  model/optim_ops.h model/nf4.h model/flash_kernels.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -shared -cudart shared -o $@ $< -L$(CUDA_HOME)/lib64 -lcublas \
	  -Xlinker -rpath,$(CUDA_HOME)/lib64 -Xlinker -rpath,'$$ORIGIN'

$(B)/tests/ops_shared_cu.o: tests/unit/ops_shared.cu model/ops.h model/optim_ops.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -c -o $@ $<

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

define ARCHIVE_RULE
$(call archive,$(1)): $(patsubst %.c,$(B)/%.o,$(call LIB_SRC,$(1)))
	@mkdir -p $$(dir $$@)
	@rm -f $$@
	ar rcs $$@ $$^
endef
$(foreach p,$(PARTS),$(if $(call LIB_SRC,$(p)),$(eval $(call ARCHIVE_RULE,$(p)))))

# The built-in table of `ftk`, made from the cmd_*.c files' summary lines.
# verbs.list changes only when the set of commands does, so the table is
# regenerated when a command is added or removed.
$(shell mkdir -p $(B)/cli && (echo $(CMD_SRC) | cmp -s - $(B)/cli/verbs.list || echo $(CMD_SRC) > $(B)/cli/verbs.list))
$(B)/cli/builtins.c: $(CMD_SRC) cli/gen-builtins.sh $(B)/cli/verbs.list
	@mkdir -p $(dir $@)
	sh cli/gen-builtins.sh $(CMD_SRC) > $@.tmp && mv $@.tmp $@

$(B)/cli/builtins.o: $(B)/cli/builtins.c
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BIN)/ftk: $(B)/cli/ftk.o $(B)/cli/builtins.o $(CMD_OBJ) $(ARCHIVES)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $(B)/cli/ftk.o $(B)/cli/builtins.o $(CMD_OBJ) $(ARCHIVES) $(LDLIBS)

# One small program per verb: verb_main.c calls cmd_<verb>.
$(B)/cli/main_%.o: cli/verb_main.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DFTK_VERB=$* -DFTK_CMD=cmd_$* -c $< -o $@

define VERB_RULE
$(BIN)/ftk-$(1): $(B)/cli/main_$(1).o $(patsubst %.c,$(B)/%.o,$(2)) $(ARCHIVES)
	@mkdir -p $$(dir $$@)
	$(CC) $(ALL_CFLAGS) -o $$@ $$(filter %.o,$$^) $(ARCHIVES) $(LDLIBS)
endef
$(foreach f,$(CMD_SRC),$(eval $(call VERB_RULE,$(patsubst cmd_%,%,$(basename $(notdir $(f)))),$(f))))

# ---------------------------------------------------------------- tests
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))

$(B)/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(ARCHIVES)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) -Itests/unit -DFTK_SRC_DIR='"$(CURDIR)"' -DFTK_BIN_DIR='"$(abspath $(BIN))"' -o $@ $< $(ARCHIVES) $(CHECK_LIBS) $(LDLIBS)
# test_flash runs the kernel bodies of this header, which no archive depends on
$(B)/tests/test_flash: model/flash_kernels.h
$(B)/tests/test_nf4_kernels: model/nf4_kernels.h

unit: $(UNIT_BIN)
# the fused NF4 kernels' bodies, compiled into both
$(CUDA_LIB) $(B)/tests/test_nf4_kernels: model/nf4_kernels.h
cli: $(PROGRAMS)

# `make check` first makes sure the packages are there (a no-op when they are),
# then re-reads this Makefile so pkg-config sees them.
# T=name runs only the unit suites and CLI cases whose names contain it.
check:
	@sh tools/deps.sh --quiet $(DEB_PKGS)
	@$(MAKE) --no-print-directory $(PAR) check-run

check-run: $(PROGRAMS) $(UNIT_BIN) $(CUDA_OBJS)
	@FTK_BIN=$(abspath $(BIN)) FTK_BUILD=$(abspath $(B)) SAN=$(SAN) T='$(T)' \
	  sh tests/run.sh $(abspath $(UNIT_BIN))

# The CUDA selftest: every CUDA op and a QLoRA step against the CPU backend,
# then the dev/cuda programs' validation (FTK_DEV_QUICK: small sizes, no timing)
# built for the GPU at hand.
DEV_CUDA_ARCH ?= -arch=native
DEV_CUDA_PROGS := rmsnorm_forward nf4_dequant adamw crossentropy nf4_matmul attention rows
check-gpu: $(PROGRAMS) $(CUDA_OBJS)
	@$(BIN)/ftk-train --selftest
	@$(MAKE) --no-print-directory -C dev/cuda O=$(abspath $(B))/dev-cuda ARCH="$(DEV_CUDA_ARCH)"
	@fail=0; for p in $(DEV_CUDA_PROGS); do echo "== dev/cuda/$$p (quick)"; \
	  FTK_DEV_QUICK=1 $(abspath $(B))/dev-cuda/$$p || fail=1; done; \
	  if [ $$fail = 0 ]; then echo "dev/cuda: PASS"; else echo "dev/cuda: FAIL"; exit 1; fi

# The first run on a GPU machine, one command: build, check-gpu, training
# against the CPU, timings and the plan against nvidia-smi, all into OUT
# (default gpu-out/; docs/gpu.md "One command for a first GPU").
check-gpu-full:
	@OUT="$${OUT:-$(abspath gpu-out)}" sh tools/gpu-check.sh

# ---------------------------------------------------------------- other
# slurm-wlm and munge: tests/cli/slurm-* start a private one-node Slurm;
# libpmix-dev: Slurm's mpi_pmix plugin dlopens the unversioned libpmix.so.
DEB_PKGS := build-essential pkg-config libcjson-dev libyaml-dev libzstd-dev zstd libxxhash-dev \
  libpcre2-dev libutf8proc-dev libcurl4-openssl-dev libssl-dev check libsubunit-dev \
  libopenblas-dev libmicrohttpd-dev libncurses-dev openmpi-bin libopenmpi-dev \
  jq tmux python3 clang libclang-rt-dev bc curl libstemmer-dev chromium time \
  slurm-wlm munge libpmix-dev
deps:
	@sh tools/deps.sh $(DEB_PKGS)

demo:
	@sh tools/deps.sh --quiet $(DEB_PKGS)
	@$(MAKE) --no-print-directory $(PAR) demo-run

demo-run: all
	@FTK_BIN=$(abspath $(BIN)) sh tools/demo.sh

# Shell completion, made from the programs' own option tables (cli/completion.c).
COMPLETIONS := $(B)/completion/ftk.bash $(B)/completion/_ftk
$(B)/completion/ftk.bash: $(BIN)/ftk
	@mkdir -p $(dir $@)
	$(BIN)/ftk --completion bash > $@.tmp && mv $@.tmp $@
$(B)/completion/_ftk: $(BIN)/ftk
	@mkdir -p $(dir $@)
	$(BIN)/ftk --completion zsh > $@.tmp && mv $@.tmp $@

BASHCOMPDIR = $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR = $(PREFIX)/share/zsh/site-functions
# The CUDA backend goes where the programs look for it (model/device.c:
# ../lib/ftk/ beside bin/), when this build has it (see CUDA above).
install: all $(COMPLETIONS)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(PROGRAMS) $(DESTDIR)$(PREFIX)/bin/
	@if ls docs/man/*.1 >/dev/null 2>&1; then install -m 644 docs/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/; fi
	@if [ -f $(CUDA_LIB) ]; then set -x; \
	  install -d $(DESTDIR)$(PREFIX)/lib/ftk && install -m 755 $(CUDA_LIB) $(DESTDIR)$(PREFIX)/lib/ftk/; \
	else echo "install: no CUDA backend in this build (make cuda, or CUDA=1, builds it)"; fi
	install -d $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR)
	install -m 644 $(B)/completion/ftk.bash $(DESTDIR)$(BASHCOMPDIR)/ftk
	@# bash-completion loads a command's file by its name: ftk-<verb> shares ftk's
	for v in $(VERBS); do ln -sf ftk $(DESTDIR)$(BASHCOMPDIR)/ftk-$$v; done
	install -m 644 $(B)/completion/_ftk $(DESTDIR)$(ZSHCOMPDIR)/_ftk

FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
fuzz:
	@FUZZ_SECONDS=$(or $(FUZZ_SECONDS),60) sh tests/fuzz/run.sh $(FUZZ_SRC)

clean:
	rm -rf $(O)/build $(O)/build-san $(O)/bin

-include $(shell find $(B) -name '*.d' 2>/dev/null)
