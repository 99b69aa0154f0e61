# The pipeline's stages are files under $(ARTIFACTS); verbs (help, train, test, ...) are .PHONY.
# Variables map 1:1 onto the programs' flags and their configs' fields (`make help` lists them all):
#   make train RECIPE=seed EPOCHS=3 SEED=1 DEVICE=cpu PRECISION=off ARTIFACTS=out MNIST_MIRROR=../shared/data/mnist
#   make train export bench DATASET=otto OTTO_CSV=train.csv.zip      # artifacts in artifacts/otto
# PY=python3 uses an interpreter that already has the dependencies and skips the .venv bootstrap.
#
# A stage's files depend on (1) the files of the stage before, (2) the source files its programs
# import, listed by tools/stage_sources.py when make reads this file, and (3) a stamp of the flags
# that change what it makes, $(ARTIFACTS)/.flags/<stage>.<checksum of the flags>: a new value is a
# new stamp, made when first needed; a stage that succeeds removes the stamps of its other values.
# Reading this file writes nothing. There is no .DELETE_ON_ERROR: every program writes its files
# atomically, so a stage that fails leaves the previous outputs whole (the bench's pytest JSON is
# moved into place only when the run passed).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

# Every variable a user sets has its `## NAME: what it is` line above it: `make help` prints them
# with their values. (No apostrophes in those lines: help quotes them for the shell.)
## DATASET: the data to train on, mnist or otto
DATASET ?= mnist
## OTTO_CSV: Kaggle Otto train.csv (.csv, .csv.gz or .csv.zip); needed with DATASET=otto
OTTO_CSV ?=
## RECIPE: fast (3 epochs) or seed (the lecture exactly)
RECIPE ?= fast
## HIDDEN: hidden widths instead of the recipe ones, e.g. 512,256
HIDDEN ?=
## EPOCHS: passes over the training set instead of the recipe ones (2.5 is allowed)
EPOCHS ?=
## SEED: seeds initialisation and shuffling
SEED ?= 0
## DEVICE: where training and the gates run: auto (CUDA when present), cpu, cuda, cuda:N
DEVICE ?= auto
## PRECISION: instead of the recipe one: auto (bf16 where native), bfloat16, off (float32)
PRECISION ?=
## CAPTURE: off, or cuda-graph (each training step replayed as a CUDA graph)
CAPTURE ?= off
## NPROC: training processes on this machine (torchrun and DDP above 1)
NPROC ?= 1
## NNODES: machines training together (with RDZV_ENDPOINT)
NNODES ?= 1
## RDZV_ENDPOINT: host:port of node 0, when NNODES is above 1
RDZV_ENDPOINT ?=
## RDZV_ID: the rendezvous id all nodes share
RDZV_ID ?= mlp-train
## TRAIN_SAMPLES: train on the first N training samples only (quick runs)
TRAIN_SAMPLES ?=
## ARTIFACTS: the folder every stage reads and writes (artifacts/DATASET for datasets other than mnist)
ARTIFACTS ?= artifacts$(if $(filter-out mnist,$(DATASET)),/$(DATASET))
## DATA_DIR: where MNIST is kept (empty: ARTIFACTS/data)
DATA_DIR ?=
## MNIST_MIRROR: a folder holding the four MNIST .gz files, for machines without internet
MNIST_MIRROR ?=
## AUTOTUNE: time the AOTInductor package matmul kernels while compiling it: on or off (empty: on)
AUTOTUNE ?=
## CALIBRATION_ROWS: training rows the int8 calibration sees (empty: 1024)
CALIBRATION_ROWS ?=
## CALIBRATION_METHOD: minmax, percentile or entropy (empty: minmax)
CALIBRATION_METHOD ?=
## PER_CHANNEL: int8 weight scales per channel: auto, on, off (empty: auto)
PER_CHANNEL ?=
## FIRST_LAYER: precision of the int8 model first layer: auto, int8, float32 (empty: auto)
FIRST_LAYER ?=
## REDUCE_RANGE: 7-bit int8 weights: auto (on without VNNI), on, off (empty: auto)
REDUCE_RANGE ?=
## TUNE_VARIANTS: variants make tune times (empty: fp32,int8)
TUNE_VARIANTS ?=
## TUNE_BATCH_SIZES: batch sizes make tune times (empty: 1,64,1024)
TUNE_BATCH_SIZES ?=
## TUNE_SECONDS: timed work per candidate per round, s (empty: 0.1)
TUNE_SECONDS ?=
## VARIANT: the bundle default model: fp32, int8, int8-dynamic or fp16 (fp32 is always in it)
VARIANT ?= fp32
## MAX_BATCH: rows per request and per ONNX Runtime call, in mlp-serve and Triton (empty: 8192)
MAX_BATCH ?=
## MAX_QUEUE_DELAY_US: longest wait to fill a batch, microseconds (empty: 0)
MAX_QUEUE_DELAY_US ?=
## MAX_QUEUE_SIZE: queued requests beyond which new ones get 503 (empty: 1024)
MAX_QUEUE_SIZE ?=
## REPOSITORY: a model repository folder: make deploy also publishes the bundle there as the next version, make serve serves all of it
REPOSITORY ?=

