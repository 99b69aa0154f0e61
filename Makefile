# The pipeline's stages are files under $(ARTIFACTS); verbs (help, train, test, ...) are .PHONY.
# Variables map 1:1 onto `python -m pipeline.train` flags and TrainConfig fields:
#   make train RECIPE=seed EPOCHS=3 SEED=1 DEVICE=cpu PRECISION=off ARTIFACTS=out MNIST_MIRROR=../shared/data/mnist
#   make train export bench DATASET=otto OTTO_CSV=train.csv.zip      # artifacts in artifacts/otto
# PY=python3 uses an interpreter that already has the dependencies and skips the .venv bootstrap.

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
BENCH_REGRESSION ?= min:100%
BASELINE ?=

VENV := .venv
ifeq ($(origin PY),undefined)
PY := $(VENV)/bin/python
PY_DEPS := $(VENV)/.installed
else
PY_DEPS :=
endif

PIPELINE_SOURCES := $(wildcard pipeline/*.py pipeline/datasets/*.py)
EXPORT_SOURCES := $(wildcard export/*.py)
BENCH_SOURCES := $(wildcard bench/*.py)
DEPLOY_SOURCES := $(wildcard deploy/*.py)
BENCH_PYTEST_FLAGS = --bench-artifacts $(ARTIFACTS) --bench-dataset $(DATASET) --bench-device $(DEVICE) $(if $(DATA_DIR),--bench-data-dir $(DATA_DIR)) \
	--benchmark-storage=file://$(abspath $(ARTIFACTS))/bench/history $(BENCH_FLAGS)

# Flags that change the trained model (recorded in train.flags; Otto's CSV is one, and a
# prerequisite of model.pt, since no checksum pins its content) and flags that only say where the
# verified MNIST data comes from (they cannot change it: every file is checked against its sha256).
OTTO_FLAGS := $(if $(OTTO_CSV),--otto-csv $(OTTO_CSV))
TRAIN_FLAGS := $(strip --dataset $(DATASET) --recipe $(RECIPE) $(if $(EPOCHS),--epochs $(EPOCHS)) --seed $(SEED) \
	--device $(DEVICE) $(if $(PRECISION),--precision $(PRECISION)) $(if $(HIDDEN),--hidden $(HIDDEN)) \
	--capture $(CAPTURE) $(if $(TRAIN_SAMPLES),--train-samples $(TRAIN_SAMPLES)) $(OTTO_FLAGS) --artifacts $(ARTIFACTS))
DATA_FLAGS := $(strip $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(MNIST_MIRROR),--mnist-mirror $(MNIST_MIRROR)))

# NPROC > 1 (or NNODES > 1) launches training with torchrun, one process per NPROC on each node:
# --standalone on one machine, the c10d rendezvous at RDZV_ENDPOINT (host:port of node 0) across
# several. Not in train.flags: the world size changes how a model is trained, not which model.
TRAIN_LAUNCH := $(if $(filter-out 1,$(NPROC) $(NNODES)),$(PY) -m torch.distributed.run \
	$(if $(RDZV_ENDPOINT),--nnodes $(NNODES) --rdzv-backend c10d --rdzv-endpoint $(RDZV_ENDPOINT) --rdzv-id $(RDZV_ID),--standalone) \
	--nproc-per-node $(NPROC),$(PY))

# Flags of the variants stage (int8 calibration) and of the tuning stage (python -m export.variants / export.tune).
VARIANT_FLAGS := $(strip $(if $(CALIBRATION_ROWS),--calibration-rows $(CALIBRATION_ROWS)) \
	$(if $(CALIBRATION_METHOD),--calibration-method $(CALIBRATION_METHOD)) $(if $(PER_CHANNEL),--per-channel $(PER_CHANNEL)) \
	$(if $(FIRST_LAYER),--first-layer $(FIRST_LAYER)) $(if $(REDUCE_RANGE),--reduce-range $(REDUCE_RANGE)))
TUNE_FLAGS := $(strip $(if $(TUNE_VARIANTS),--variants $(TUNE_VARIANTS)) \
	$(if $(TUNE_BATCH_SIZES),--batch-sizes $(TUNE_BATCH_SIZES)) $(if $(TUNE_SECONDS),--seconds $(TUNE_SECONDS)))
VARIANT_FILES := $(addprefix $(ARTIFACTS)/,model.int8.onnx model.int8-dynamic.onnx model.fp16.onnx variants.json)

# Each stage's flags file is rewritten (when make reads this file) only if its flags changed, so a
# new RECIPE/EPOCHS/SEED/..., PER_CHANNEL/..., TUNE_SECONDS/... or VARIANT re-runs that stage while
# a plain re-run finds everything up to date.
DEPLOY_FLAGS := --max-batch $(MAX_BATCH) --variant $(VARIANT)
write_flags = $(shell mkdir -p $(ARTIFACTS) && echo '$(2)' | cmp -s - $(ARTIFACTS)/$(1).flags || echo '$(2)' > $(ARTIFACTS)/$(1).flags)
$(call write_flags,train,$(TRAIN_FLAGS))
$(call write_flags,variants,$(VARIANT_FLAGS))
$(call write_flags,tune,$(TUNE_FLAGS))
$(call write_flags,deploy,$(DEPLOY_FLAGS))

.PHONY: help setup train export tune deploy serve bench bench-compare test test-all test-no-bf16 clean

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: $(PY_DEPS) ## create .venv and install the pinned dependencies (re-runs when pyproject.toml changes)

train: $(ARTIFACTS)/model.pt ## train the MLP: DATASET=mnist|otto RECIPE=fast|seed EPOCHS= SEED= DEVICE= PRECISION= HIDDEN= NPROC=

export: $(ARTIFACTS)/manifest.json $(ARTIFACTS)/variants.json ## TorchScript + ONNX (softmax head) through the parity gate, then int8/fp16 variants through theirs

tune: $(ARTIFACTS)/ort_tuning.json ## choose ONNX Runtime session options per variant and batch size by measurement (TUNE_SECONDS=...)

deploy: $(ARTIFACTS)/deploy/manifest.json ## torch-free bundle in ARTIFACTS/deploy (VARIANT=fp32|int8|int8-dynamic|fp16; fp32 always kept)

serve: $(ARTIFACTS)/deploy/manifest.json ## serve the bundle (Open Inference Protocol) on HOST:PORT until Ctrl-C
	$(PY) -m deploy.server --bundle $(ARTIFACTS)/deploy --host $(HOST) --port $(PORT)

bench: $(ARTIFACTS)/bench/report.md ## pytest-benchmark suites -> bench/results.json, report.md, report.png (BENCH_FLAGS=...)

# Re-runs the suites and fails if any benchmark's minimum time regressed by more than
# BENCH_REGRESSION against a run saved by `make bench` (the latest, or BASELINE=NNNN).
bench-compare: $(ARTIFACTS)/ort_tuning.json $(PY_DEPS) ## re-run the benchmarks, fail on a regression beyond BENCH_REGRESSION
	$(PY) -m pytest bench/ $(BENCH_PYTEST_FLAGS) --benchmark-compare$(if $(BASELINE),=$(BASELINE)) \
		--benchmark-compare-fail=$(BENCH_REGRESSION)

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


$(ARTIFACTS)/model.pt $(ARTIFACTS)/train_metrics.json &: $(ARTIFACTS)/train.flags $(PIPELINE_SOURCES) $(OTTO_CSV) $(PY_DEPS)
	$(TRAIN_LAUNCH) -m pipeline.train $(TRAIN_FLAGS) $(DATA_FLAGS)

$(ARTIFACTS)/model.torchscript.pt $(ARTIFACTS)/model.onnx $(ARTIFACTS)/export_report.json &: \
		$(ARTIFACTS)/model.pt $(PIPELINE_SOURCES) $(EXPORT_SOURCES) $(PY_DEPS)
	$(PY) -m export --artifacts $(ARTIFACTS)

# parity.md is written too but is no target, so a failed gate leaves it behind to read.
$(ARTIFACTS)/parity.json $(ARTIFACTS)/manifest.json &: \
		$(ARTIFACTS)/model.torchscript.pt $(ARTIFACTS)/model.onnx $(ARTIFACTS)/export_report.json
	$(PY) -m export.parity --artifacts $(ARTIFACTS) --device $(DEVICE) $(DATA_FLAGS) $(OTTO_FLAGS)

# Variants hang off parity.json, not manifest.json: this stage and the next add their files to
# manifest.json, which must not make them stale.
$(VARIANT_FILES) &: $(ARTIFACTS)/parity.json $(ARTIFACTS)/variants.flags $(PY_DEPS)
	$(PY) -m export.variants --artifacts $(ARTIFACTS) --device $(DEVICE) $(VARIANT_FLAGS) $(DATA_FLAGS) $(OTTO_FLAGS)

$(ARTIFACTS)/ort_tuning.json: $(ARTIFACTS)/variants.json $(ARTIFACTS)/tune.flags
	$(PY) -m export.tune --artifacts $(ARTIFACTS) $(TUNE_FLAGS)

# The bundle's model card quotes the bench headline when a bench run exists.
$(ARTIFACTS)/deploy/manifest.json: $(ARTIFACTS)/ort_tuning.json $(ARTIFACTS)/deploy.flags $(wildcard $(ARTIFACTS)/bench/results.json) $(DEPLOY_SOURCES) $(PY_DEPS)
	$(PY) -m deploy.build --artifacts $(ARTIFACTS) $(DEPLOY_FLAGS)

$(ARTIFACTS)/bench/results.json: $(ARTIFACTS)/ort_tuning.json $(BENCH_SOURCES) $(PY_DEPS)
	@mkdir -p $(@D)
	$(if $(OTTO_CSV),OTTO_CSV=$(OTTO_CSV)) $(PY) -m pytest bench/ $(BENCH_PYTEST_FLAGS) --benchmark-json=$@ --benchmark-save=bench

$(ARTIFACTS)/bench/report.md $(ARTIFACTS)/bench/report.png &: $(ARTIFACTS)/bench/results.json
	$(PY) -m bench.report --results $< --out $(@D)
