# The pipeline's stages are files under $(ARTIFACTS); verbs (help, train, test, ...) are .PHONY.
# Variables map 1:1 onto `python -m pipeline.train` flags and TrainConfig fields:
#   make train RECIPE=seed EPOCHS=3 SEED=1 DEVICE=cpu PRECISION=off ARTIFACTS=out MNIST_MIRROR=../shared/data/mnist
#   make train export bench DATASET=otto OTTO_CSV=train.csv.zip      # artifacts in artifacts/otto
# PY=python3 uses an interpreter that already has the dependencies and skips the .venv bootstrap.
#
# A stage's files depend on (1) the files of the stage before, (2) the source files its programs
# import, listed by pipeline/handoff/sources.py when make reads this file, and (3) a stamp of the
# flags that change what it makes, $(ARTIFACTS)/.flags/<stage>.<checksum of the flags>: a new value
# is a new stamp, made when first needed. Reading this file writes nothing.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

DATASET ?= mnist
OTTO_CSV ?=
RECIPE ?= fast
HIDDEN ?=
EPOCHS ?=
SEED ?= 0
DEVICE ?= auto
PRECISION ?=
CAPTURE ?= off
NPROC ?= 1
NNODES ?= 1
RDZV_ENDPOINT ?=
RDZV_ID ?= mlp-train
TRAIN_SAMPLES ?=
ARTIFACTS ?= artifacts$(if $(filter-out mnist,$(DATASET)),/$(DATASET))
DATA_DIR ?=
MNIST_MIRROR ?=
PYTEST_ARGS ?=
BENCH_FLAGS ?=
MAX_BATCH ?= 8192
MAX_QUEUE_DELAY_US ?= 0
MAX_QUEUE_SIZE ?= 1024
VARIANT ?= fp32
CALIBRATION_ROWS ?=
CALIBRATION_METHOD ?=
PER_CHANNEL ?=
FIRST_LAYER ?=
REDUCE_RANGE ?=
TUNE_VARIANTS ?=
TUNE_BATCH_SIZES ?=
TUNE_SECONDS ?=
HOST ?= 127.0.0.1
PORT ?= 8000
GRPC_PORT ?= 8001
SERVE_BENCH_FLAGS ?=
BENCH_REGRESSION ?= min:100%
BASELINE ?=

VENV := .venv
ifeq ($(origin PY),undefined)
PY := $(VENV)/bin/python
PY_DEPS := $(VENV)/.installed
else
PY_DEPS :=
endif

# stage:file words for every stage's programs and what they import (standard library only, so
# any python3 runs it, before .venv exists).
STAGE_SOURCES := $(shell python3 pipeline/handoff/sources.py train=pipeline/train.py export=export/__main__.py \
	parity=export/parity.py variants=export/variants.py tune=export/tune.py \
	deploy=deploy/build.py,deploy/server.py,deploy/predict.py web=web/build.py bench=bench/conftest.py,bench/test_*.py report=bench/report.py \
	serve=bench/serve_bench.py,bench/serve_floor.py,bench/serve_peers/mlserver_onnx.py,bench/serve_peers/kserve_onnx.py)
ifeq ($(filter train:%,$(STAGE_SOURCES)),)
$(error pipeline/handoff/sources.py listed no sources; it needs python3 on PATH)
endif
sources = $(patsubst $(1):%,%,$(filter $(1):%,$(STAGE_SOURCES)))

# Where the data is, one spelling for every stage that reads it (train, parity, variants; the
# bench's pytest options carry the prefix "bench-"). MNIST files are checked against their sha256,
# so these flags cannot change a model; Otto's CSV can, so its path is also in the model's stamp
# and the file is a prerequisite of model.pt.
data_flags = $(strip $(if $(DATA_DIR),--$(1)data-dir $(DATA_DIR)) $(if $(MNIST_MIRROR),--$(1)mnist-mirror $(MNIST_MIRROR)) \
	$(if $(OTTO_CSV),--$(1)otto-csv $(OTTO_CSV)))