## HOST: the address make serve binds (0.0.0.0 for every interface)
HOST ?= 127.0.0.1
## PORT: the HTTP port of make serve
PORT ?= 8000
## GRPC_PORT: the gRPC port of make serve (0: none)
GRPC_PORT ?= 8001
## CPP_LATENCY_ROWS: single-image calls the C++ loader times for its batch-1 p50 (make cpp)
CPP_LATENCY_ROWS ?= 2000
## BENCH_FLAGS: more options for the bench pytest, e.g. --bench-threads 1 or --bench-batch-sizes 1,64
BENCH_FLAGS ?=
## SERVE_BENCH_FLAGS: more flags for python -m bench.serve, e.g. --seconds 2 --peers ""
SERVE_BENCH_FLAGS ?=
## BENCH_REGRESSION: what make bench-compare fails on (pytest-benchmark compare-fail syntax)
BENCH_REGRESSION ?= min:100%
## BASELINE: the saved make bench run make bench-compare compares with (empty: the latest)
BASELINE ?=
## PYTEST_ARGS: more pytest arguments for make test, e.g. -k server or -x
PYTEST_ARGS ?=
## TEST_WORKERS: pytest-xdist processes for make test (auto: one per core; 0: none)
TEST_WORKERS ?= auto

VENV := .venv
ifeq ($(origin PY),undefined)
PY := $(VENV)/bin/python
PY_DEPS := $(VENV)/.installed
else
PY_DEPS :=
endif

# stage:file words for every stage's programs and what they import (standard library only, so
# any python3 runs it, before .venv exists). The serving bench runs mlp-serve, so its programs
# include the server's.
STAGE_SOURCES := $(shell python3 tools/stage_sources.py train=pipeline/train.py export=export/__main__.py \
	parity=export/parity.py variants=export/variants.py tune=export/tune.py deploy=deploy/build/__main__.py \
	web=web/build.py bench=bench/suites/conftest.py,bench/suites/test_*.py report=bench/report/__main__.py \
	serve=bench/serve/__main__.py,bench/serve/stack_floor.py,bench/serve/peers/mlserver_onnx.py,bench/serve/peers/kserve_onnx.py,bench/serve/peers/triton_onnx.py,deploy/serve/__main__.py)
ifeq ($(filter train:%,$(STAGE_SOURCES)),)
$(error tools/stage_sources.py listed no sources; it needs python3 on PATH)
endif
sources = $(patsubst $(1):%,%,$(filter $(1):%,$(STAGE_SOURCES)))

# Where the data is, one spelling for every stage that reads it (train, parity, variants; the
# bench's pytest options carry the prefix "bench-"). MNIST files are checked against their sha256,
# so these flags cannot change a model; Otto's CSV can, so its path is also in the model's stamp
# and the file is a prerequisite of model.pt.
data_flags = $(strip $(if $(DATA_DIR),--$(1)data-dir $(DATA_DIR)) $(if $(MNIST_MIRROR),--$(1)mnist-mirror $(MNIST_MIRROR)) \
	$(if $(OTTO_CSV),--$(1)otto-csv $(OTTO_CSV)))
# `--name value` when the variable is set, else nothing: the program's default.
flag = $(if $(2),--$(1) $(2))

# Which model: the flags that change the trained weights. DEVICE, CAPTURE and NPROC choose where
# and how it trains, not which model (hardware never changes the recipe's semantics), so changing
# only them does not retrain: `make train DEVICE=cpu` then `make serve` (DEVICE=auto) reuses the
# model; `make -B train DEVICE=cuda` retrains on purpose.
MODEL_FLAGS := $(strip --dataset $(DATASET) --recipe $(RECIPE) $(call flag,epochs,$(EPOCHS)) --seed $(SEED) \
	$(call flag,precision,$(PRECISION)) $(call flag,hidden,$(HIDDEN)) $(call flag,train-samples,$(TRAIN_SAMPLES)))
