# Virtual environments for the peer model servers benchmarked beside ours by `make bench-serve`.
# Each peer lives in its own venv under $(PEERS_DIR) so its pins never touch .venv;
# bench/serve/peers/launch.py finds the interpreters there. The main Makefile includes this file;
# it also runs standalone (recipes are plain POSIX sh, so any SHELL works):
#   make -f bench/serve/peers/peers.mk .peers/mlserver/.installed .peers/kserve/.installed .peers/triton/.installed
# mlserver-adaptive (adaptive batching) is a configuration of the mlserver venv, not a venv of its own.

## PEERS_DIR: where make bench-serve builds the MLServer, KServe and Triton virtual environments
PEERS_DIR ?= .peers
PEER_VENVS := $(PEERS_DIR)/mlserver/.installed $(PEERS_DIR)/kserve/.installed $(PEERS_DIR)/triton/.installed

# A static pattern rule: the two stamps are explicit file targets.
# --clear: a changed requirements file gives a fresh venv, not the old packages plus the new pins.
$(PEERS_DIR)/mlserver/.installed $(PEERS_DIR)/kserve/.installed: $(PEERS_DIR)/%/.installed: bench/serve/peers/requirements-%.txt
	python3 -m venv --clear $(PEERS_DIR)/$*
	$(PEERS_DIR)/$*/bin/python -m pip install --quiet -r $<
	touch $@

# The Triton peer (nvidia-pytriton) runs its model in Triton's Python backend, whose stub process is
# linked against libpython3.X.so.1.0 of the venv's Python version (stubs for 3.8 to 3.13 in the wheel;
# onnxruntime 1.31.1 needs >= 3.11, and pytriton's numpy<2 has no 3.13 wheels). So the venv must come
# from a Python 3.11 or 3.12 built with --enable-shared, whose lib folder launch.py puts on the peer's
# LD_LIBRARY_PATH: a libpython of another build (or none) fails the model's load.
## TRITON_PYTHON: Python 3.11 or 3.12 with a shared libpython, for the Triton peer venv (default: pyenv 3.12.1 if installed)
TRITON_PYTHON ?= $(firstword $(wildcard $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions/3.12.1/bin/python3))
TRITON_PYTHON_CHECK := import os, sys, sysconfig as s; v = sys.version_info[:2]; \
	lib = os.path.join(s.get_config_var("LIBDIR") or "", s.get_config_var("INSTSONAME") or ""); \
	shared = s.get_config_var("Py_ENABLE_SHARED") == 1 and os.path.isfile(lib); have = ("without", "with")[shared]; \
	sys.exit(None if v in ((3, 11), (3, 12)) and shared else f"TRITON_PYTHON={sys.executable} is Python {v[0]}.{v[1]}, " \
	f"{have} a shared libpython ({lib}): the Triton peer needs Python 3.11 or 3.12 built with --enable-shared (e.g. pyenv: \
	PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install 3.12)")

$(PEERS_DIR)/triton/.installed: bench/serve/peers/requirements-triton.txt
	@test -n "$(TRITON_PYTHON)" || { echo "TRITON_PYTHON is not set and pyenv's 3.12.1 is not installed: make TRITON_PYTHON=/path/to/python3.12 (3.11 or 3.12, built with --enable-shared)" >&2; exit 1; }
	@"$(TRITON_PYTHON)" -c '$(TRITON_PYTHON_CHECK)'
	"$(TRITON_PYTHON)" -m venv --clear $(PEERS_DIR)/triton
	$(PEERS_DIR)/triton/bin/python -m pip install --quiet -r $<
	touch $@
