# Virtual environments for the peer model servers benchmarked beside ours by `make bench-serve`.
# Each peer lives in its own venv under $(PEERS_DIR) so its pins never touch .venv;
# bench/serve/peers/launch.py finds the interpreters there. The main Makefile includes this file;
# it also runs standalone (recipes are plain POSIX sh, so any SHELL works):
#   make -f bench/serve/peers/peers.mk .peers/mlserver/.installed .peers/kserve/.installed
# mlserver-adaptive (adaptive batching) is a configuration of the mlserver venv, not a venv of its own.

## PEERS_DIR: where make bench-serve builds the MLServer and KServe virtual environments
PEERS_DIR ?= .peers
PEER_VENVS := $(PEERS_DIR)/mlserver/.installed $(PEERS_DIR)/kserve/.installed

# A static pattern rule: the two stamps are explicit file targets.
# --clear: a changed requirements file gives a fresh venv, not the old packages plus the new pins.
$(PEER_VENVS): $(PEERS_DIR)/%/.installed: bench/serve/peers/requirements-%.txt
	python3 -m venv --clear $(PEERS_DIR)/$*
	$(PEERS_DIR)/$*/bin/python -m pip install --quiet -r $<
	touch $@