# Which model: the flags that change the trained weights. DEVICE, CAPTURE and NPROC choose where
# and how it trains, not which model (hardware never changes the recipe's semantics), so changing
# only them does not retrain: `make train DEVICE=cpu` then `make serve` (DEVICE=auto) reuses the
# model; `make -B train DEVICE=cuda` retrains on purpose.
MODEL_FLAGS := $(strip --dataset $(DATASET) --recipe $(RECIPE) $(if $(EPOCHS),--epochs $(EPOCHS)) --seed $(SEED) \
	$(if $(PRECISION),--precision $(PRECISION)) $(if $(HIDDEN),--hidden $(HIDDEN)) \
	$(if $(TRAIN_SAMPLES),--train-samples $(TRAIN_SAMPLES)))
TRAIN_FLAGS := $(MODEL_FLAGS) --device $(DEVICE) --capture $(CAPTURE) --artifacts $(ARTIFACTS)

# NPROC > 1 (or NNODES > 1) launches training with torchrun, one process per NPROC on each node:
# --standalone on one machine, the c10d rendezvous at RDZV_ENDPOINT (host:port of node 0) across
# several.
TRAIN_LAUNCH := $(if $(filter-out 1,$(NPROC) $(NNODES)),$(PY) -m torch.distributed.run \
	$(if $(RDZV_ENDPOINT),--nnodes $(NNODES) --rdzv-backend c10d --rdzv-endpoint $(RDZV_ENDPOINT) --rdzv-id $(RDZV_ID),--standalone) \
	--nproc-per-node $(NPROC),$(PY))

# Flags of the variants stage (int8 calibration), the tuning stage and the bundle.
VARIANT_FLAGS := $(strip $(if $(CALIBRATION_ROWS),--calibration-rows $(CALIBRATION_ROWS)) \
	$(if $(CALIBRATION_METHOD),--calibration-method $(CALIBRATION_METHOD)) $(if $(PER_CHANNEL),--per-channel $(PER_CHANNEL)) \
	$(if $(FIRST_LAYER),--first-layer $(FIRST_LAYER)) $(if $(REDUCE_RANGE),--reduce-range $(REDUCE_RANGE)))
TUNE_FLAGS := $(strip $(if $(TUNE_VARIANTS),--variants $(TUNE_VARIANTS)) \
	$(if $(TUNE_BATCH_SIZES),--batch-sizes $(TUNE_BATCH_SIZES)) $(if $(TUNE_SECONDS),--seconds $(TUNE_SECONDS)))
DEPLOY_FLAGS := --max-batch $(MAX_BATCH) --max-queue-delay-us $(MAX_QUEUE_DELAY_US) --max-queue-size $(MAX_QUEUE_SIZE) \
	--variant $(VARIANT)

# Stamps: $(ARTIFACTS)/.flags/<stage>.<cksum of its flags>, holding the flags (for people).
FLAGS_OF_train := $(MODEL_FLAGS) $(if $(OTTO_CSV),--otto-csv $(OTTO_CSV))
FLAGS_OF_variants := $(VARIANT_FLAGS)
FLAGS_OF_tune := $(TUNE_FLAGS)
FLAGS_OF_deploy := $(DEPLOY_FLAGS)
stamp = $(ARTIFACTS)/.flags/$(1).$(firstword $(shell printf '%s' '$(FLAGS_OF_$(1))' | cksum))

VARIANT_FILES := $(addprefix $(ARTIFACTS)/,model.int8.onnx model.int8-dynamic.onnx model.fp16.onnx variants.json)
BENCH_DIR := $(ARTIFACTS)/bench
BENCH_PYTEST_FLAGS = --bench-artifacts $(ARTIFACTS) --bench-dataset $(DATASET) --bench-device $(DEVICE) \
	$(call data_flags,bench-) $(BENCH_FLAGS)

.PHONY: help setup train export tune deploy web serve bench bench-study bench-serve bench-compare test test-all test-no-bf16 clean

# The peer servers' own virtual environments (MLServer, KServe), for bench-serve only.
include bench/serve_peers/peers.mk

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'
	@echo "DEVICE, CAPTURE and NPROC choose where the model trains, not which one: changing only them does not retrain (make -B train does)."

setup: $(PY_DEPS) ## create .venv and install the pinned dependencies (re-runs when pyproject.toml changes)