TRAIN_FLAGS := $(MODEL_FLAGS) --device $(DEVICE) --capture $(CAPTURE) --artifacts $(ARTIFACTS)

# NPROC > 1 (or NNODES > 1) launches training with torchrun, one process per NPROC on each node:
# --standalone on one machine, the c10d rendezvous at RDZV_ENDPOINT (host:port of node 0) across
# several.
TRAIN_LAUNCH := $(if $(filter-out 1,$(NPROC) $(NNODES)),$(PY) -m torch.distributed.run \
	$(if $(RDZV_ENDPOINT),--nnodes $(NNODES) --rdzv-backend c10d --rdzv-endpoint $(RDZV_ENDPOINT) --rdzv-id $(RDZV_ID),--standalone) \
	--nproc-per-node $(NPROC),$(PY))

# Flags of the export stage (the AOTInductor compile), the variants stage (int8 calibration), the
# tuning stage and the bundle; an empty
# variable passes nothing, so each default lives in one place, the program's config.
EXPORT_FLAGS := $(strip $(call flag,autotune,$(AUTOTUNE)))
VARIANT_FLAGS := $(strip $(call flag,calibration-rows,$(CALIBRATION_ROWS)) $(call flag,calibration-method,$(CALIBRATION_METHOD)) \
	$(call flag,per-channel,$(PER_CHANNEL)) $(call flag,first-layer,$(FIRST_LAYER)) $(call flag,reduce-range,$(REDUCE_RANGE)))
TUNE_FLAGS := $(strip $(call flag,variants,$(TUNE_VARIANTS)) $(call flag,batch-sizes,$(TUNE_BATCH_SIZES)) \
	$(call flag,seconds,$(TUNE_SECONDS)))
DEPLOY_FLAGS := $(strip --variant $(VARIANT) $(call flag,max-batch,$(MAX_BATCH)) \
	$(call flag,max-queue-delay-us,$(MAX_QUEUE_DELAY_US)) $(call flag,max-queue-size,$(MAX_QUEUE_SIZE)))

# Stamps: $(ARTIFACTS)/.flags/<stage>.<cksum of its flags>, holding the flags (for people). A
# stage's recipe ends with $(call keep_stamp,<stage>): its stamps for other values go, so going
# back to one re-runs it; a failed stage keeps them, so the outputs it left whole stay current.
FLAGS_OF_train := $(MODEL_FLAGS) $(if $(OTTO_CSV),--otto-csv $(OTTO_CSV))
FLAGS_OF_export := $(EXPORT_FLAGS)
FLAGS_OF_variants := $(VARIANT_FLAGS)
FLAGS_OF_tune := $(TUNE_FLAGS)
FLAGS_OF_deploy := $(DEPLOY_FLAGS)
stamp = $(ARTIFACTS)/.flags/$(1).$(firstword $(shell printf '%s' '$(FLAGS_OF_$(1))' | cksum))
keep_stamp = find $(ARTIFACTS)/.flags -name '$(1).*' ! -name '$(notdir $(call stamp,$(1)))' -delete

VARIANT_FILES := $(addprefix $(ARTIFACTS)/,model.int8.onnx model.int8-dynamic.onnx model.fp16.onnx variants.json)
BUNDLE := $(ARTIFACTS)/deploy
PAGE := $(BUNDLE)/web/index.html
# Exists once `make web` has built a page for this ARTIFACTS folder: from then on a rebuilt bundle
# (make deploy, make serve) gets its page rebuilt too, instead of losing it.
PAGE_WANTED := $(ARTIFACTS)/.flags/web
BUNDLE_AND_PAGE := $(BUNDLE)/manifest.json $(if $(wildcard $(PAGE_WANTED)),$(PAGE))
BENCH_DIR := $(ARTIFACTS)/bench
BENCH_PYTEST_FLAGS = --bench-artifacts $(ARTIFACTS) --bench-dataset $(DATASET) --bench-device $(DEVICE) \
	$(call data_flags,bench-) $(BENCH_FLAGS)
TEST_FLAGS = -m "not slow" $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadgroup) $(PYTEST_ARGS)