train: $(ARTIFACTS)/model.pt ## train the MLP: DATASET=mnist|otto RECIPE=fast|seed EPOCHS= SEED= DEVICE= PRECISION= HIDDEN= NPROC=

export: $(ARTIFACTS)/manifest.json $(ARTIFACTS)/variants.json ## TorchScript + ONNX (softmax head) through the parity gate, then int8/fp16 variants through theirs

tune: $(ARTIFACTS)/ort_tuning.json ## choose ONNX Runtime session options per variant and batch size by measurement (TUNE_SECONDS=...)

deploy: $(ARTIFACTS)/deploy/manifest.json ## torch-free bundle in ARTIFACTS/deploy (VARIANT=fp32|int8|int8-dynamic|fp16; fp32 always kept; MAX_QUEUE_DELAY_US= MAX_QUEUE_SIZE=)

web: $(ARTIFACTS)/deploy/web/index.html ## the page that runs the bundle in the browser (ONNX Runtime Web) -> ARTIFACTS/deploy/web; needs npm

serve: $(ARTIFACTS)/deploy/manifest.json ## serve the bundle (Open Inference Protocol, HTTP on HOST:PORT, gRPC on GRPC_PORT; the page at / after make web) until Ctrl-C
	$(PY) -m deploy.server --bundle $(ARTIFACTS)/deploy --host $(HOST) --port $(PORT) --grpc-port $(GRPC_PORT)

bench-serve: $(BENCH_DIR)/serve.md ## mlp-serve beside MLServer and KServe (each in its own venv under .peers/), 1/8/64 clients, robustness -> bench/serve.md

bench: $(BENCH_DIR)/report.md ## every runtime, variant and peer, the training step, one time-to-accuracy run per recipe, the targets -> bench/report.md

bench-study: $(BENCH_DIR)/study.json ## the longer studies (more seeds, the lecture's script, the ablation), added to bench/report.md
	$(PY) -m bench.report --results $(BENCH_DIR)/results.json --study $< --out $(BENCH_DIR)

# Re-runs `make bench`'s suites and fails if any benchmark's minimum time regressed by more than
# BENCH_REGRESSION against a run saved by `make bench` (the latest, or BASELINE=NNNN).
bench-compare: $(ARTIFACTS)/ort_tuning.json $(PY_DEPS) ## re-run the benchmarks, fail on a regression beyond BENCH_REGRESSION
	$(PY) -m pytest bench/ -m "not study" $(BENCH_PYTEST_FLAGS) --benchmark-storage=file://$(abspath $(BENCH_DIR))/history \
		--benchmark-compare$(if $(BASELINE),=$(BASELINE)) --benchmark-compare-fail=$(BENCH_REGRESSION)

test: $(PY_DEPS) ## run the default test suite (real MNIST; excludes tests marked slow)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(PY_DEPS) ## run every test, the slow full-length training runs included
	$(PY) -m pytest $(PYTEST_ARGS)

# A CPU without native bf16 (AVX2 only, like AMD Zen 3), reproduced on any x86-64 CPU: oneDNN, MKL
# and ATen are capped at AVX2, so `auto` picks float32 and an explicit bf16 request is emulated.
NO_BF16_ENV := ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2
test-no-bf16: $(PY_DEPS) ## the default test suite as on an AVX2-only CPU without native bf16
	$(NO_BF16_ENV) $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

clean: ## delete generated artifacts (keeps the downloaded data and .venv)
	find $(ARTIFACTS) -mindepth 1 -maxdepth 1 ! -name data ! -name .gitkeep -exec rm -rf {} +

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -e '.[deploy,test,peers]'
	touch $@

# A stage's stamp; the stamps of its earlier values are removed, so going back to one re-runs it.
$(ARTIFACTS)/.flags/%:
	@mkdir -p $(@D) && rm -f $(@D)/$(basename $*).* && printf '%s\n' '$(FLAGS_OF_$(basename $*))' > $@

$(ARTIFACTS)/model.pt $(ARTIFACTS)/train_metrics.json &: $(call stamp,train) $(call sources,train) $(OTTO_CSV) $(PY_DEPS)
	$(TRAIN_LAUNCH) -m pipeline.train $(TRAIN_FLAGS) $(call data_flags)