.PHONY: help setup train export tune deploy web serve cpp bench bench-study bench-serve bench-compare test test-all test-no-bf16 clean

# The peer servers' own virtual environments (MLServer, KServe), for bench-serve only.
include bench/serve/peers/peers.mk

HELP_VARIABLES := $(shell sed -n 's/^## \([A-Z_][A-Z0-9_]*\): .*/\1/p' $(MAKEFILE_LIST))
help: ## list the targets, then every variable with its value now and what it does
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'
	@echo "DEVICE, CAPTURE and NPROC choose where the model trains, not which one: changing only them does not retrain (make -B train does)."
	@echo; echo "Variables (make VAR=value); the value each has now, then what it does:"
	@$(foreach v,$(HELP_VARIABLES),printf '  %-19s %-17s %s\n' '$(v)' '$(if $($(v)),$($(v)),(empty))' \
		'$(shell sed -n 's/^## $(v): //p' $(MAKEFILE_LIST))';)

setup: $(PY_DEPS) ## create .venv and install the pinned dependencies (re-runs when pyproject.toml changes)

train: $(ARTIFACTS)/model.pt ## train the MLP: DATASET=mnist|otto RECIPE=fast|seed EPOCHS= SEED= DEVICE= PRECISION= HIDDEN= NPROC=

export: $(ARTIFACTS)/manifest.json $(ARTIFACTS)/variants.json ## TorchScript, ExportedProgram, AOTInductor package and ONNX (softmax head) through the parity gate, then int8/fp16 variants through theirs

tune: $(ARTIFACTS)/ort_tuning.json ## choose ONNX Runtime session options per variant and batch size by measurement (TUNE_SECONDS=...)

deploy: $(BUNDLE_AND_PAGE) ## torch-free bundle in ARTIFACTS/deploy (VARIANT=fp32|int8|int8-dynamic|fp16; fp32 always kept), with its page once make web has run; REPOSITORY=DIR also publishes it there as the next version
ifneq ($(REPOSITORY),)
	$(PY) -m deploy.build.publish --bundle $(BUNDLE) --repository $(REPOSITORY)
endif

web: $(PAGE) ## the page that runs the bundle in the browser (ONNX Runtime Web) -> ARTIFACTS/deploy/web; needs npm

serve: $(if $(REPOSITORY),$(PY_DEPS),$(BUNDLE_AND_PAGE)) ## serve the bundle, or every model of REPOSITORY (Open Inference Protocol, HTTP on HOST:PORT, gRPC on GRPC_PORT; the page at / once make web has run) until Ctrl-C
	$(PY) -m deploy.serve $(if $(REPOSITORY),--repository $(REPOSITORY),--bundle $(BUNDLE)) --host $(HOST) --port $(PORT) --grpc-port $(GRPC_PORT)

cpp: $(CPP_LOADER) $(ARTIFACTS)/parity.json ## the C++ loader (libtorch from the torch wheel): model.aoti.pt2 and model.torchscript.pt on the MNIST test set -> bench/cpp.json
	$(CPP_RUN)

bench-serve: $(BENCH_DIR)/serve.md ## mlp-serve beside Triton, MLServer and KServe (each in its own venv under .peers/), 1/8/64 clients, hot reload, TLS, robustness -> bench/serve.md

bench: $(BENCH_DIR)/report.md ## every runtime, variant and peer, the training step, one time-to-accuracy run per recipe, the targets -> bench/report.md

bench-study: $(BENCH_DIR)/study.json ## the longer studies (more seeds, the lecture's script, the ablation, the recipe search), added to bench/report.md
	$(PY) -m bench.report --results $(BENCH_DIR)/results.json --study $< --out $(BENCH_DIR)

# Re-runs `make bench`'s suites and fails if any benchmark's minimum time regressed by more than
# BENCH_REGRESSION against a run saved by `make bench` (the latest, or BASELINE=NNNN).
bench-compare: $(ARTIFACTS)/ort_tuning.json $(PY_DEPS) ## re-run the benchmarks, fail on a regression beyond BENCH_REGRESSION
	$(PY) -m pytest bench/suites -m "not study" $(BENCH_PYTEST_FLAGS) --benchmark-storage=file://$(abspath $(BENCH_DIR))/history \
		--benchmark-compare$(if $(BASELINE),=$(BASELINE)) --benchmark-compare-fail=$(BENCH_REGRESSION)

test: $(PY_DEPS) ## run the default test suite on every core (real MNIST; excludes tests marked slow)
	$(PY) -m pytest $(TEST_FLAGS)

test-all: $(PY_DEPS) ## run every test, the slow full-length training runs included
	$(PY) -m pytest $(subst -m "not slow",,$(TEST_FLAGS))

# A CPU without native bf16 (AVX2 only, like AMD Zen 3), reproduced on any x86-64 CPU: oneDNN, MKL
# and ATen are capped at AVX2, so `auto` picks float32 and an explicit bf16 request is emulated.
NO_BF16_ENV := ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2
test-no-bf16: $(PY_DEPS) ## the default test suite as on an AVX2-only CPU without native bf16
	$(NO_BF16_ENV) $(PY) -m pytest $(TEST_FLAGS)

clean: ## delete generated artifacts (keeps the downloaded data and .venv)
	find $(ARTIFACTS) -mindepth 1 -maxdepth 1 ! -name data ! -name .gitkeep -exec rm -rf {} +

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -e '.[deploy,test,peers]'
	touch $@

# A stage's stamp. Training's is made only once its flags are valid (a refused DATASET leaves no
# folder behind); the other stages check theirs before they write anything.
$(ARTIFACTS)/.flags/%:
	@mkdir -p $(@D) && printf '%s\n' '$(FLAGS_OF_$(basename $*))' > $@
$(ARTIFACTS)/.flags/train.%: | $(PY_DEPS)
	@$(PY) -m pipeline.train --check-flags $(TRAIN_FLAGS)
	@mkdir -p $(@D) && printf '%s\n' '$(FLAGS_OF_train)' > $@

$(ARTIFACTS)/model.pt $(ARTIFACTS)/train_metrics.json &: $(call stamp,train) $(call sources,train) $(OTTO_CSV) $(PY_DEPS)
	$(TRAIN_LAUNCH) -m pipeline.train $(TRAIN_FLAGS) $(call data_flags)
	@$(call keep_stamp,train)

# model.torchscript.pt is written too while this torch has TorchScript, but is no target: a torch
# without it must not make the export stale forever (export_report.json says which were written).
TORCH_EXPORTS := $(ARTIFACTS)/model.pt2 $(ARTIFACTS)/model.aoti.pt2
$(TORCH_EXPORTS) $(ARTIFACTS)/model.onnx $(ARTIFACTS)/export_report.json &: \
		$(ARTIFACTS)/model.pt $(call stamp,export) $(call sources,export) $(PY_DEPS)
	$(PY) -m export --artifacts $(ARTIFACTS) --device $(DEVICE) $(EXPORT_FLAGS)
	@$(call keep_stamp,export)

# parity.md is written too but is no target, so a failed gate leaves it behind to read.
$(ARTIFACTS)/parity.json $(ARTIFACTS)/held_out.npz $(ARTIFACTS)/held_out_probs.idx $(ARTIFACTS)/manifest.json &: \
		$(TORCH_EXPORTS) $(ARTIFACTS)/model.onnx $(ARTIFACTS)/export_report.json $(call sources,parity)
	$(PY) -m export.parity --artifacts $(ARTIFACTS) --device $(DEVICE) $(call data_flags)

# Variants hang off parity.json, not manifest.json: this stage and the next add their files to
# manifest.json, which must not make them stale.
$(VARIANT_FILES) &: $(ARTIFACTS)/parity.json $(call stamp,variants) $(call sources,variants) $(PY_DEPS)
	$(PY) -m export.variants --artifacts $(ARTIFACTS) --device $(DEVICE) $(VARIANT_FLAGS) $(call data_flags)
	@$(call keep_stamp,variants)

$(ARTIFACTS)/ort_tuning.json: $(ARTIFACTS)/variants.json $(call stamp,tune) $(call sources,tune)
	$(PY) -m export.tune --artifacts $(ARTIFACTS) $(TUNE_FLAGS)
	@$(call keep_stamp,tune)

# The bundle depends on what its builder imports, not on the server's or the predictor's code (they
# read a bundle; they are not in it), nor on a bench run (the model card quotes the one there is).
$(BUNDLE)/manifest.json $(BUNDLE)/MODEL_CARD.md &: $(ARTIFACTS)/ort_tuning.json $(call stamp,deploy) $(call sources,deploy) $(PY_DEPS)
	$(PY) -m deploy.build --artifacts $(ARTIFACTS) $(DEPLOY_FLAGS)
	@$(call keep_stamp,deploy)

# onnxruntime-web, as web/package-lock.json pins it (npm's own record of the install is the target).
WEB_RUNTIME := web/node_modules/.package-lock.json
$(WEB_RUNTIME): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund

# The page hangs off MODEL_CARD.md, not the bundle's manifest.json: this stage adds its files to
# manifest.json, which must not make it stale. A new bundle (make deploy) replaces deploy/ whole.
$(PAGE): $(BUNDLE)/MODEL_CARD.md $(ARTIFACTS)/held_out.npz $(call sources,web) $(wildcard web/page/*) $(WEB_RUNTIME) $(PY_DEPS)
	$(PY) -m web.build --artifacts $(ARTIFACTS)
	@touch $(PAGE_WANTED)

# pytest-benchmark writes its JSON even when a benchmark fails: it becomes the target only after a
# passing run, so a failed bench leaves the previous results whole.
$(BENCH_DIR)/results.json: $(ARTIFACTS)/ort_tuning.json $(call sources,bench) $(PY_DEPS)
	@mkdir -p $(@D)
	$(PY) -m pytest bench/suites -m "not study" $(BENCH_PYTEST_FLAGS) --benchmark-storage=file://$(abspath $(@D))/history \
		--benchmark-json=$@.partial --benchmark-save=bench
	@mv $@.partial $@

$(BENCH_DIR)/study.json: $(ARTIFACTS)/ort_tuning.json $(call sources,bench) $(PY_DEPS)
	@mkdir -p $(@D)
	$(PY) -m pytest bench/suites -m study $(BENCH_PYTEST_FLAGS) --benchmark-storage=file://$(abspath $(@D))/study-history \
		--benchmark-json=$@.partial --benchmark-save=study
	@mv $@.partial $@

# The C++ loader, built against the installed torch wheel's libtorch (cpp/flags.py), and its run on
# the MNIST test set's IDX files (the files training verified): accuracy, agreement with the gate's
# reference probabilities, batch-1 p50. The report puts that latency beside Python's.
## CPP_LOADER: where make cpp builds the C++ loader
CPP_LOADER ?= build/cpp/mlp-load
MNIST_RAW = $(or $(DATA_DIR),$(ARTIFACTS)/data)/MNIST/raw
CPP_RUN = test "$(DATASET)" = mnist || { echo "make cpp: the C++ loader reads MNIST IDX files; DATASET=$(DATASET)" >&2; exit 2; }; \
	mkdir -p $(BENCH_DIR) && $(CPP_LOADER) --images $(MNIST_RAW)/t10k-images-idx3-ubyte --labels $(MNIST_RAW)/t10k-labels-idx1-ubyte \
	--reference $(ARTIFACTS)/held_out_probs.idx --latency-rows $(CPP_LATENCY_ROWS) --json $(BENCH_DIR)/cpp.json \
	$(ARTIFACTS)/model.aoti.pt2 $(wildcard $(ARTIFACTS)/model.torchscript.pt)
$(CPP_LOADER): cpp/mlp_load.cpp cpp/flags.py $(PY_DEPS)
	@mkdir -p $(@D)
	$(CXX) -std=c++20 -O2 -o $@.partial $< $$($(PY) cpp/flags.py) && mv $@.partial $@
$(BENCH_DIR)/cpp.json: $(CPP_LOADER) $(ARTIFACTS)/parity.json
	$(CPP_RUN)

$(BENCH_DIR)/report.md $(BENCH_DIR)/report.png &: $(BENCH_DIR)/results.json $(wildcard $(BENCH_DIR)/study.json) \
		$(if $(filter mnist,$(DATASET)),$(BENCH_DIR)/cpp.json) $(call sources,report)
	$(PY) -m bench.report --results $< --out $(@D)

# mlp-serve (deploy/serve/, in `serve`'s sources) beside the peers, in one run.
$(BENCH_DIR)/serve.md $(BENCH_DIR)/serve.png &: $(BUNDLE)/manifest.json $(ARTIFACTS)/held_out.npz $(PEER_VENVS) $(call sources,serve) $(PY_DEPS)
	@mkdir -p $(@D)
	$(PY) -m bench.serve --artifacts $(ARTIFACTS) --peers-dir $(PEERS_DIR) $(SERVE_BENCH_FLAGS)