$(ARTIFACTS)/model.torchscript.pt $(ARTIFACTS)/model.onnx $(ARTIFACTS)/export_report.json &: \
		$(ARTIFACTS)/model.pt $(call sources,export) $(PY_DEPS)
	$(PY) -m export --artifacts $(ARTIFACTS)

# parity.md is written too but is no target, so a failed gate leaves it behind to read.
$(ARTIFACTS)/parity.json $(ARTIFACTS)/manifest.json &: \
		$(ARTIFACTS)/model.torchscript.pt $(ARTIFACTS)/model.onnx $(ARTIFACTS)/export_report.json $(call sources,parity)
	$(PY) -m export.parity --artifacts $(ARTIFACTS) --device $(DEVICE) $(call data_flags)

# Variants hang off parity.json, not manifest.json: this stage and the next add their files to
# manifest.json, which must not make them stale.
$(VARIANT_FILES) &: $(ARTIFACTS)/parity.json $(call stamp,variants) $(call sources,variants) $(PY_DEPS)
	$(PY) -m export.variants --artifacts $(ARTIFACTS) --device $(DEVICE) $(VARIANT_FLAGS) $(call data_flags)

$(ARTIFACTS)/ort_tuning.json: $(ARTIFACTS)/variants.json $(call stamp,tune) $(call sources,tune)
	$(PY) -m export.tune --artifacts $(ARTIFACTS) $(TUNE_FLAGS)

# The bundle's model card quotes the bench headline when a bench run exists.
$(ARTIFACTS)/deploy/manifest.json $(ARTIFACTS)/deploy/MODEL_CARD.md &: $(ARTIFACTS)/ort_tuning.json $(call stamp,deploy) $(wildcard $(BENCH_DIR)/results.json) \
		$(call sources,deploy) $(PY_DEPS)
	$(PY) -m deploy.build --artifacts $(ARTIFACTS) $(DEPLOY_FLAGS)

# onnxruntime-web, as web/package-lock.json pins it (npm's own record of the install is the target).
WEB_RUNTIME := web/node_modules/.package-lock.json
$(WEB_RUNTIME): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund

# The page hangs off MODEL_CARD.md, not the bundle's manifest.json: this stage adds its files to
# manifest.json, which must not make it stale. A new bundle (make deploy) replaces deploy/ whole.
$(ARTIFACTS)/deploy/web/index.html: $(ARTIFACTS)/deploy/MODEL_CARD.md $(call sources,web) $(wildcard web/page/*) \
		$(WEB_RUNTIME) $(PY_DEPS)
	$(PY) -m web.build --artifacts $(ARTIFACTS) $(call data_flags)

$(BENCH_DIR)/results.json: $(ARTIFACTS)/ort_tuning.json $(call sources,bench) $(PY_DEPS)
	@mkdir -p $(@D)
	$(PY) -m pytest bench/ -m "not study" $(BENCH_PYTEST_FLAGS) --benchmark-storage=file://$(abspath $(@D))/history \
		--benchmark-json=$@ --benchmark-save=bench

$(BENCH_DIR)/study.json: $(ARTIFACTS)/ort_tuning.json $(call sources,bench) $(PY_DEPS)
	@mkdir -p $(@D)
	$(PY) -m pytest bench/ -m study $(BENCH_PYTEST_FLAGS) --benchmark-storage=file://$(abspath $(@D))/study-history \
		--benchmark-json=$@ --benchmark-save=study

$(BENCH_DIR)/report.md $(BENCH_DIR)/report.png &: $(BENCH_DIR)/results.json $(wildcard $(BENCH_DIR)/study.json) $(call sources,report)
	$(PY) -m bench.report --results $< --out $(@D)

# mlp-serve (in `serve`'s import closure through deploy/server.py) beside the peers, in one run.
$(BENCH_DIR)/serve.md $(BENCH_DIR)/serve.png &: $(ARTIFACTS)/deploy/manifest.json $(PEER_VENVS) $(call sources,serve) $(PY_DEPS)
	@mkdir -p $(@D)
	$(PY) -m bench.serve_bench --artifacts $(ARTIFACTS) --peers-dir $(PEERS_DIR) $(call data_flags) $(SERVE_BENCH_FLAGS)
